"""The `sft` stage: supervised warm-up on answer-formatted data before RL (docs/method.md).

Without it the policy never emits `<think>…</think><answer>…</answer>`, the format and accuracy
rewards are all zero and GRPO's group advantages vanish. Each target is the answer in the
template, optionally with a short grounded reasoning naming the region ("I look at the red
triangle."). The loss is the token-mean negative log-likelihood of the response tokens only
(prompt and image tokens are context), computed on the same left-padded-prompt /
right-padded-completion layout as GRPO's scoring forward (`sayo.scoring.completion_logits`), so
only the response positions' logits are materialised.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from sayo.attention_capture import AttentionCapture
from sayo.config import flatten, to_dict
from sayo.data.dataset import GroundedDataset
from sayo.data.schema import Sample
from sayo.logprobs import token_logprobs
from sayo.prompts import PromptConfig, build_prompt_batch, chat_messages, formatted_answer
from sayo.regions import resized_size
from sayo.runtime import check_finite, seed_everything
from sayo.sampling import encode_completions
from sayo.scoring import completion_logits, score_on_regions
from sayo.tracking import StageRun
from sayo.train import distributed
from sayo.train.checkpoint import save_final
from sayo.train.config import TrainRecipe
from sayo.train.policy import StageResult, load_trainable_policy, resume_training, save_training_checkpoint
from sayo.train.sampler import EpochSampler


def sft_target(sample: Sample, reasoning: bool, direct: bool = False) -> str:
    """The response the policy is taught for a sample.

    A sample that carries its reasoning (`Sample.reasoning`, e.g. a synthetic `search` sample's
    search path "blue circle, green square", possibly empty) is taught it as is, every word after a
    space as inside a sentence, the answer too ("<think> blue circle, red triangle.</think><answer>
    triangle</answer>"), so a word is spelled alike in the reasoning and the answer; every attribute
    it writes is then read off the picture where it is written, never copied from the question (the
    `miniature` recipe). With `direct` its `direct_reasoning` (the reasoning without detours, as
    taught for the first `sft.direct_steps` steps) when it has one. Other samples: "I look at the
    <label>." The task is the data's business: this stage knows none (docs/architecture.md, "Layers").
    """
    answer = stated_answer(sample, direct)
    if sample.reasoning is not None:
        said = sample.direct_reasoning if direct and sample.direct_reasoning is not None else sample.reasoning
        return formatted_answer(f" {answer}", f" {said}." if reasoning and said else "")
    label = sample.regions[0].label if sample.regions else ""
    thought = f"I look at the {label}." if reasoning and label else ""
    return formatted_answer(answer, thought)


def stated_answer(sample: Sample, direct: bool = False) -> str:
    """The answer a sample's SFT target states: its `demonstrated_answer` (a misreading
    demonstration, docs/method.md "SFT warm-up") with the full reasoning, else `answer` (a
    `direct_reasoning` target, without the detour that misreads, states the right one)."""
    if sample.demonstrated_answer is None or (direct and sample.direct_reasoning is not None):
        return sample.answer
    return sample.demonstrated_answer


def answer_starts(tokenizer: Any, targets: list[str]) -> list[int | None]:
    """Index of each target's first answer token (the first token after `<answer>`), None if none.

    Read from the tokenizer's character offsets, so it holds whether `<answer>` is one added token
    (the tiny tokenizer) or several (a real Qwen tokenizer).
    """
    return [_after_answer_tag(t, o) for t, o in zip(targets, _offsets(tokenizer, targets), strict=True)]


def _offsets(tokenizer: Any, texts: list[str]) -> list[list[tuple[int, int]]]:
    """Each text's token character spans, one tokenizer call for all."""
    return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def _after_answer_tag(text: str, offsets: list[tuple[int, int]]) -> int | None:
    """Index of the first token after `<answer>`, None without the tag."""
    tag = text.find("<answer>")
    return None if tag < 0 else _token_at(offsets, tag + len("<answer>"))


def _token_at(offsets: list[tuple[int, int]], char: int) -> int | None:
    """Index of the first token that ends after character `char` (the token holding it), None if none."""
    return next((i for i, (_, end) in enumerate(offsets) if end > char), None)


def read_positions(tokenizer: Any, targets: list[str], answers: list[str]) -> list[int | None]:
    """Index of the token where each target first has to read its answer off the picture: the first
    token of the answer's last whole-word occurrence in the reasoning (a search path that ends at
    the target states it there), else the first answer token (`answer_starts`); None if neither.

    The step that predicts this token is where looking at the region pays: SFT's attention term
    supervises its attention and the reading check (`sayo.train.reading`) measures it.
    """
    positions: list[int | None] = []
    for text, answer, offsets in zip(targets, answers, _offsets(tokenizer, targets), strict=True):
        tag, word = text.find("<answer>"), answer.strip()
        said = (
            [m.start() for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text[: max(tag, 0)])]
            if word
            else []
        )
        positions.append(_token_at(offsets, said[-1]) if said else _after_answer_tag(text, offsets))
    return positions


def sft_loss(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    images: list,
    cfg: TrainRecipe,
    device: str,
    direct: bool = False,
    attention: bool = True,
) -> tuple[torch.Tensor, int]:
    """Token-mean NLL of the targets given prompt and image; returns (loss, number of target tokens).

    With `sft.attention_loss` = w > 0 the loss adds w · mean over rows of −log(region share of the
    image attention of the step that reads the answer, `read_positions`) (`answer_attention_share`):
    SFT then also teaches where to look, an option of ours that the paper does not use
    (docs/method.md, "SFT warm-up"); `attention=False` leaves the term out (the steps before
    `sft.attention_start`), `direct` teaches the targets without detours (`sft_target`).
    """
    prompts = build_prompt_batch(processor, samples, images, prompt=cfg.prompt).to(device)
    targets = [sft_target(s, cfg.sft.reasoning, direct) for s in samples]
    ids, mask = encode_completions(processor.tokenizer, targets)
    ids, mask = ids.to(device), mask.to(device)
    lengths = prompts["attention_mask"].sum(1) + mask.sum(1)  # [B]
    too_long = [s.id for s, n in zip(samples, lengths.tolist(), strict=True) if n > cfg.sft.max_length]
    if too_long:
        raise ValueError(f"samples {too_long} exceed sft.max_length={cfg.sft.max_length} tokens; raise it")
    n_tokens = int(mask.sum())
    if cfg.sft.attention_loss <= 0 or not attention:
        logps, share = token_logprobs(completion_logits(model, prompts, ids, mask), ids), None  # [B, T]
    else:
        logps, share = answer_attention_share(
            model, processor, prompts, ids, mask, samples, images, targets, cfg, direct
        )
    loss = -(logps * mask).sum() / max(n_tokens, 1)
    if share is not None:
        loss = loss + cfg.sft.attention_loss * -torch.log(share.clamp(min=1e-6)).mean()
    return loss, n_tokens


def answer_attention_share(
    model: torch.nn.Module,
    processor: Any,
    prompts: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    samples: list[Sample],
    images: list,
    targets: list[str],
    cfg: TrainRecipe,
    direct: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [B, T] and, on the autograd graph, the region share [R] of the image attention of
    the step that reads the answer (`read_positions`: the query that predicts that token) for the
    R rows that have a region and an answer and state it right (`direct`: the targets are the
    direct reasoning; a misreading demonstration gets no term).

    Attention is measured as `rewards.attention` defines it everywhere else (layers, heads, query),
    in the same forward as the log-probs (`sayo.scoring.score_on_regions` with a differentiable
    capture).
    """
    attention = cfg.rewards.attention
    capture = AttentionCapture(model, attention.layers, attention.heads, differentiable=True)
    scores = score_on_regions(
        model,
        prompts,
        ids,
        mask,
        samples,
        images,
        capture,
        query=attention.query,
        keep_graph=torch.is_grad_enabled(),  # not under eval_loss's no_grad
    )
    if scores.region is None or scores.region_share is None:
        return scores.logps, None
    stated = [stated_answer(s, direct) for s in samples]
    starts = read_positions(processor.tokenizer, targets, stated)
    shift = 1 if attention.query == "own" else 0  # `own`: the token before is the one that predicts it
    picked = [
        (i, start - shift) for i, (start, sample) in enumerate(zip(starts, samples, strict=True))
        if start is not None and start >= shift and sample.regions and bool(scores.region.n_region[i] > 0)
        and stated[i] == sample.answer  # a misreading demonstration does not read the region
    ]  # fmt: skip
    if not picked:
        return scores.logps, None
    rows = [i for i, _ in picked]
    at = torch.tensor([position for _, position in picked], device=ids.device)  # [R]
    share = scores.region_share[torch.tensor(rows, device=ids.device), at]  # [R]
    return scores.logps, share


def sample_lengths(
    data: GroundedDataset, processor: Any, reasoning: bool, prompt: PromptConfig | None = None
) -> list[int]:
    """Tokens of each sample's prompt + target: its text tokens plus its image's visual tokens
    (from the image size and the processor's resize bounds), for length-grouped batches."""
    image_processor = processor.image_processor
    factor = image_processor.patch_size * image_processor.merge_size
    size = image_processor.size
    texts = [
        processor.apply_chat_template(chat_messages(s, sft_target(s, reasoning), prompt), tokenize=False)
        for s in data.samples
    ]
    text_tokens = [len(ids) for ids in processor.tokenizer(texts)["input_ids"]]
    lengths = []
    for sample, n_text in zip(data.samples, text_tokens, strict=True):
        if sample.image_size is not None:
            image_size = sample.image_size
        else:
            with Image.open(data.root / sample.image) as img:  # reads the header only
                image_size = img.size
        width, height = resized_size(image_size, size.shortest_edge, size.longest_edge, factor)
        lengths.append(n_text + (width // factor) * (height // factor))
    return lengths


@torch.no_grad()
def eval_loss(
    model: torch.nn.Module, processor: Any, data: GroundedDataset, cfg: TrainRecipe, device: str
) -> float:
    """Mean response NLL over the first `sft.eval_samples` samples of the eval split."""
    model.eval()
    total, count = 0.0, 0
    n = min(len(data), cfg.sft.eval_samples)
    for start in range(0, n, cfg.sft.batch_size):
        samples, images = data.batch(list(range(start, min(start + cfg.sft.batch_size, n))))
        loss, tokens = sft_loss(model, processor, samples, images, cfg, device)
        total, count = total + float(loss) * tokens, count + tokens
    model.train()
    return total / max(count, 1)


def train_sft(cfg: TrainRecipe) -> StageResult:
    """Run the SFT stage end to end (resuming if asked); returns the final checkpoint directory."""
    seed_everything(cfg.seed)
    policy = load_trainable_policy(
        cfg, cfg.sft.optim, cfg.sft.max_steps, cfg.sft.batch_size, cfg.sft.grad_accum
    )
    train = GroundedDataset.load(cfg.data.path, cfg.data.train_split, cfg.data.max_samples)
    evals = GroundedDataset.load(cfg.data.path, cfg.data.eval_split) if cfg.sft.eval_every else None
    window = cfg.sft.length_grouping * cfg.sft.batch_size * distributed.world_size()
    lengths = sample_lengths(train, policy.processor, cfg.sft.reasoning, cfg.prompt) if window else None
    sampler = EpochSampler(len(train), cfg.seed, lengths=lengths, window=window)
    stage_dir = Path(cfg.checkpoint.dir) / "sft"
    engine = policy.engine
    state, last_ckpt = resume_training(policy, stage_dir, cfg)
    start = state["step"]
    if last_ckpt is not None:
        sampler.load_state_dict(state["sampler"])
    metrics: dict[str, float] = dict(state.get("metrics", {}))  # the checkpoint's, if no step is left
    with StageRun(
        distributed.tracking_for_rank(cfg.tracking),
        stage="sft",
        params=flatten(to_dict(cfg)),
        resume=state.get("tracking"),  # continue the checkpoint's MLflow run
    ) as run:
        bar = tqdm(
            range(start + 1, cfg.sft.max_steps + 1),
            desc="sft",
            initial=start,
            total=cfg.sft.max_steps,
            disable=not distributed.shows_progress(),
        )
        for step in bar:
            began = time.perf_counter()
            metrics, ids = _sft_step(
                policy, train, sampler, cfg,
                direct=step <= cfg.sft.direct_steps, attention=step >= cfg.sft.first_attention_step,
            )  # fmt: skip
            metrics["step_time_s"] = time.perf_counter() - began
            metrics = distributed.mean_over_ranks(metrics)  # every rank sees (and checks) the same values
            ids = distributed.gather_lists(ids)
            check_finite(metrics, step=step, sample_ids=ids, last_checkpoint=last_ckpt)
            if evals is not None and step % cfg.sft.eval_every == 0:
                metrics["eval_loss"] = eval_loss(engine.model, policy.processor, evals, cfg, policy.device)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.1e}")
            if step % cfg.sft.log_every == 0 or step == cfg.sft.max_steps or "eval_loss" in metrics:
                run.log_metrics(metrics, step=step)
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                trainer_state = {"step": step, "sampler": sampler.state_dict(), "metrics": metrics,
                                 "tracking": run.resume_state(step)}  # fmt: skip
                last_ckpt = save_training_checkpoint(policy, stage_dir, step, trainer_state, cfg)
        final = save_final(
            stage_dir,
            model=engine.unwrap(),
            processor=policy.processor,
            config=cfg,
            weights_context=engine.generation_context,
        )
        run.log_dict(to_dict(cfg), "config.yaml")
        return StageResult(final, run.run_id, metrics)


def _sft_step(
    policy: Any,
    train: GroundedDataset,
    sampler: EpochSampler,
    cfg: TrainRecipe,
    direct: bool = False,
    attention: bool = True,
) -> tuple[dict, list]:
    engine, accum = policy.engine, cfg.sft.grad_accum
    total, tokens, ids = 0.0, 0, list[str]()
    for _ in range(accum):
        per_rank = cfg.sft.batch_size
        samples, images = train.batch(
            distributed.shard(sampler.next(per_rank * distributed.world_size()), per_rank)
        )
        loss, n = sft_loss(
            engine.model, policy.processor, samples, images, cfg, policy.device, direct, attention
        )
        engine.backward(loss / accum)
        total, tokens, ids = total + float(loss.detach()) / accum, tokens + n, ids + [s.id for s in samples]
    lr = engine.lr
    grad_norm = engine.step()
    return {"loss": total, "grad_norm": float(grad_norm), "lr": lr, "response_tokens": float(tokens)}, ids
