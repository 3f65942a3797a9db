"""Policies: loading real Qwen2.5-VL / Qwen3-VL checkpoints and building the tiny offline ones.

The names below load on first use (PEP 562): `sayo.models.config` is read by every recipe, and
importing this package must not pull in torch and transformers for a command that only reads
recipes (`sayo --help`, `sayo recipes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sayo.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _HOME_OF)
