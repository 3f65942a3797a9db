"""One GRPO batch, in micro-batch chunks: prompts → sampled completions → the scoring forward.

Rows are P prompts × G rollouts, each prompt's G rollouts adjacent (one group). The batch is
processed in chunks of `grpo.micro_batch_size` rows; each chunk keeps its own processor inputs
(left-padded prompts), region mask and right-padded completions, so generation, scoring and the
policy update all reuse the same tensors.
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
from sayo.prompts import build_prompt_batch, prompt_region_mask, select_rows
from sayo.rewards import region_area_fraction, region_attention_reward, select_high_entropy_tokens
from sayo.rollout import decode_completions, generate_completions, stop_and_suppress
from sayo.scoring import score_rollouts
from sayo.train.config import GRPOConfig, RewardConfig


@dataclass
class Chunk:
    """A micro-batch of rollouts and everything computed for it ([b, ·] tensors on the device)."""

    samples: list[Sample]
    prompts: Any  # processor outputs (BatchFeature)
    region_mask: Tensor  # [b, P]
    image_mask: Tensor  # [b, P]
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

    Each prompt's image is processed once; its G rows repeat the tensors (`select_rows`).
    """
    unique = build_prompt_batch(processor, samples, images)
    total = len(samples) * group_size
    chunks = []
    for start in range(0, total, micro_batch_size):
        prompt_of_row = [row // group_size for row in range(start, min(start + micro_batch_size, total))]
        chunk_samples = [samples[i] for i in prompt_of_row]
        chunk_images = [images[i] for i in prompt_of_row]
        prompts = select_rows(unique, prompt_of_row)
        image_mask, region_mask = prompt_region_mask(prompts, chunk_samples, chunk_images, image_token_id)
        chunks.append(Chunk(chunk_samples, prompts.to(device), region_mask.to(device), image_mask.to(device)))
    return chunks


def generate(
    model: Any,
    processor: Any,
    chunks: list[Chunk],
    cfg: GRPOConfig,
    context: AbstractContextManager | None = None,
) -> None:
    """Sample one completion per row (KV cache, temperature/top-p, stop at EOS)."""
    tokenizer = processor.tokenizer
    stop = stop_and_suppress(tokenizer, model)
    model.eval()
    with context or nullcontext():
        for chunk in chunks:
            chunk.completion_ids, chunk.mask = generate_completions(
                model,
                chunk.prompts,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                do_sample=True,
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
) -> None:
    """The scoring forward(s): old log-probs, entropies, attention on the region, reference log-probs.

    With `keep_graph` (μ = 1, one chunk) the policy forward runs in training mode and keeps its
    graph in `chunk.logps`, so the update reuses it instead of running the same forward again
    (old log-probs are then its detached copy, as in TRL and verl with one inner iteration).
    """
    model.train(keep_graph)
    for chunk in chunks:
        assert chunk.completion_ids is not None and chunk.mask is not None
        scores = score_rollouts(
            model,
            chunk.prompts,
            chunk.completion_ids,
            chunk.mask,
            image_token_id=image_token_id,
            capture=capture,
            region_mask=chunk.region_mask,
            temperature=temperature,
            keep_graph=keep_graph,
        )
        chunk.logps = scores.logps if keep_graph else None
        chunk.old_logps, chunk.entropy = scores.logps.detach(), scores.entropy
        chunk.region_share = scores.region_share
        if reference is not None:
            with reference() as ref_model:
                chunk.ref_logps = score_rollouts(
                    ref_model,
                    chunk.prompts,
                    chunk.completion_ids,
                    chunk.mask,
                    image_token_id=image_token_id,
                    temperature=temperature,
                ).logps
        _attention_reward(chunk, rewards)


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
