"""The recipe sections of the `sft` and `grpo` stages, and what those stages read of a recipe.

`sft`, `grpo`, `checkpoint` and `deepspeed` are this package's sections; the stages also read the
sections owned by the core packages (`model`, `data`, `prompt`, `rewards`, `tracking`). `TrainRecipe` lists
exactly those: the stages take any object with them — in practice a `sayo.recipe.Recipe` loaded
from one YAML file, the same one the CLI, `dvc repro` and the Kubeflow pipeline use. Defaults
marked [ours] follow docs/method.md's paper-scale recipe where the paper is silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, get_args

from sayo.config import check
from sayo.data.config import DataConfig
from sayo.models.config import ModelConfig
from sayo.prompt_config import PromptConfig
from sayo.rewards.config import RewardConfig
from sayo.tracking import TrackingConfig

# sayo.loss's choices, spelled out here because sayo.loss imports torch and reading a recipe must not
# (`sayo recipes`); tests/test_loss.py::test_the_recipe_offers_the_loss_choices keeps them equal
AdvantageScale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dapo", "dr_grpo"]
ADVANTAGE_SCALES: tuple[str, ...] = get_args(AdvantageScale)
LOSS_TYPES: tuple[str, ...] = get_args(LossType)

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = 5e-4  # peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (β1, β2)
    schedule: Schedule = "cosine"  # constant | linear | cosine decay after the warm-up
    warmup_steps: int = 10  # linear warm-up from 0 to lr
    max_grad_norm: float = 1.0  # clip the global gradient norm (0 = no clipping)

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "must be >= 0")
        check(self.max_grad_norm >= 0, "optim.max_grad_norm", self.max_grad_norm, "must be >= 0")


@dataclass
class SFTConfig:
    """Supervised warm-up on answer-formatted data, loss on response tokens only."""

    max_steps: int = 300  # optimizer steps
    batch_size: int = 8  # samples per optimizer micro-batch, per process (each rank its own)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_length: int = 512  # prompt + response tokens; longer samples are an error, not silently cut
    length_grouping: int = 16  # batches per window sorted by length (less padding); 0 = plain shuffle
    reasoning: bool = True  # add a short grounded reasoning in <think> (from the region label)
    attention_loss: float = 0.0  # w: + w·(−log region share of the answer-reading step's attention) [ours]
    attention_start: int | None = None  # first step with the attention term; None: after direct_steps [ours]
    direct_steps: int = 0  # first steps taught each sample's direct_reasoning (no detours) [ours]
    eval_every: int = 50  # steps between eval-loss passes on the eval split (0 = never)
    eval_samples: int = 64  # samples of the eval split in each eval-loss pass
    log_every: int = 10  # steps between MLflow metric logs
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and schedule

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "max_length"):
            check(getattr(self, name) >= 1, f"sft.{name}", getattr(self, name), "must be >= 1")
        check(self.length_grouping >= 0, "sft.length_grouping", self.length_grouping, "must be >= 0")
        check(self.attention_loss >= 0, "sft.attention_loss", self.attention_loss, "must be >= 0")
        check(self.direct_steps >= 0, "sft.direct_steps", self.direct_steps, "must be >= 0")
        check(
            self.attention_start is None or self.attention_start >= 1,
            "sft.attention_start", self.attention_start, "must be None or >= 1",
        )  # fmt: skip

    @property
    def first_attention_step(self) -> int:
        """The first step with the attention term: `attention_start`, else right after the direct phase."""
        return self.direct_steps + 1 if self.attention_start is None else self.attention_start


@dataclass
class GRPOConfig:
    """One GRPO step: P prompts × G rollouts → rewards → advantages → μ updates."""

    init_from: str = "sft"  # sft: <checkpoint.dir>/sft/final | model: model.name_or_path | a checkpoint path
    max_steps: int = 100  # GRPO steps (each: P·G rollouts, μ optimizer steps)
    prompts_per_step: int = 4  # P, per process (data-parallel ranks each take their own P)
    group_size: int = 8  # G rollouts per prompt
    micro_batch_size: int = 8  # rollouts per forward/backward pass
    mu: int = 1  # μ: policy-gradient iterations per generation batch
    max_new_tokens: int = 32  # completion length limit (a rollout without EOS counts as truncated)
    temperature: float = 1.0  # sampling temperature (log-probs and entropies use the same scaling)
    top_p: float = 1.0  # nucleus sampling (1.0 = off)
    beta: float = 0.04  # KL coefficient; 0 skips the reference model
    epsilon_low: float = 0.2  # clip range below 1 of the importance ratio
    epsilon_high: float = 0.2  # clip range above 1 (DAPO's clip-higher when > epsilon_low)
    loss_type: LossType = "grpo"  # token aggregation: grpo | bnpo | dapo | dr_grpo (docs/method.md)
    advantage_scale: AdvantageScale = "group"  # divide centred rewards by the group's std | batch's | none
    advantage_std_floor: float = 0.0  # the std divided by is at least this (0 = off): noise stays noise
    advantage_per_component: bool = False  # normalise each reward component, then weight (not the total)
    # share each group's prompt: one prefill per prompt in generation (its KV cache repeated G times)
    # and scoring/update with the prompt once and its G completions behind it (sayo.packing); same
    # values, ~G× less prompt compute. Off (or, for scoring, with flash attention): one row per rollout.
    pack_groups: bool = True  # one prompt copy per group in generation, scoring and update (exact)
    log_every: int = 1  # steps between MLflow metric logs
    probe_every: int = 25  # steps between heatmap/completion artifacts of the fixed probe set (0 = never)
    probe_samples: int = 4  # probe samples (the first of the eval split)
    # accuracy curve: greedy answers to the first eval_samples of the eval split at step 0, every
    # eval_every steps and at the last step, logged as eval/accuracy, eval/format, eval/length
    eval_every: int = 0  # steps between greedy evaluations during GRPO (0 = never)
    eval_samples: int = 64  # eval-split samples per evaluation (split evenly over the ranks)
    optim: OptimConfig = field(  # AdamW and schedule
        default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=0, schedule="constant")
    )

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "prompts_per_step",
            "group_size",
            "micro_batch_size",
            "mu",
            "max_new_tokens",
        ):
            check(getattr(self, name) >= 1, f"grpo.{name}", getattr(self, name), "must be >= 1")
        check(
            self.group_size >= 2, "grpo.group_size", self.group_size, "must be >= 2 (advantages are relative)"
        )
        check(self.loss_type in LOSS_TYPES, "grpo.loss_type", self.loss_type, f"must be one of {LOSS_TYPES}")
        check(
            self.advantage_scale in ADVANTAGE_SCALES,
            "grpo.advantage_scale",
            self.advantage_scale,
            f"must be one of {ADVANTAGE_SCALES}",
        )
        check(self.beta >= 0, "grpo.beta", self.beta, "must be >= 0")
        check(
            self.advantage_std_floor >= 0,
            "grpo.advantage_std_floor",
            self.advantage_std_floor,
            "must be >= 0",
        )
        check(self.temperature > 0, "grpo.temperature", self.temperature, "must be > 0")
        check(self.eval_every >= 0, "grpo.eval_every", self.eval_every, "must be >= 0 (0 = never)")
        check(self.eval_samples >= 1, "grpo.eval_samples", self.eval_samples, "must be >= 1")
        check(0 < self.top_p <= 1, "grpo.top_p", self.top_p, "must be in (0, 1]")


@dataclass
class CheckpointConfig:
    """Where checkpoints go and how many are kept."""

    dir: str = "outputs/checkpoints"  # the stage writes <dir>/<stage>/step-<n>/ and <dir>/<stage>/final/
    every: int = 50  # steps between checkpoints (0 = only the final one)
    keep_last: int = 2  # step checkpoints kept (the final one is always kept)
    resume: bool = False  # continue from the newest complete checkpoint in the stage directory
    # durable copies for preemptible nodes and retried pipeline steps (sayo.train.checkpoint):
    # each step checkpoint is uploaded to <mirror>/<stage>/step-<n>/ (marker last, pruned to
    # keep_last), and resume starts from the newest complete one there if it is newer than the local
    mirror: str | None = None  # s3://bucket/prefix that keeps copies of the step checkpoints; resume reads it

    def __post_init__(self) -> None:
        check(self.every >= 0, "checkpoint.every", self.every, "must be >= 0")
        check(self.keep_last >= 0, "checkpoint.keep_last", self.keep_last, "must be >= 0")
        check(
            self.mirror is None or bool(re.fullmatch(r"s3://[^/\s]+(/\S*)?", self.mirror)),
            "checkpoint.mirror",
            self.mirror,
            "must be an s3://bucket/prefix URI (or null)",
        )


@dataclass
class DeepSpeedConfig:
    """DeepSpeed engine (GPU); no config runs the plain single-process loop."""

    config: str | None = None  # zero2 | zero3 (sayo/recipes/deepspeed/) or a path to a ZeRO JSON


class TrainRecipe(Protocol):
    """The recipe sections the `sft` and `grpo` stages read (`sayo.recipe.Recipe` has them all)."""

    @property
    def seed(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def data(self) -> DataConfig: ...
    @property
    def prompt(self) -> PromptConfig: ...
    @property
    def sft(self) -> SFTConfig: ...
    @property
    def grpo(self) -> GRPOConfig: ...
    @property
    def rewards(self) -> RewardConfig: ...
    @property
    def checkpoint(self) -> CheckpointConfig: ...
    @property
    def deepspeed(self) -> DeepSpeedConfig: ...
    @property
    def tracking(self) -> TrackingConfig: ...


def grpo_start(recipe: TrainRecipe) -> str:
    """The checkpoint GRPO starts from (and keeps as its KL reference), per `grpo.init_from`."""
    init = recipe.grpo.init_from
    if init == "model":
        return recipe.model.name_or_path
    if init != "sft":
        return init
    path = Path(recipe.checkpoint.dir) / "sft" / "final"
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"grpo.init_from=sft but {path} holds no SFT checkpoint: run `sayo sft` first, or set "
            "grpo.init_from=model (start from model.name_or_path) or grpo.init_from=<checkpoint dir>"
        )
    return str(path)
