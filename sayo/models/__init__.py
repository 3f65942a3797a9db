"""Policies: loading real Qwen2.5-VL / Qwen3-VL checkpoints and building the tiny offline ones.

The names below load on first use (PEP 562): `sayo.models.config` is read by every recipe, and
importing this package must not pull in torch and transformers for a command that only reads
recipes (`sayo --help`, `sayo recipes`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sayo.models.loading import (
        TINY_NAME,
        TINY_QWEN3_VL_NAME,
        load_policy,
        resolve_model_path,
        sayo_home,
        tiny_path,
    )
    from sayo.models.processor import (
        ImageOnlyQwen2_5_VLProcessor,
        ImageOnlyQwen3VLProcessor,
        load_processor,
        make_image_processor,
    )
    from sayo.models.tiny import TinyQwen3VLSpec, TinySpec, build_tiny, save_tiny

# public name -> the module that defines it
_HOMES = {
    "sayo.models.loading": (
        "TINY_NAME",
        "TINY_QWEN3_VL_NAME",
        "load_policy",
        "resolve_model_path",
        "sayo_home",
        "tiny_path",
    ),
    "sayo.models.processor": (
        "ImageOnlyQwen2_5_VLProcessor",
        "ImageOnlyQwen3VLProcessor",
        "load_processor",
        "make_image_processor",
    ),
    "sayo.models.tiny": ("TinyQwen3VLSpec", "TinySpec", "build_tiny", "save_tiny"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "TINY_NAME",
    "TINY_QWEN3_VL_NAME",
    "ImageOnlyQwen2_5_VLProcessor",
    "ImageOnlyQwen3VLProcessor",
    "TinyQwen3VLSpec",
    "TinySpec",
    "build_tiny",
    "load_policy",
    "load_processor",
    "make_image_processor",
    "resolve_model_path",
    "save_tiny",
    "sayo_home",
    "tiny_path",
]


def __getattr__(name: str) -> Any:
    """Import the defining module of `name` on first access."""
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name]), name)
    globals()[name] = value
    return value
