"""Policies: loading real Qwen2.5-VL / Qwen3-VL checkpoints and building the tiny offline ones."""

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
