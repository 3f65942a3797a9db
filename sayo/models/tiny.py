"""The tiny policies: Qwen2.5-VL- and Qwen3-VL-architecture models small enough to train on a CPU.

Every stage defaults to the Qwen2.5-VL one (`tiny`) so the whole pipeline runs on a laptop and in
CI, and because it is saved with `save_pretrained`, every later stage loads it exactly as it would
load `Qwen/Qwen2.5-VL-3B-Instruct` (docs/architecture.md, "The tiny default"). The shape follows the
measurement recorded there: text width 192, 4 layers, 6 heads; vision width 128, depth 2
(~2.5 M parameters) learns the synthetic tasks in minutes, a 0.9 M one did not.

`tiny-qwen3-vl` is its sibling in the architecture the SAYO paper trains (Qwen3-VL-8B): the same
text shape, tokenizer vocabulary and vision width, with what Qwen3-VL changes — 16-px patches
(32-px merged cells), a learned position grid in the vision tower, RMS-normalised queries and keys
per head, interleaved M-RoPE, and DeepStack (features of early vision blocks added to the hidden
states of the first decoder layers at the image positions). It exists so that every Qwen3-VL code
path (capture, regions, shared images, packing, generation, training) is tested offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from sayo.models.processor import (
    ImageOnlyQwen2_5_VLProcessor,
    ImageOnlyQwen3VLProcessor,
    make_image_processor,
)
from sayo.models.tokenizer import CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE, build_tokenizer


@dataclass
class TinySpec:
    """Shape of the tiny model; defaults are the CPU recipe (docs/architecture.md)."""

    text_hidden: int = 192  # decoder width
    text_layers: int = 4  # decoder layers
    text_heads: int = 6  # attention heads (head_dim = text_hidden / text_heads)
    text_kv_heads: int = 2  # grouped-query KV heads, as in the real models
    text_intermediate: int = 512  # MLP width
    vision_hidden: int = 128  # vision tower width
    vision_depth: int = 2  # vision blocks
    vision_heads: int = 4
    vision_intermediate: int = 256
    vocab_size: int = 1024  # BPE target; the embedding is padded to a multiple of 64
    min_pixels: int = 28 * 28 * 4  # processor resize bounds (smart_resize)
    max_pixels: int = 28 * 28 * 256
    seed: int = 0
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])

    def __post_init__(self) -> None:
        if self.text_hidden % self.text_heads:
            raise ValueError(
                f"text_hidden={self.text_hidden} is not divisible by text_heads={self.text_heads}"
            )
        if self.text_heads % self.text_kv_heads:
            raise ValueError(
                f"text_heads={self.text_heads} is not divisible by text_kv_heads={self.text_kv_heads}"
            )
        half_head = self.text_hidden // self.text_heads // 2
        if sum(self.mrope_section) != half_head:
            raise ValueError(f"mrope_section={self.mrope_section} must sum to head_dim/2={half_head}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


@dataclass
class TinyQwen3VLSpec(TinySpec):
    """Shape of `tiny-qwen3-vl`: `TinySpec`'s text and vision widths, Qwen3-VL's geometry.

    The resize bounds keep the same number of merged cells as the Qwen2.5 tiny (4 to 256), in
    32-px cells; `mrope_section` splits the 16 rotary frequencies of a 32-wide head in Qwen3-VL's
    proportions (24:20:20 of 64).
    """

    min_pixels: int = 32 * 32 * 4
    max_pixels: int = 32 * 32 * 256
    mrope_section: list[int] = field(default_factory=lambda: [6, 5, 5])
    patch_size: int = 16  # vision patch side in pixels (Qwen3-VL)
    deepstack_blocks: list[int] = field(default_factory=lambda: [0, 1])  # vision blocks feeding DeepStack
    vision_positions: int = 576  # learned position grid (24 × 24), interpolated to each image's grid

    def __post_init__(self) -> None:
        super().__post_init__()
        if not all(0 <= b < self.vision_depth for b in self.deepstack_blocks):
            raise ValueError(
                f"deepstack_blocks={self.deepstack_blocks} must index vision blocks 0..{self.vision_depth - 1}"
            )
        if len(self.deepstack_blocks) > self.text_layers:
            raise ValueError(
                f"deepstack_blocks={self.deepstack_blocks}: more DeepStack levels than text_layers={self.text_layers}"
            )
        side = round(self.vision_positions**0.5)
        if side * side != self.vision_positions:
            raise ValueError(f"vision_positions={self.vision_positions} must be a square number")


def _text_config(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    """The decoder part of both tiny configs; special-token ids match `tokenizer`."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "vocab_size": -(-len(tokenizer) // 64) * 64,
        "hidden_size": spec.text_hidden,
        "intermediate_size": spec.text_intermediate,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": spec.mrope_section,
        },
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }


def _vision_config(spec: TinySpec) -> dict[str, Any]:
    """The vision-tower fields both architectures name the same way."""
    return {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_intermediate,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.text_hidden,
    }


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def tiny_config(spec: TinySpec, tokenizer: Any) -> Qwen2_5_VLConfig | Qwen3VLConfig:
    """The config of the tiny model of `spec`'s architecture (`TinyQwen3VLSpec`: Qwen3-VL)."""
    if isinstance(spec, TinyQwen3VLSpec):
        return tiny_qwen3_vl_config(spec, tokenizer)
    return tiny_qwen2_5_vl_config(spec, tokenizer)


def tiny_qwen3_vl_config(spec: TinyQwen3VLSpec, tokenizer: Any) -> Qwen3VLConfig:
    """A Qwen3-VL config of the given shape whose special-token ids match `tokenizer`."""
    text = {
        **_text_config(spec, tokenizer),
        "head_dim": spec.text_hidden // spec.text_heads,  # Qwen3 states it (default 128)
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": spec.mrope_section,
            "mrope_interleaved": True,
        },
    }
    vision = {
        **_vision_config(spec),
        "patch_size": spec.patch_size,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": spec.vision_positions,
        "deepstack_visual_indexes": list(spec.deepstack_blocks),
    }
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=True, **_token_ids(tokenizer)
    )


def tiny_qwen2_5_vl_config(spec: TinySpec, tokenizer: Any) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of the given shape whose special-token ids match `tokenizer`."""
    text = _text_config(spec, tokenizer)
    vision = {
        **_vision_config(spec),
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=True, **_token_ids(tokenizer)
    )


def _seeded(seed: int, make: Callable[[], PreTrainedModel]) -> PreTrainedModel:
    """`make()` with its weights drawn from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_tiny(spec: TinySpec | None = None) -> tuple[PreTrainedModel, Any]:
    """Build a tiny policy and its processor in memory (deterministic given `spec.seed`).

    `TinySpec` (default) gives the Qwen2.5-VL model, `TinyQwen3VLSpec` the Qwen3-VL one.
    """
    spec = spec or TinySpec()
    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    processor: Any
    if isinstance(spec, TinyQwen3VLSpec):  # Qwen3-VL's image settings: 16-px patches, mean/std 0.5
        tokenizer = build_tokenizer(spec.vocab_size, QWEN3_VL_CHAT_TEMPLATE)
        image_processor = make_image_processor(
            size=size, patch_size=spec.patch_size, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        processor = ImageOnlyQwen3VLProcessor(
            image_processor, tokenizer, chat_template=tokenizer.chat_template
        )
        qwen3 = tiny_qwen3_vl_config(spec, tokenizer)
        qwen3.sayo_tiny_spec = asdict(spec)
        model = _seeded(spec.seed, lambda: Qwen3VLForConditionalGeneration(qwen3))
    else:
        tokenizer = build_tokenizer(spec.vocab_size, CHAT_TEMPLATE)
        image_processor = make_image_processor(size=size)
        processor = ImageOnlyQwen2_5_VLProcessor(
            image_processor, tokenizer, chat_template=tokenizer.chat_template
        )
        qwen2_5 = tiny_qwen2_5_vl_config(spec, tokenizer)
        qwen2_5.sayo_tiny_spec = asdict(spec)
        model = _seeded(spec.seed, lambda: Qwen2_5_VLForConditionalGeneration(qwen2_5))
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def save_tiny(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Build the tiny policy of `spec` (default: `tiny`) and save model + processor with `save_pretrained`, atomically."""
    out = Path(out_dir)
    model, processor = build_tiny(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
