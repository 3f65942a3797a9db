"""LoRA adapters (on the language decoder, or on every linear), and the reference policy they give for free.

Why LoRA here: GRPO needs the policy and a frozen reference for the KL term (docs/method.md). With
adapters the reference is the same network with the adapters switched off, so the 3B/7B recipes
need no second copy of the weights; without LoRA, `frozen_copy` is the reference.

Choices:
- `model.lora.targets: language` (default): adapters on the language decoder only
  (`model.language_model.layers.N...`): the vision tower has its own `*_proj`/`qkv` linears, and
  the method trains where answer tokens look, not what the encoder sees. peft matches a string
  `target_modules` with `re.fullmatch`, so one regex built from `LoraConfig.target_modules` keeps
  the vision tower out.
- `targets: all-linear`: peft's "all-linear" shorthand, what the authors' recipe passes
  (`--lora_target_modules all-linear`, docs/method.md): every `nn.Linear` but the output head, the
  vision tower's and its merger's included (the patch embedding is a Conv3d, so it stays out, in
  sayo as in theirs). The tower then trains, so GRPO re-encodes images wherever a gradient or the
  reference (adapters off) needs it (`sayo.vision.vision_trains`).
- `task_type=None`: a plain `PeftModel` forwards every keyword (pixel_values, image_grid_thw)
  unchanged to the HF model, which `PeftModelForCausalLM`'s text-only signature does not promise.
- `sayo.attention_capture.AttentionCapture` hooks `self_attn.q_proj`/`k_proj`; peft replaces those with
  `lora.Linear` wrappers whose output includes the adapter, so the capture sees the adapted
  projections (tested against the merged model).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from sayo.models.config import LoraConfig

LANGUAGE_LAYERS = r"(.*\.)?language_model\.layers\.\d+\.(.*\.)?"  # decoder layers, not `visual.blocks`


def target_regex(target_modules: list[str]) -> str:
    """The peft `target_modules` regex: these module names inside the language decoder's layers."""
    names = "|".join(re.escape(name) for name in target_modules)
    return f"{LANGUAGE_LAYERS}({names})"


def _check_targets(model: nn.Module, config: LoraConfig) -> None:
    """Every requested name must match at least one language-decoder linear."""
    found = {
        name.rsplit(".", 1)[-1]
        for name, _ in model.named_modules()
        if re.fullmatch(target_regex(config.target_modules), name)
    }
    missing = [name for name in config.target_modules if name not in found]
    if missing:
        raise ValueError(
            f"model.lora.target_modules = {config.target_modules!r}: {missing} match no module of the "
            "language decoder (model.language_model.layers.N.*); use names such as q_proj, k_proj, "
            "v_proj, o_proj, gate_proj, up_proj, down_proj"
        )


def apply_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Wrap `model` with LoRA adapters where `config.targets` says; the base weights are frozen.

    Args:
        model: an HF Qwen2.5-VL / Qwen3-VL model (modified in place: peft injects the adapters).
        config: rank, alpha, dropout, and the targets: the language decoder's `target_modules`, or
            every linear layer but the output head (`all-linear`).
    Returns:
        the `peft.PeftModel`; only the adapter weights have `requires_grad=True`.
    """
    import peft

    if config.targets == "all-linear":
        targets = "all-linear"  # peft expands it: every nn.Linear but the output embedding
    else:
        _check_targets(model, config)
        targets = target_regex(config.target_modules)
    peft_config = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        task_type=None,
    )
    return peft.get_peft_model(model, peft_config)


def is_peft(model: nn.Module) -> bool:
    """Whether `model` is a peft-wrapped model (so its base, adapters off, is the reference)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


@contextmanager
def reference_policy(model: nn.Module) -> Iterator[nn.Module]:
    """The reference policy of a LoRA model: the same model with its adapters disabled.

    Usage: `with torch.no_grad(), reference_policy(policy) as ref: ref_logits = ref(**batch).logits`.
    Without LoRA there is nothing to switch off: use `frozen_copy(policy)` once, before training.
    """
    if not is_peft(model):
        raise TypeError(
            f"reference_policy needs a peft model (LoRA enabled), got {type(model).__name__}; "
            "with model.lora.enabled=false keep a `frozen_copy(policy)` made before training as the reference"
        )
    with model.disable_adapter():  # type: ignore[operator]
        yield model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every parameter frozen: the reference when LoRA is off."""
    ref = copy.deepcopy(model).eval()
    return ref.requires_grad_(False)


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain HF model with the adapters merged into the base weights (for export); `model` is unchanged."""
    if not is_peft(model):
        raise TypeError(f"merged_copy needs a peft model (LoRA enabled), got {type(model).__name__}")
    merged: nn.Module = copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
    return merged
