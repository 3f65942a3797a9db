"""The recipe's `model:` section: which policy to start from and how to load it.

The section is read by every stage that loads a policy (training, evaluation) through
`sayo.models.load_policy`; LoRA adapters are applied by the training stages (`sayo.train.lora`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sayo.config import check

DType = Literal["auto", "float32", "bfloat16", "float16", "float64"]
AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]
LoraTargets = Literal["language", "all-linear"]


@dataclass
class LoraConfig:
    """LoRA adapters (peft) instead of full fine-tuning: on the language decoder, or on every linear."""

    enabled: bool = False  # train adapters only; the reference policy is the base with adapters off
    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator (scale = alpha / r)
    dropout: float = 0.05  # dropout on the adapter input
    targets: LoraTargets = "language"  # language: target_modules of the decoder | all-linear: every linear but lm_head (official)
    target_modules: list[str] = field(  # decoder linear layers that get adapters (targets: language)
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )

    def __post_init__(self) -> None:
        check(self.r >= 1, "model.lora.r", self.r, "must be >= 1")
        check(0 <= self.dropout < 1, "model.lora.dropout", self.dropout, "must be in [0, 1)")
        check(
            bool(self.target_modules), "model.lora.target_modules", self.target_modules, "must not be empty"
        )


@dataclass
class ModelConfig:
    """Which policy to start from and how to load it."""

    name_or_path: str = (
        "tiny"  # `tiny`, `tiny-qwen3-vl`, a local checkpoint directory, or a hub id in the HF cache
    )
    dtype: DType = (
        "auto"  # auto = bf16 on a bf16-capable GPU, fp32 on CPU; float64 for exact-equivalence tests
    )
    attn_implementation: AttnImplementation = "sdpa"  # the model's own attention kernel
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, more time)
    lora: LoraConfig = field(default_factory=LoraConfig)  # adapters instead of full fine-tuning
