"""One GRPO step of sayo vs. TRL's `GRPOTrainer`, side by side, and what the attention capture costs.

Same tiny Qwen2.5-VL policy (the `tiny` checkpoint), same synthetic grounded prompts in the same
order, same P prompts × G rollouts per step, max new tokens, temperature/top-p, learning rate,
β, ε and loss type. Four variants run interleaved in one process:

  trl        TRL `GRPOTrainer.train()` (transformers generation, no vLLM), rewards accuracy + format
             computed by sayo's own reward functions; its policy is loaded the way a TRL user loads
             it (`AutoModelForImageTextToText.from_pretrained`), or with `--trl-same-model` the
             very model sayo loads (`sayo.models.load_policy`, matmul patch embedding)
  sayo       `sayo.train.grpo.grpo_step`, rewards accuracy + format (no attention capture): the
             fair throughput comparison with TRL
  sayo+attn  the same with the region-attention reward on (`AttentionCapture` hooks in the scoring
             forward): its share of the step is the time inside the hooks / the step time
  rows       sayo with `grpo.pack_groups=false` (one row per rollout in scoring and update, as TRL):
             what packing each group behind one copy of its prompt adds

How they interleave: TRL's own training loop runs; after each TRL optimizer step a callback runs
one step of each sayo variant. Each variant keeps its own torch RNG stream (saved and restored
around its step), so every variant samples as if it ran alone from `--seed`. The first step of
each is a warm-up; the report gives medians over the next `--steps`. A TRL step is the wall time
from the end of the previous callback to TRL's `on_step_end` (batch fetch, generation, scoring,
loss, backward, optimizer); a sayo step is the wall time of the `grpo_step` call.

Where sayo's step differs from TRL's (all exact reformulations, each tested equal to the plain
computation): the vision patch embedding is a matmul, not a Conv3d (`sayo.models.patch_embed`);
each prompt's image goes through the vision tower once per forward, not once per rollout
(`sayo.vision`); scoring, reference and update forwards run each prompt once with its G
completions behind it under a block mask (`sayo.packing`); with μ = 1 both reuse the loss
forward's log-probs as the "old" ones. TRL suppresses only the image placeholder during sampling,
sayo every special token; completion lengths differ by sampling, so completion tokens/s is reported
next to step time.
Settings aligned on TRL's side (its defaults differ): gradient checkpointing off (sayo's tiny
recipe has it off), constant learning rate, bf16 off, no dataset shuffling (the dataset is laid out
in sayo's sampler order instead), no logging.

Targets (issue): sayo ≥ 1.5× TRL's step throughput; capture ≤ 3 % of sayo's step.

    pip install -e ".[bench]"
    python benchmarks/grpo_step.py                      # 5 measured steps each, tiny recipe shape
    python benchmarks/grpo_step.py --threads 1 --steps 10   # steadier on a CPU shared with other work

Results: benchmarks/results/grpo_step_cpu.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sayo.attention_capture import AttentionCapture
from sayo.data.build import build
from sayo.data.config import DataConfig
from sayo.data.dataset import GroundedDataset
from sayo.prompts import question_text
from sayo.recipe import Recipe, load_recipe
from sayo.rewards import accuracy_reward, format_reward
from sayo.rewards.config import RewardConfig
from sayo.tracking import TrackingConfig
from sayo.train.config import CheckpointConfig, GRPOConfig, OptimConfig
from sayo.train.grpo import _setup, grpo_step
from sayo.train.sampler import EpochSampler

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_FORMAT = {"accuracy": 1.0, "format": 0.5, "region_attention": 0.0}
WITH_ATTENTION = {"accuracy": 1.0, "format": 0.5, "region_attention": 1.0}


@dataclass
class Step:
    """One measured step of one variant."""

    seconds: float
    rollouts: int
    completion_tokens: float
    generation_seconds: float
    cpu_seconds: float  # process CPU time (all threads): less sensitive to other work than wall time
    capture_seconds: float = 0.0


@dataclass
class Variant:
    """A sayo GRPO session stepped by hand, with its own RNG stream and capture clock."""

    name: str
    cfg: Recipe
    session: Any
    rng: torch.Tensor
    steps: list[Step] = field(default_factory=list)
    capture_seconds: list[float] = field(default_factory=list)

    def step(self) -> None:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        self.capture_seconds.clear()
        s = self.session
        start, cpu = time.perf_counter(), time.process_time()
        metrics, _ = grpo_step(s.policy, s.data, s.sampler, self.cfg, s.capture, s.reference)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        self.rng = torch.get_rng_state()
        torch.set_rng_state(outer)
        rollouts = self.cfg.grpo.prompts_per_step * self.cfg.grpo.group_size
        tokens = metrics["response_length_mean"] * rollouts
        generation = metrics["generation_time_s"]
        self.steps.append(Step(seconds, rollouts, tokens, generation, cpu, sum(self.capture_seconds)))


def clock_method(obj: Any, name: str, seconds: list[float]) -> None:
    """Append the wall time of each call of `obj.<name>` to `seconds`."""
    method = getattr(obj, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(obj, name, timed)


def clock_capture(capture: AttentionCapture, seconds: list[float]) -> None:
    """Append each recorded forward's `CaptureRequest.seconds` (time inside the hooks) to `seconds`."""
    record = capture.record

    @contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with record(*args, **kwargs) as request:
            yield request
        seconds.append(request.seconds)

    capture.record = timed  # type: ignore[method-assign]


def build_dataset(out: Path, num_samples: int) -> Path:
    """The tiny recipe's synthetic grounded dataset, built by the real `data` stage."""
    recipe = load_recipe("tiny", [f"data.path={out}", f"data.synthetic.num_samples={num_samples}"])
    build(recipe.data, progress=False)
    return out


def sayo_config(
    args: argparse.Namespace, data: Path, work: Path, weights: dict[str, float], pack: bool = True
) -> Recipe:
    """The tiny recipe's GRPO section with the benchmark's shape."""
    grpo = GRPOConfig(
        pack_groups=pack,
        init_from="model",
        max_steps=args.steps + 1,
        prompts_per_step=args.prompts,
        group_size=args.group_size,
        micro_batch_size=args.prompts * args.group_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=1.0,
        beta=args.beta,
        loss_type=args.loss_type,
        probe_every=0,
        optim=OptimConfig(lr=args.lr, warmup_steps=0, schedule="constant"),
    )
    return Recipe(
        seed=args.seed,
        device="cpu",
        data=DataConfig(path=str(data)),
        grpo=grpo,
        rewards=RewardConfig(weights=dict(weights)),
        checkpoint=CheckpointConfig(dir=str(work / "ckpt"), every=0),
        tracking=TrackingConfig(enabled=False),
    )


def sayo_variant(name: str, cfg: Recipe) -> Variant:
    session = _setup(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        rng = torch.get_rng_state()
    variant = Variant(name, cfg, session, rng)
    if session.capture is not None:
        clock_capture(session.capture, variant.capture_seconds)
    return variant


def trl_dataset(cfg: Recipe, num_prompts: int) -> Any:
    """The prompts sayo's sampler will draw, in its order, in TRL's conversational image format."""
    from datasets import Dataset

    data = GroundedDataset.load(cfg.data.path, cfg.data.train_split, cfg.data.max_samples)
    order = EpochSampler(len(data), cfg.seed).next(num_prompts)
    rows = []
    for sample, image in zip(*data.batch(order), strict=True):
        rows.append(
            {
                "prompt": [{"role": "user", "content": question_text(sample)}],  # TRL puts the image first
                "image": image,
                "answer": sample.answer,
                "answer_type": sample.answer_type.value,
                "choices": sample.choices,
            }
        )
    return Dataset.from_list(rows)


def trl_rewards(tolerance: float) -> list[Callable[..., list[float]]]:
    """sayo's accuracy and format rewards with TRL's reward-function signature."""

    def texts(completions: list) -> list[str]:
        return [c[0]["content"] if isinstance(c, list) else c for c in completions]

    def accuracy(completions: list, answer: list, answer_type: list, choices: list, **_: Any) -> list[float]:
        return accuracy_reward(texts(completions), answer, answer_type, choices, tolerance=tolerance).tolist()

    def format_(completions: list, **_: Any) -> list[float]:
        return format_reward(texts(completions)).tolist()

    return [accuracy, format_]


def trl_trainer(cfg: Recipe, work: Path, callback: Any, same_model: bool) -> Any:
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from sayo.models import load_policy, load_processor, resolve_model_path

    grpo = cfg.grpo
    args = TRLConfig(
        output_dir=str(work / "trl"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        logging_steps=10**6,
        save_strategy="no",
        seed=cfg.seed,
        max_steps=grpo.max_steps,
        per_device_train_batch_size=grpo.prompts_per_step * grpo.group_size,  # rollouts per step
        gradient_accumulation_steps=1,
        num_generations=grpo.group_size,
        num_iterations=grpo.mu,
        max_completion_length=grpo.max_new_tokens,
        temperature=grpo.temperature,
        top_p=grpo.top_p,
        beta=grpo.beta,
        epsilon=grpo.epsilon_low,
        epsilon_high=grpo.epsilon_high,
        loss_type=grpo.loss_type,
        scale_rewards=grpo.advantage_scale,
        reward_weights=[ACCURACY_FORMAT["accuracy"], ACCURACY_FORMAT["format"]],
        learning_rate=grpo.optim.lr,
        lr_scheduler_type="constant",
        max_grad_norm=grpo.optim.max_grad_norm,
        activation_checkpointing=cfg.model.gradient_checkpointing,  # TRL's default is on
        shuffle_dataset=False,
        use_vllm=False,
    )
    path = resolve_model_path(cfg.model.name_or_path)
    processor = load_processor(path, local_files_only=True)
    if same_model:
        model, _ = load_policy(path, device="cpu")
    else:  # what a TRL user loads: transformers' own modules (Conv3d patch embedding)
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=torch.float32, attn_implementation="sdpa"
        )
    return GRPOTrainer(
        model=model,
        reward_funcs=trl_rewards(cfg.rewards.numeric_tolerance),
        args=args,
        train_dataset=trl_dataset(cfg, grpo.prompts_per_step * grpo.max_steps),
        processing_class=processor,
        callbacks=[callback],
    )


def interleaver(variants: list[Variant], rows: int) -> Any:
    """A TRL callback that times TRL's step, then runs one step of each sayo variant."""
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None
            self.steps: list[Step] = []
            self.generation: list[float] = []  # filled by clock_method(trainer, "_generate", ...)
            self.mark = self.cpu_mark = 0.0

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            seconds, cpu = time.perf_counter() - self.mark, time.process_time() - self.cpu_mark
            mean_length = self.trainer._metrics["train"]["completions/mean_length"][-1]
            self.steps.append(Step(seconds, rows, mean_length * rows, sum(self.generation), cpu))
            self.generation.clear()
            for variant in variants:
                variant.step()
            self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    return Interleave()


@dataclass
class Summary:
    name: str
    seconds: float
    fastest: float
    cpu_seconds: float
    rollouts_per_s: float
    tokens_per_s: float
    mean_length: float
    generation_share: float
    capture_share: float | None
    raw: list[float]


def summarize(name: str, steps: list[Step], with_capture: bool) -> Summary:
    measured = steps[1:]  # the first step is the warm-up
    share = statistics.median(s.capture_seconds / s.seconds for s in measured) if with_capture else None
    return Summary(
        name,
        statistics.median(s.seconds for s in measured),
        min(s.seconds for s in measured),
        statistics.median(s.cpu_seconds for s in measured),
        statistics.median(s.rollouts / s.seconds for s in measured),
        statistics.median(s.completion_tokens / s.seconds for s in measured),
        statistics.mean(s.completion_tokens / s.rollouts for s in measured),
        statistics.median(s.generation_seconds / s.seconds for s in measured),
        share,
        [s.seconds for s in measured],
    )


def versions() -> str:
    import transformers
    import trl

    return f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"


def print_report(args: argparse.Namespace, rows: list[Summary]) -> None:
    trl_row, plain, attn, *ablations = rows
    trl_model = "the same model object as sayo" if args.trl_same_model else "transformers' stock modules"
    print(f"\n== one GRPO step, sayo vs TRL GRPOTrainer ({versions()}); TRL's policy: {trl_model}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"no GPU | P={args.prompts} prompts × G={args.group_size} rollouts, "
        f"max_new_tokens={args.max_new_tokens}, temperature={args.temperature}, beta={args.beta}, "
        f"loss_type={args.loss_type}, lr={args.lr}, seed={args.seed}"
    )
    print(f"warm-up 1 step each, then {args.steps} interleaved steps each")
    print("step s / rollouts/s / compl tok/s / CPU s / generation: medians; fastest: the minimum step time;")
    print("generation: share of the step in prompt processing + sampling (sayo: make_chunks + generate;")
    print("TRL: GRPOTrainer._generate); CPU s: process CPU time of the step, all threads\n")
    print(
        f"{'variant':<32} {'step s':>6} {'fastest':>7} {'CPU s':>6} {'rollouts/s':>10} {'compl tok/s':>11} "
        f"{'mean len':>8} {'generation':>10}  per-step s"
    )
    for r in rows:
        raw = " ".join(f"{t:.2f}" for t in r.raw)
        print(
            f"{r.name:<32} {r.seconds:>6.2f} {r.fastest:>7.2f} {r.cpu_seconds:>6.2f} {r.rollouts_per_s:>10.2f} "
            f"{r.tokens_per_s:>11.1f} {r.mean_length:>8.1f} {r.generation_share:>10.0%}  {raw}"
        )
    rollout_ratio = plain.rollouts_per_s / trl_row.rollouts_per_s
    verdict = "meets" if rollout_ratio >= 1.5 else "MISSES"
    print(
        f"\nthroughput sayo / TRL (accuracy + format): rollouts/s {rollout_ratio:.2f}x "
        f"-> {verdict} the >= 1.5x target; completion tokens/s {plain.tokens_per_s / trl_row.tokens_per_s:.2f}x; "
        f"by fastest step {trl_row.fastest / plain.fastest:.2f}x; by CPU time {trl_row.cpu_seconds / plain.cpu_seconds:.2f}x"
    )
    for row in ablations:
        print(f"  {row.name}: rollouts/s {row.rollouts_per_s / trl_row.rollouts_per_s:.2f}x TRL")
    assert attn.capture_share is not None
    verdict = "meets" if attn.capture_share <= 0.03 else "MISSES"
    print(
        f"attention capture: {attn.capture_share:.1%} of the sayo+attn step inside the capture hooks "
        f"-> {verdict} the <= 3 % target"
    )
    print(
        f"sayo+attn vs sayo (whole step, includes the attention reward and sampling differences): "
        f"median {attn.seconds / plain.seconds - 1:+.1%}, fastest {attn.fastest / plain.fastest - 1:+.1%}, "
        f"CPU {attn.cpu_seconds / plain.cpu_seconds - 1:+.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5, help="measured steps per variant (after 1 warm-up)")
    parser.add_argument("--prompts", type=int, default=4, help="P prompts per step (tiny recipe: 4)")
    parser.add_argument("--group-size", type=int, default=4, help="G rollouts per prompt (tiny recipe: 4)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tiny recipe: 24")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient (> 0: a reference forward)")
    parser.add_argument("--loss-type", default="grpo", choices=["grpo", "bnpo", "dapo", "dr_grpo"])
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=96, help="synthetic samples to build (80 %% train)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; 1 is steadier on a busy CPU)",
    )
    parser.add_argument(
        "--trl-same-model",
        action="store_true",
        help="give TRL sayo's loaded policy (its matmul patch embedding) instead of transformers' stock one",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sayo-grpo-bench-") as tmp:
        work = Path(tmp)
        data = build_dataset(work / "data", args.samples)
        plain_cfg = sayo_config(args, data, work / "plain", ACCURACY_FORMAT)
        variants = [
            sayo_variant("sayo (accuracy+format)", plain_cfg),
            sayo_variant(
                "sayo+attn (+ region attention)", sayo_config(args, data, work / "attn", WITH_ATTENTION)
            ),
            sayo_variant(  # what packing the groups adds (sayo.packing): one row per rollout instead
                "sayo, one row per rollout",
                sayo_config(args, data, work / "rows", ACCURACY_FORMAT, pack=False),
            ),
        ]
        rows = args.prompts * args.group_size
        callback = interleaver(variants, rows)
        trainer = trl_trainer(plain_cfg, work, callback, same_model=args.trl_same_model)
        callback.trainer = trainer
        clock_method(trainer, "_generate", callback.generation)
        trainer.train()
        summaries = [
            summarize("TRL GRPOTrainer (accuracy+format)", callback.steps, with_capture=False),
            summarize(variants[0].name, variants[0].steps, with_capture=False),
            summarize(variants[1].name, variants[1].steps, with_capture=True),
            summarize(variants[2].name, variants[2].steps, with_capture=False),
        ]
    print_report(args, summaries)


if __name__ == "__main__":
    main()
