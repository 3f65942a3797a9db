"""One GRPO batch, in micro-batch chunks: prompts → sampled completions → the scoring forward.

Rows are P prompts × G rollouts, each prompt's G rollouts adjacent (one group). The batch is
processed in chunks of `grpo.micro_batch_size` rows; each chunk keeps its own processor inputs
(left-padded prompts), region mask and right-padded completions, so generation, scoring and the
policy update all reuse the same tensors. A chunk's distinct images go through the vision tower once
per forward (`sayo.vision.SharedImages`), not once per row; when no gradient has to flow through
the tower (a frozen or LoRA-adapted tower, or a no-grad forward), the features computed for
generation are reused by every later forward of the step, the reference's included when it shares
the policy's tower (LoRA: the same module with adapters off).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from sayo.attention import AttentionCapture
from sayo.data.schema import Sample
from sayo.packing import PackedGroups, pack_groups, packable, rope_index_available
from sayo.prompts import build_prompt_batch, prompt_region_mask, select_rows
from sayo.rewards import region_area_fraction, region_attention_reward, select_high_entropy_tokens
from sayo.sampling import decode_completions, generate_completions, generate_groups, stop_and_suppress
from sayo.scoring import score_rollouts
from sayo.train.config import GRPOConfig, RewardConfig
from sayo.vision import SharedImages, encoder_inputs, vision_trains


@dataclass
class Chunk:
    """A micro-batch of rollouts and everything computed for it ([b, ·] tensors on the device)."""

    samples: list[Sample]
    prompts: Any  # processor outputs (BatchFeature) without pixels: ids, masks, image grids per row
    images: SharedImages  # the chunk's distinct images and which one each row shows
    region_mask: Tensor  # [b, P]
    image_mask: Tensor  # [b, P]
    features: tuple[Tensor, ...] | None = None  # distinct images' features from generation (no grad)
    packed: PackedGroups | None = None  # one sequence per group, when scored that way
    completion_ids: Tensor | None = None  # [b, T]
    mask: Tensor | None = None  # [b, T]
    texts: list[str] | None = None
    truncated: Tensor | None = None  # [b] no EOS within max_new_tokens
    logps: Tensor | None = None  # [b, T] with the autograd graph (fused μ = 1 path only)
    old_logps: Tensor | None = None  # [b, T]
    ref_logps: Tensor | None = None  # [b, T]
    entropy: Tensor | None = None  # [b, T]
    region_share: Tensor | None = None  # [b, T]
    selected: Tensor | None = None  # [b, T] high-entropy tokens of the attention reward
    region_attention: Tensor | None = None  # [b]

    def group_prompts(self) -> tuple[dict[str, Tensor], int] | None:
        """One prompt row per group and the group size, when the chunk holds whole (or equal) groups."""
        groups = self.images.groups()
        if groups is None:
            return None
        first, size = groups
        return {k: v[first] for k, v in self.prompts.items()}, size


def make_chunks(
    processor: Any,
    samples: list[Sample],
    images: list[Image.Image],
    group_size: int,
    micro_batch_size: int,
    image_token_id: int,
    device: str,
) -> list[Chunk]:
    """Split P prompts × G rollouts into chunks of processor inputs with their region masks.

    Each prompt's image is processed once: its G rows repeat the text tensors (`select_rows`) and
    point at one copy of its patches (`SharedImages`).
    """
    unique = build_prompt_batch(processor, samples, images)
    total = len(samples) * group_size
    chunks = []
    for start in range(0, total, micro_batch_size):
        prompt_of_row = [row // group_size for row in range(start, min(start + micro_batch_size, total))]
        chunk_samples = [samples[i] for i in prompt_of_row]
        chunk_images = [images[i] for i in prompt_of_row]
        prompts = select_rows(unique, prompt_of_row)
        del prompts["pixel_values"]  # the rows' images travel once, in `SharedImages`
        shared = SharedImages.select(unique, prompt_of_row).to(device)
        image_mask, region_mask = prompt_region_mask(prompts, chunk_samples, chunk_images, image_token_id)
        chunks.append(
            Chunk(chunk_samples, prompts.to(device), shared, region_mask.to(device), image_mask.to(device))
        )
    return chunks


def image_features(model: Any, chunk: Chunk, grad: bool) -> tuple[Tensor, ...]:
    """Features of the chunk's distinct images under `model`.

    Reuses those computed for generation unless a gradient must flow through a trainable vision
    tower (`grad`); the Qwen vision tower has no dropout, so train/eval mode does not change them.
    """
    if chunk.features is None or (grad and vision_trains(model)):
        with torch.set_grad_enabled(grad):
            return chunk.images.encode(model)
    return chunk.features


def forward_inputs(
    model: Any, chunk: Chunk, features: tuple[Tensor, ...]
) -> tuple[dict, PackedGroups | None]:
    """What a scoring/update forward of the chunk runs on: `(row inputs, None)`, or the packed
    groups (`sayo.packing`, laid out once per chunk) when the chunk was packed."""
    if chunk.packed is not None:
        return {}, chunk.packed.with_features(features)
    return {**chunk.prompts, **encoder_inputs(chunk.images.per_row(features))}, None


def pack(model: Any, chunk: Chunk) -> None:
    """Lay the chunk out one sequence per group when the model and the chunk allow it."""
    groups = chunk.group_prompts()
    if groups is None or not packable(model):
        return
    assert chunk.completion_ids is not None and chunk.mask is not None and chunk.features is not None
    prompts, size = groups
    chunk.packed = pack_groups(model, prompts, chunk.features, chunk.completion_ids, chunk.mask, size)


def generate(
    model: Any,
    processor: Any,
    chunks: list[Chunk],
    cfg: GRPOConfig,
    context: AbstractContextManager | None = None,
) -> None:
    """Sample one completion per row (KV cache, temperature/top-p, stop at EOS).

    With `cfg.pack_groups`, a chunk of whole (or equal) groups prefills each prompt once and
    repeats its KV cache for the group's rollouts (`generate_groups`).
    """
    tokenizer = processor.tokenizer
    stop = stop_and_suppress(tokenizer, model)
    model.eval()
    with context or nullcontext():
        for chunk in chunks:
            with torch.no_grad():
                chunk.features = chunk.images.encode(model)
            groups = chunk.group_prompts() if cfg.pack_groups and rope_index_available(model) else None
            sampling: dict[str, Any] = {
                "max_new_tokens": cfg.max_new_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
            }
            if groups is not None:  # one prefill per prompt, its cache repeated for the group
                prompts, size = groups
                chunk.completion_ids, chunk.mask = generate_groups(
                    model, prompts, chunk.features, size, **sampling, **stop
                )
            else:
                chunk.completion_ids, chunk.mask = generate_completions(
                    model,
                    {**chunk.prompts, **encoder_inputs(chunk.images.per_row(chunk.features))},
                    do_sample=True,
                    **sampling,
                    **stop,
                )
            chunk.texts = decode_completions(tokenizer, chunk.completion_ids, chunk.mask)
            chunk.truncated = ~(chunk.completion_ids == stop["eos_token_id"]).any(dim=1)


def score(
    model: Any,
    reference: Any | None,
    chunks: list[Chunk],
    capture: AttentionCapture | None,
    rewards: RewardConfig,
    temperature: float,
    image_token_id: int,
    keep_graph: bool = False,
    pack_groups: bool = True,
) -> None:
    """The scoring forward(s): old log-probs, entropies, attention on the region, reference log-probs.

    With `pack_groups` each chunk whose rows are whole (or equal) groups is scored one sequence
    per prompt (`sayo.packing`); the layout is kept on the chunk for the update.

    With `keep_graph` (μ = 1, one chunk) the policy forward runs in training mode and keeps its
    graph in `chunk.logps`, so the update reuses it instead of running the same forward again
    (old log-probs are then its detached copy, as in TRL and verl with one inner iteration).
    """
    model.train(keep_graph)
    for chunk in chunks:
        assert chunk.completion_ids is not None and chunk.mask is not None
        if pack_groups:
            pack(model, chunk)
        inputs, packed = forward_inputs(model, chunk, image_features(model, chunk, grad=keep_graph))
        scores = score_rollouts(
            model,
            inputs,
            chunk.completion_ids,
            chunk.mask,
            image_token_id=image_token_id,
            capture=capture,
            region_mask=chunk.region_mask,
            temperature=temperature,
            keep_graph=keep_graph,
            packed=packed,
        )
        chunk.logps = scores.logps if keep_graph else None
        chunk.old_logps, chunk.entropy = scores.logps.detach(), scores.entropy
        chunk.region_share = scores.region_share
        if reference is not None:
            with reference() as ref_model:
                # LoRA on the language model only: the same tower, so the same features
                shares_tower = ref_model is model and not vision_trains(model)
                features = (
                    image_features(model, chunk, grad=False) if shares_tower else _encode(ref_model, chunk)
                )
                inputs, packed = forward_inputs(ref_model, chunk, features)
                chunk.ref_logps = score_rollouts(
                    ref_model,
                    inputs,
                    chunk.completion_ids,
                    chunk.mask,
                    image_token_id=image_token_id,
                    temperature=temperature,
                    packed=packed,
                ).logps
        _attention_reward(chunk, rewards)


@torch.no_grad()
def _encode(model: Any, chunk: Chunk) -> tuple[Tensor, ...]:
    return chunk.images.encode(model)


def _attention_reward(chunk: Chunk, rewards: RewardConfig) -> None:
    assert chunk.entropy is not None and chunk.mask is not None
    chunk.selected = select_high_entropy_tokens(chunk.entropy, chunk.mask, rewards.entropy_ratio)  # [b, T]
    if chunk.region_share is None:
        chunk.region_attention = torch.zeros(chunk.mask.shape[0], device=chunk.mask.device)
        return
    fraction = region_area_fraction(chunk.region_mask, chunk.image_mask)  # [b]
    chunk.region_attention = region_attention_reward(
        chunk.region_share,
        chunk.selected,
        region_fraction=fraction,
        normalize_by_area=rewards.normalize_by_area,
    )
