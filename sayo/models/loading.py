"""One way to load a policy, whether it is a tiny model or a real Qwen2.5-VL / Qwen3-VL checkpoint.

`load_policy("Qwen/Qwen3-VL-8B-Instruct")`, `load_policy("/models/my-sft")`, `load_policy("tiny")`
and `load_policy("tiny-qwen3-vl")` all go through `from_pretrained`: a tiny model is saved once to
a local cache directory and then loaded like any checkpoint, so the code path tested here is the
one users run on real weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, PreTrainedModel

from sayo.models.patch_embed import use_linear_patch_embed
from sayo.models.processor import load_processor
from sayo.models.tiny import TinyQwen3VLSpec, TinySpec, save_tiny

TINY_NAME = "tiny"  # the Qwen2.5-VL tiny default
TINY_QWEN3_VL_NAME = "tiny-qwen3-vl"  # its Qwen3-VL sibling
TINY_SPECS: dict[str, type[TinySpec]] = {TINY_NAME: TinySpec, TINY_QWEN3_VL_NAME: TinyQwen3VLSpec}


def sayo_home() -> Path:
    """Where sayo caches generated artefacts (the tiny model): `$SAYO_HOME` or `~/.cache/sayo`."""
    return Path(os.environ.get("SAYO_HOME", Path.home() / ".cache" / "sayo"))


def tiny_path(spec: TinySpec | None = None) -> Path:
    """The cache directory of the tiny model with this spec (built on first use)."""
    spec = spec or TinySpec()
    name = TINY_QWEN3_VL_NAME if isinstance(spec, TinyQwen3VLSpec) else TINY_NAME
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    path = sayo_home() / "models" / f"{name}-{digest}"
    if not (path / "config.json").exists():
        save_tiny(path, spec)
    return path


def resolve_model_path(name_or_path: str | Path) -> str:
    """Map the names `tiny` and `tiny-qwen3-vl` to their cached directories; anything else is passed
    to transformers as is."""
    spec = TINY_SPECS.get(str(name_or_path))
    return str(tiny_path(spec())) if spec is not None else str(name_or_path)


def _dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return (
            torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        )
    choices = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float64": torch.float64,  # equivalence tests: float sums in any order agree to ~1e-15
        "fp64": torch.float64,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in choices:
        raise ValueError(f"dtype={dtype!r} is not one of 'auto', {', '.join(map(repr, choices))}")
    return choices[dtype]


def load_policy(
    name_or_path: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, Any]:
    """Load a Qwen2.5-VL- or Qwen3-VL-family policy and its processor.

    Args:
        name_or_path: `tiny`, `tiny-qwen3-vl`, a local `save_pretrained` directory, or a hub id
            already in the HF cache.
        dtype: `auto` (bf16 on a bf16-capable GPU, fp32 otherwise) or a dtype name.
        device: where to put the model; default CUDA if available, else CPU.
        attn_implementation: the model's own attention kernel (`sdpa`, `flash_attention_2`, `eager`).
    Returns:
        `(model, processor)`, the model in eval mode, its vision patch embedding computed as a matmul
        (`sayo.models.patch_embed`: same weights and outputs, several times faster than Conv3d).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_model_path(name_or_path)
    local = Path(path).is_dir()
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=_dtype(dtype, device), attn_implementation=attn_implementation, local_files_only=local
        )
        processor = load_processor(path, local_files_only=local)
    except OSError as err:
        raise OSError(
            f"cannot load policy {name_or_path!r}: not a local directory with config.json and weights, and not "
            f"in the Hugging Face cache (download it first with `hf download {name_or_path}`, or pass a path). "
            f"Cause: {err}"
        ) from err
    use_linear_patch_embed(model)
    return model.to(device).eval(), processor  # type: ignore[arg-type]  # transformers' typed `to` wrapper
