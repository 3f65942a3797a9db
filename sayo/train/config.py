"""Configs of the `sft` and `grpo` stages, one dataclass per YAML section (style.md, "Config").

`configs/tiny.yaml` (CPU default), `configs/qwen2_5_vl_3b.yaml` and `configs/qwen2_5_vl_7b.yaml`
hold `model`, `data`, `sft`, `grpo`, `rewards`, `checkpoint`, `tracking` and `deepspeed`
sections; `sayo sft --config configs/tiny.yaml sft.max_steps=50` loads them with overrides.
Defaults marked [ours] follow method.md's paper-scale recipe where the paper is silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sayo.attention import HeadReduce
from sayo.config import load_config
from sayo.evaluate.config import EvalConfig
from sayo.registry.config import RegisterConfig
from sayo.tracking import TrackingConfig

LossType = Literal["grpo", "bnpo", "dapo", "dr_grpo"]
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCHEDULES = ("constant", "linear", "cosine")


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name} = {value!r} is invalid: {allowed}")


@dataclass
class LoraConfig:
    """LoRA adapters (peft) instead of full fine-tuning."""

    enabled: bool = False
    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator (scale = alpha / r)
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        _check(self.r >= 1, "model.lora.r", self.r, "must be >= 1")
        _check(0 <= self.dropout < 1, "model.lora.dropout", self.dropout, "must be in [0, 1)")
        _check(
            bool(self.target_modules), "model.lora.target_modules", self.target_modules, "must not be empty"
        )


@dataclass
class ModelConfig:
    """Which policy to start from and how to load it."""

    name_or_path: str = "tiny"  # `tiny`, a local checkpoint directory, or a cached hub id
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # the model's own kernel: sdpa | flash_attention_2 | eager
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class DataSection:
    """Which dataset the stage reads (a directory written by `sayo data build`)."""

    path: str = "data/processed"  # dataset directory with manifest.jsonl and images/
    train_split: str = "train"
    eval_split: str = "val"
    max_samples: int | None = None  # cap on training samples (None = all)


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = 5e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # constant | linear | cosine (after warm-up)
    warmup_steps: int = 10
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        _check(self.schedule in SCHEDULES, "optim.schedule", self.schedule, f"must be one of {SCHEDULES}")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "must be >= 0")


@dataclass
class SFTConfig:
    """Supervised warm-up on answer-formatted data, loss on response tokens only."""

    max_steps: int = 300
    batch_size: int = 8  # samples per optimizer micro-batch, per process (each rank its own)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_length: int = 512  # prompt + response tokens; longer samples are an error, not silently cut
    length_grouping: int = 16  # batches per window sorted by length (less padding); 0 = plain shuffle
    reasoning: bool = True  # add a short grounded reasoning in <think> (from the region label)
    eval_every: int = 50  # steps between eval-loss passes on the eval split (0 = never)
    eval_samples: int = 64
    log_every: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "max_length"):
            _check(getattr(self, name) >= 1, f"sft.{name}", getattr(self, name), "must be >= 1")
        _check(self.length_grouping >= 0, "sft.length_grouping", self.length_grouping, "must be >= 0")


@dataclass
class RewardConfig:
    """The weighted reward r = Σ w·r_i and the attention reward's options (method.md)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"accuracy": 1.0, "format": 0.5, "region_attention": 1.0}
    )
    entropy_ratio: float = 0.2  # ρ: top share of high-entropy tokens the attention reward averages
    layers: Any = "last_half"  # decoder layers captured: last_half | all | k (last k) | [indices]
    head_reduce: HeadReduce = "mean"  # mean | max over heads
    normalize_by_area: bool = False  # divide by the region's area share (clipped) [ours]
    numeric_tolerance: float = 0.05  # ChartQA relaxed accuracy

    def __post_init__(self) -> None:
        _check(0 < self.entropy_ratio <= 1, "rewards.entropy_ratio", self.entropy_ratio, "must be in (0, 1]")
        _check(
            self.head_reduce in ("mean", "max"),
            "rewards.head_reduce",
            self.head_reduce,
            "must be mean or max",
        )


@dataclass
class GRPOConfig:
    """One GRPO step: P prompts × G rollouts → rewards → advantages → μ updates."""

    init_from: str = "sft"  # sft: <checkpoint.dir>/sft/final | model: model.name_or_path | a checkpoint path
    max_steps: int = 100
    prompts_per_step: int = 4  # P, per process (data-parallel ranks each take their own P)
    group_size: int = 8  # G rollouts per prompt
    micro_batch_size: int = 8  # rollouts per forward/backward pass
    mu: int = 1  # μ: policy-gradient iterations per generation batch
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.04  # KL coefficient; 0 skips the reference model
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    loss_type: str = "grpo"  # grpo | bnpo | dapo | dr_grpo
    advantage_scale: str = "group"  # group | batch | none
    # share each group's prompt: one prefill per prompt in generation (its KV cache repeated G times)
    # and scoring/update with the prompt once and its G completions behind it (sayo.packing); same
    # values, ~G× less prompt compute. Off (or, for scoring, with flash attention): one row per rollout.
    pack_groups: bool = True
    log_every: int = 1
    probe_every: int = 25  # steps between heatmap/completion artifacts of the fixed probe set (0 = never)
    probe_samples: int = 4
    optim: OptimConfig = field(
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
            _check(getattr(self, name) >= 1, f"grpo.{name}", getattr(self, name), "must be >= 1")
        _check(
            self.group_size >= 2, "grpo.group_size", self.group_size, "must be >= 2 (advantages are relative)"
        )
        _check(self.loss_type in LOSS_TYPES, "grpo.loss_type", self.loss_type, f"must be one of {LOSS_TYPES}")
        _check(self.beta >= 0, "grpo.beta", self.beta, "must be >= 0")
        _check(self.temperature > 0, "grpo.temperature", self.temperature, "must be > 0")
        scales = ("group", "batch", "none")
        _check(
            self.advantage_scale in scales, "grpo.advantage_scale", self.advantage_scale, f"one of {scales}"
        )


@dataclass
class CheckpointConfig:
    """Where checkpoints go and how many are kept."""

    dir: str = "outputs/checkpoints"  # the stage writes <dir>/<stage>/step-<n>/ and <dir>/<stage>/final/
    every: int = 50  # steps between checkpoints (0 = only the final one)
    keep_last: int = 2  # step checkpoints kept (the final one is always kept)
    resume: bool = False  # continue from the newest complete checkpoint in the stage directory


@dataclass
class DeepSpeedSection:
    """DeepSpeed engine (GPU); None/empty config runs the plain single-process loop."""

    config: str | None = None  # path to a ZeRO JSON (configs/deepspeed/zero2.json, zero3.json)


@dataclass
class TrainConfig:
    """Everything the `sft` and `grpo` stages read."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataSection = field(default_factory=DataSection)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    evaluate: EvalConfig = field(default_factory=EvalConfig)  # the `evaluate` stage (sayo.evaluate)
    register: RegisterConfig = field(default_factory=RegisterConfig)  # the `register` stage (sayo.tracking)

    def grpo_start(self) -> str:
        """The checkpoint GRPO starts from (and keeps as its KL reference), per `grpo.init_from`."""
        if self.grpo.init_from == "model":
            return self.model.name_or_path
        if self.grpo.init_from != "sft":
            return self.grpo.init_from
        path = Path(self.checkpoint.dir) / "sft" / "final"
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"grpo.init_from=sft but {path} holds no SFT checkpoint: run `sayo sft` first, or set "
                "grpo.init_from=model (start from model.name_or_path) or grpo.init_from=<checkpoint dir>"
            )
        return str(path)


DEFAULT_TRAIN_CONFIG = Path("configs/tiny.yaml")


def load_train_config(
    path: str | Path | None = DEFAULT_TRAIN_CONFIG,
    overrides: list[str] | None = None,
    section: str | None = None,
) -> TrainConfig:
    """The training config from YAML (default `configs/tiny.yaml` if it exists) plus overrides.

    `section` reads one top-level section of the file instead (`train` in `params.yaml`, which
    holds the knobs of every dvc stage).
    """
    if path is not None and not Path(path).exists():
        if Path(path) != DEFAULT_TRAIN_CONFIG:
            raise FileNotFoundError(f"config file {path} does not exist")
        path = None
    return load_config(TrainConfig, path, overrides, section=section)
