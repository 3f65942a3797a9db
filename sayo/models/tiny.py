"""The tiny default policy: a Qwen2.5-VL-architecture model small enough to train on a CPU.

Every stage defaults to it so the whole pipeline runs on a laptop and in CI, and because it is
saved with `save_pretrained`, every later stage loads it exactly as it would load
`Qwen/Qwen2.5-VL-3B-Instruct` (docs/architecture.md, "The tiny default"). The shape follows the
measurement recorded there: text width 192, 4 layers, 6 heads; vision width 128, depth 2
(~2.5 M parameters) learns the synthetic tasks in minutes, a 0.9 M one did not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from sayo.models.processor import ImageOnlyQwen2_5_VLProcessor, make_image_processor
from sayo.models.tokenizer import build_tokenizer


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


def tiny_config(spec: TinySpec, tokenizer: Any) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of the given shape whose special-token ids match `tokenizer`."""
    ids = tokenizer.convert_tokens_to_ids
    vocab = -(-len(tokenizer) // 64) * 64
    text = {
        "vocab_size": vocab,
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
    vision = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_intermediate,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.text_hidden,
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def build_tiny(
    spec: TinySpec | None = None,
) -> tuple[Qwen2_5_VLForConditionalGeneration, ImageOnlyQwen2_5_VLProcessor]:
    """Build the tiny policy and its processor in memory (deterministic given `spec.seed`)."""
    spec = spec or TinySpec()
    tokenizer = build_tokenizer(spec.vocab_size)
    image_processor = make_image_processor(
        size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    )
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor, tokenizer, chat_template=tokenizer.chat_template
    )
    config = tiny_config(spec, tokenizer)
    config.sayo_tiny_spec = asdict(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def save_tiny(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Build the tiny policy and save model + processor with `save_pretrained`, atomically."""
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
