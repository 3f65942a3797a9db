"""The one forward pass GRPO needs per batch of rollouts.

docs/architecture.md, "One GRPO step": a single no-grad forward of the old/reference policy over
prompt + completion gives the per-token log-probabilities, the entropies that choose which
tokens the attention reward looks at, and — through `AttentionCapture` hooks on the same
forward — where those tokens attend in the image. The trainer calls `completion_logits` again
with grad for the policy loss.

Layout (as in TRL/verl): prompts left-padded, completions right-padded, concatenated, so the
completion occupies the last T positions and only those logits are materialised
(`logits_to_keep`), which matters with a 150k vocabulary. The token at completion index t is
predicted by the logits at sequence position P+t−1; that position is also the attention query
for token t, since its attention produced p_t. [ours]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from sayo.attention_capture import AttentionCapture, positions_from_mask
from sayo.data.schema import Sample
from sayo.logprobs import token_entropy, token_logprobs, upcast
from sayo.packing import PackedGroups
from sayo.prompts import prompt_region_mask
from sayo.rewards.attention import RegionMasses, region_masses

QUERIES = ("predicting", "own")


@dataclass
class RolloutScores:
    """Per-token quantities of a rollout batch, aligned with the completion tokens.

    logps, entropy: [B, T]; attention: [B, T, K] over the image keys (None without capture);
    image_keys: [B, K] valid image keys; region_keys: [B, K] keys inside the target region;
    region: each token's attention mass on the region and the image (None without capture).
    """

    logps: Tensor
    entropy: Tensor
    attention: Tensor | None = None
    image_keys: Tensor | None = None
    region_keys: Tensor | None = None
    region: RegionMasses | None = None

    @property
    def region_share(self) -> Tensor | None:
        """[B, T] share of each token's visual attention on the region (None without capture)."""
        if self.region is None:
            return None
        masses = self.region
        has_mass = masses.image > 0
        return torch.where(has_mass, masses.region / torch.where(has_mass, masses.image, 1.0), 0.0)


def _joint_inputs(
    prompt_inputs: Mapping[str, Tensor], completion_ids: Tensor, completion_mask: Tensor
) -> dict:
    inputs = {
        k: v
        for k, v in prompt_inputs.items()
        if k not in ("input_ids", "attention_mask", "mm_token_type_ids")
    }
    inputs["input_ids"] = torch.cat([prompt_inputs["input_ids"], completion_ids], dim=1)  # [B, P+T]
    mask = completion_mask.to(prompt_inputs["attention_mask"].dtype)
    inputs["attention_mask"] = torch.cat([prompt_inputs["attention_mask"], mask], dim=1)  # [B, P+T]
    if "mm_token_type_ids" in prompt_inputs:  # image placeholders are in the prompt only
        pad = torch.zeros_like(completion_ids, dtype=prompt_inputs["mm_token_type_ids"].dtype)
        inputs["mm_token_type_ids"] = torch.cat([prompt_inputs["mm_token_type_ids"], pad], dim=1)
    return inputs


def completion_logits(
    model: nn.Module,
    prompt_inputs: Mapping[str, Tensor],
    completion_ids: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
) -> Tensor:
    """Logits [B, T, V] that predict each completion token (divided by the sampling temperature)."""
    inputs = _joint_inputs(prompt_inputs, completion_ids, completion_mask)
    num_completion = completion_ids.shape[1]
    out = model(**inputs, use_cache=False, logits_to_keep=num_completion + 1)
    return upcast(out.logits[:, :-1]) / temperature  # [B, T, V], at least float32


def packed_completion_logits(model: nn.Module, packed: PackedGroups, temperature: float = 1.0) -> Tensor:
    """`completion_logits` of grouped rollouts laid out by `sayo.packing.pack_groups`: [P·g, T, V]."""
    out = model(**packed.inputs, use_cache=False, logits_to_keep=packed.keep)
    return upcast(packed.unpack(out.logits)) / temperature


def score_rollouts(
    model: nn.Module,
    prompt_inputs: Mapping[str, Any],
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    image_token_id: int,
    capture: AttentionCapture | None = None,
    region_mask: Tensor | None = None,
    temperature: float = 1.0,
    keep_graph: bool = False,
    packed: PackedGroups | None = None,
    query: str = "predicting",
) -> RolloutScores:
    """One forward: log-probs, entropies and (optionally) attention on the image.

    No gradient is kept unless `keep_graph`: then `logps` carries the autograd graph, so a trainer
    with μ = 1 can use this same forward for its update instead of running a second one (entropy
    and attention carry no gradient, unless `capture` is differentiable: SFT's attention term).

    Args:
        prompt_inputs: processor outputs for the prompts (left-padded), one row per rollout.
        completion_ids, completion_mask: [B, T] sampled tokens and their validity (right-padded).
        image_token_id: id of the `<|image_pad|>` placeholder (model.config.image_token_id).
        capture: attention hooks on the chosen layers; None skips the capture.
        region_mask: [B, P] True on the prompt's image tokens inside the target region(s).
        packed: the same rollouts laid out one sequence per group (`sayo.packing.pack_groups`);
            when given, the forward runs on it (`prompt_inputs` is not used) and gives the same
            values per row.
        query: whose attention is token t's: `predicting`, the position that predicts t (the
            attention that produced it), or `own`, t's own position (the authors' decode step).
    """
    if query not in QUERIES:
        raise ValueError(f"query={query!r}: expected one of {QUERIES}")
    with torch.set_grad_enabled(keep_graph):
        if packed is not None:
            return _score_packed(
                model, packed, completion_ids, image_token_id, capture, region_mask, temperature, query
            )
        return _score(
            model,
            prompt_inputs,
            completion_ids,
            completion_mask,
            image_token_id,
            capture,
            region_mask,
            temperature,
            query,
        )


def score_on_regions(
    model: nn.Module,
    prompt_inputs: Any,
    completion_ids: Tensor,
    completion_mask: Tensor,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    capture: AttentionCapture,
    *,
    query: str,
    repeat: int = 1,
    merge_size: int | None = None,
    keep_graph: bool = False,
) -> RolloutScores:
    """`score_rollouts` with attention on the samples' regions (each sample `repeat` rows in a row):
    the one way SFT's attention term and evaluation measure it, from the prompts' own image grid."""
    image_token_id: int = model.config.image_token_id  # type: ignore[union-attr,assignment]
    _, region_mask = prompt_region_mask(prompt_inputs, samples, images, image_token_id, repeat, merge_size)
    return score_rollouts(
        model,
        prompt_inputs,
        completion_ids,
        completion_mask,
        image_token_id=image_token_id,
        capture=capture,
        region_mask=region_mask.to(completion_ids.device),
        keep_graph=keep_graph,
        query=query,
    )


def _score(
    model: nn.Module,
    prompt_inputs: Mapping[str, Any],
    completion_ids: Tensor,
    completion_mask: Tensor,
    image_token_id: int,
    capture: AttentionCapture | None,
    region_mask: Tensor | None,
    temperature: float,
    query: str = "predicting",
) -> RolloutScores:
    prompt_len = prompt_inputs["input_ids"].shape[1]
    num_completion = completion_ids.shape[1]
    if capture is None:
        logits = completion_logits(model, prompt_inputs, completion_ids, completion_mask, temperature)
        return RolloutScores(token_logprobs(logits, completion_ids), token_entropy(logits.detach()))
    key_index, image_keys = positions_from_mask(prompt_inputs["input_ids"] == image_token_id)  # [B, K]
    batch = completion_ids.shape[0]
    first = prompt_len - 1 if query == "predicting" else prompt_len  # the query of completion token 0
    query_index = (first + torch.arange(num_completion, device=completion_ids.device)).expand(batch, -1)
    attention_mask = torch.cat([prompt_inputs["attention_mask"], completion_mask.long()], dim=1)  # [B, P+T]
    with capture.record(query_index, key_index, attention_mask) as request:
        logits = completion_logits(model, prompt_inputs, completion_ids, completion_mask, temperature)
    attention = capture.result(request) * image_keys[:, None, :]  # [B, T, K]
    return _with_attention(logits, completion_ids, attention, key_index, image_keys, region_mask)


def _score_packed(
    model: nn.Module,
    packed: PackedGroups,
    completion_ids: Tensor,
    image_token_id: int,
    capture: AttentionCapture | None,
    region_mask: Tensor | None,
    temperature: float,
    query: str = "predicting",
) -> RolloutScores:
    if capture is None:
        logits = packed_completion_logits(model, packed, temperature)
        return RolloutScores(token_logprobs(logits, completion_ids), token_entropy(logits.detach()))
    key_index, image_keys = positions_from_mask(packed.prompt_ids == image_token_id)  # [P, K]
    positions = packed.keep if query == "predicting" else packed.tokens  # [g·T]
    query_index = positions.expand(key_index.shape[0], -1)  # [P, g·T]
    with capture.record(query_index, key_index, None, visible_keys=packed.visible) as request:
        logits = packed_completion_logits(model, packed, temperature)
    key_index, image_keys = packed.rows(key_index), packed.rows(image_keys)  # [B, K]
    attention = packed.unpack(capture.result(request)) * image_keys[:, None, :]  # [B, T, K]
    return _with_attention(logits, completion_ids, attention, key_index, image_keys, region_mask)


def _with_attention(
    logits: Tensor,
    completion_ids: Tensor,
    attention: Tensor,
    key_index: Tensor,
    image_keys: Tensor,
    region_mask: Tensor | None,
) -> RolloutScores:
    region_keys = torch.zeros_like(image_keys)
    if region_mask is not None:
        region_keys = region_mask.gather(1, key_index) & image_keys  # [B, K]
    return RolloutScores(
        logps=token_logprobs(logits, completion_ids),
        entropy=token_entropy(logits.detach()),
        attention=attention,
        image_keys=image_keys,
        region_keys=region_keys,
        region=region_masses(attention, region_keys, image_keys),
    )


def attention_map(scores: RolloutScores, selected: Tensor, row: int, grid_shape: tuple[int, int]) -> Tensor:
    """Mean attention of a row's selected tokens over its image, as the [rows, cols] token grid.

    Args:
        scores: a captured `RolloutScores` (one image per prompt).
        selected: [B, T] tokens to average (e.g. the high-entropy selection).
        row: the rollout.
        grid_shape: merged token grid of the row's image (`sayo.regions.token_grid_shape`).
    """
    if scores.attention is None or scores.image_keys is None:
        raise ValueError("attention_map needs scores computed with an AttentionCapture")
    weights = selected[row].float()  # [T]
    per_key = (scores.attention[row] * weights[:, None]).sum(0) / weights.sum().clamp(min=1)  # [K]
    return per_key[scores.image_keys[row]].reshape(grid_shape)  # [rows, cols]
