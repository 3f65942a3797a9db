"""One GRPO step as a chain of immutable records: prompts → sampled → scored → rewarded → updated.

The batch is P prompts × G rollouts, each prompt's G rollouts adjacent (one group), processed in
micro-batch chunks of `grpo.micro_batch_size` rows. Each phase takes the previous phase's frozen
records and returns new ones, so what a record holds is exactly what its phase computed:

  PromptChunk   processor inputs (left-padded), the distinct images, region and image masks
  SampledChunk  + completions (right-padded ids, mask, texts, truncation) and the image features
  ScoredChunk   + old/reference log-probs, entropies, the selected tokens and attention on region
  Rewards       total and per-component rewards of every rollout, in row order

A chunk's distinct images go through the vision tower once per forward (`sayo.vision`); when no
gradient has to flow through the tower (frozen or LoRA-adapted tower, or a no-grad forward) the
features computed for generation are reused by every later forward of the step, the reference's
included when it shares the policy's tower. With `grpo.pack_groups`, generation prefills each
prompt once (`sayo.sampling.generate_groups`) and scoring/update lay each group out behind one
copy of its prompt (`sayo.packing`); the layout is part of the scored record.

The fused μ = 1 path is explicit: `score(..., keep_graph=True)` returns records whose `graph`
holds the policy log-probs with their autograd graph, and `update` uses them for its first (only)
pass instead of running the same forward again (old log-probs are their detached copy, as TRL and
verl do with one inner iteration); every other pass recomputes the log-probs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from sayo.attention_capture import AttentionCapture
from sayo.data.schema import Sample
from sayo.logprobs import token_kl, token_logprobs
from sayo.loss import policy_loss
from sayo.packing import PackedGroups, pack_groups, packable, rope_index_available
from sayo.prompts import PromptConfig, build_prompt_batch, prompt_region_mask, select_rows
from sayo.rewards import accuracy_reward, combine_rewards
from sayo.rewards.attention import AttentionOnRegion, attention_on_region, select_tokens
from sayo.rewards.config import RewardConfig
from sayo.rewards.format import format_rewards
from sayo.sampling import decode_completions, generate_completions, generate_groups, stop_and_suppress
from sayo.scoring import completion_logits, packed_completion_logits, score_rollouts
from sayo.train import distributed
from sayo.train.config import GRPOConfig
from sayo.vision import SharedImages, encoder_inputs, vision_trains


@dataclass(frozen=True)
class PromptChunk:
    """A micro-batch of rollout rows before sampling ([b, ·] tensors on the device)."""

    samples: list[Sample]
    prompts: Any  # processor outputs (BatchFeature) without pixels: ids, masks, image grids per row
    images: SharedImages  # the chunk's distinct images and which one each row shows
    region_mask: Tensor  # [b, L] prompt positions of image tokens inside the target region(s)
    image_mask: Tensor  # [b, L] prompt positions of image tokens

    def group_prompts(self) -> tuple[dict[str, Tensor], int] | None:
        """One prompt row per group and the group size, when the chunk holds whole (or equal) groups."""
        groups = self.images.groups()
        if groups is None:
            return None
        first, size = groups
        return {k: v[first] for k, v in self.prompts.items()}, size


@dataclass(frozen=True)
class SampledChunk:
    """A prompt chunk with one sampled completion per row."""

    prompt: PromptChunk
    features: tuple[Tensor, ...]  # the distinct images' features from generation (no grad)
    completion_ids: Tensor  # [b, T] right-padded
    mask: Tensor  # [b, T] valid completion tokens (up to and including EOS)
    texts: list[str]
    truncated: Tensor  # [b] no EOS within max_new_tokens


@dataclass(frozen=True)
class ScoredChunk:
    """A sampled chunk after the scoring forward(s)."""

    sampled: SampledChunk
    packed: PackedGroups | None  # one sequence per group, when scored (and updated) that way
    old_logps: Tensor  # [b, T] log-probs under the policy that sampled them (no grad)
    ref_logps: Tensor | None  # [b, T] under the reference policy (None when β = 0)
    entropy: Tensor  # [b, T]
    selected: Tensor  # [b, T] the tokens the attention reward counts
    attention: AttentionOnRegion | None  # [b] share, area fraction, lift and reward (None without capture)
    graph: Tensor | None = None  # [b, T] log-probs with their autograd graph (fused μ = 1 path only)

    @property
    def rows(self) -> int:
        return len(self.sampled.prompt.samples)


@dataclass(frozen=True)
class Rewards:
    """The weighted total reward and every component, [B] each, in row order."""

    total: Tensor
    components: dict[str, Tensor]


# ---------------------------------------------------------------- 1. prompts


def make_chunks(
    processor: Any,
    samples: list[Sample],
    images: list[Image.Image],
    group_size: int,
    micro_batch_size: int,
    image_token_id: int,
    device: str,
    prompt: PromptConfig | None = None,
) -> list[PromptChunk]:
    """Split P prompts × G rollouts into chunks of processor inputs with their region masks.

    Each prompt's image is processed once: its G rows repeat the text tensors (`select_rows`) and
    point at one copy of its patches (`SharedImages`). `prompt` is the recipe's `prompt:` section.
    """
    unique = build_prompt_batch(processor, samples, images, prompt=prompt)
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
            PromptChunk(
                chunk_samples, prompts.to(device), shared, region_mask.to(device), image_mask.to(device)
            )
        )
    return chunks


# ---------------------------------------------------------------- 2. sample


def sample(
    model: Any,
    processor: Any,
    chunks: Sequence[PromptChunk],
    cfg: GRPOConfig,
    context: AbstractContextManager | None = None,
) -> list[SampledChunk]:
    """Sample one completion per row (KV cache, temperature/top-p, stop at EOS).

    With `cfg.pack_groups`, a chunk of whole (or equal) groups prefills each prompt once and
    repeats its KV cache for the group's rollouts (`generate_groups`).
    """
    tokenizer = processor.tokenizer
    stop = stop_and_suppress(tokenizer, model)
    sampling: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
    }
    model.eval()
    out = []
    with context or nullcontext():
        for chunk in chunks:
            with torch.no_grad():
                features = chunk.images.encode(model)
            groups = chunk.group_prompts() if cfg.pack_groups and rope_index_available(model) else None
            if groups is not None:  # one prefill per prompt, its cache repeated for the group
                prompts, size = groups
                ids, mask = generate_groups(model, prompts, features, size, **sampling, **stop)
            else:
                inputs = {**chunk.prompts, **encoder_inputs(chunk.images.per_row(features))}
                ids, mask = generate_completions(model, inputs, do_sample=True, **sampling, **stop)
            texts = decode_completions(tokenizer, ids, mask)
            truncated = ~(ids == stop["eos_token_id"]).any(dim=1)
            out.append(SampledChunk(chunk, features, ids, mask, texts, truncated))
    return out


# ---------------------------------------------------------------- 3. score


def image_features(model: Any, chunk: SampledChunk, grad: bool) -> tuple[Tensor, ...]:
    """Features of the chunk's distinct images under `model`.

    Reuses those computed for generation unless a gradient must flow through a trainable vision
    tower (`grad`); the Qwen vision tower has no dropout, so train/eval mode does not change them.
    """
    if grad and vision_trains(model):
        with torch.enable_grad():
            return chunk.prompt.images.encode(model)
    return chunk.features


def forward_inputs(
    chunk: SampledChunk, packed: PackedGroups | None, features: tuple[Tensor, ...]
) -> tuple[dict, PackedGroups | None]:
    """What a scoring/update forward runs on: `(row inputs, None)`, or the packed groups fed `features`."""
    if packed is not None:
        return {}, packed.with_features(features)
    prompt = chunk.prompt
    return {**prompt.prompts, **encoder_inputs(prompt.images.per_row(features))}, None


def layout(model: Any, chunk: SampledChunk, pack: bool) -> PackedGroups | None:
    """The chunk laid out one sequence per group, when asked for and the model and chunk allow it."""
    groups = chunk.prompt.group_prompts() if pack else None
    if groups is None or not packable(model):
        return None
    prompts, size = groups
    return pack_groups(model, prompts, chunk.features, chunk.completion_ids, chunk.mask, size)


def score(
    model: Any,
    reference: Callable[[], AbstractContextManager[Any]] | None,
    chunks: Sequence[SampledChunk],
    capture: AttentionCapture | None,
    rewards: RewardConfig,
    temperature: float,
    image_token_id: int,
    keep_graph: bool = False,
    pack_groups: bool = True,
) -> list[ScoredChunk]:
    """The scoring forward(s): old log-probs, entropies, attention on the region, reference log-probs.

    With `pack_groups` each chunk whose rows are whole (or equal) groups is scored one sequence
    per prompt (`sayo.packing`); the layout is kept on the record for the update.

    With `keep_graph` (μ = 1, one chunk) the policy forward runs in training mode and the records'
    `graph` keeps its log-probs with their autograd graph for the update.
    """
    model.train(keep_graph)
    out = []
    for chunk in chunks:
        packed = layout(model, chunk, pack_groups)
        inputs, packed_inputs = forward_inputs(chunk, packed, image_features(model, chunk, grad=keep_graph))
        scores = score_rollouts(
            model,
            inputs,
            chunk.completion_ids,
            chunk.mask,
            image_token_id=image_token_id,
            capture=capture,
            region_mask=chunk.prompt.region_mask,
            temperature=temperature,
            keep_graph=keep_graph,
            packed=packed_inputs,
            query=rewards.attention.query,
        )
        ref_logps = None
        if reference is not None:
            ref_logps = _reference_logps(model, reference, chunk, packed, image_token_id, temperature)
        sensitivity = None
        if rewards.attention.select != "entropy":
            sensitivity = vision_sensitivity(model, chunk, packed, temperature)
        if scores.region is None:
            attention = None
            selected = select_tokens(scores.entropy, chunk.mask, rewards.attention, sensitivity)
        else:
            selected, attention = attention_on_region(
                scores.entropy, chunk.mask, scores.region, rewards.attention, sensitivity
            )
        out.append(
            ScoredChunk(
                sampled=chunk,
                packed=packed,
                old_logps=scores.logps.detach(),
                ref_logps=ref_logps,
                entropy=scores.entropy,
                selected=selected,
                attention=attention,
                graph=scores.logps if keep_graph else None,
            )
        )
    return out


def _reference_logps(
    model: Any,
    reference: Callable[[], AbstractContextManager[Any]],
    chunk: SampledChunk,
    packed: PackedGroups | None,
    image_token_id: int,
    temperature: float,
) -> Tensor:
    with reference() as ref_model:
        # LoRA on the language model only: the same tower, so the same features
        shares_tower = ref_model is model and not vision_trains(model)
        if shares_tower:
            features = chunk.features
        else:
            with torch.no_grad():
                features = chunk.prompt.images.encode(ref_model)
        inputs, packed_inputs = forward_inputs(chunk, packed, features)
        return score_rollouts(
            ref_model,
            inputs,
            chunk.completion_ids,
            chunk.mask,
            image_token_id=image_token_id,
            temperature=temperature,
            packed=packed_inputs,
        ).logps


# ---------------------------------------------------------------- 4. reward


def compute_rewards(chunks: Sequence[ScoredChunk], rewards: RewardConfig) -> Rewards:
    """Weighted total reward and its components, over all rollouts in row order."""
    samples = [s for c in chunks for s in c.sampled.prompt.samples]
    texts = [t for c in chunks for t in c.sampled.texts]
    lengths = torch.cat([c.sampled.mask.sum(dim=1).cpu() for c in chunks])  # [B] tokens, EOS included
    region = [
        c.attention.reward.float().cpu() if c.attention is not None else torch.zeros(c.rows) for c in chunks
    ]
    components = {
        "accuracy": accuracy_reward(
            texts,
            [s.answer for s in samples],
            [s.answer_type.value for s in samples],
            [s.choices for s in samples],
            tolerance=rewards.numeric_tolerance,
        ),
        "format": format_rewards(rewards.format.form, texts, lengths),
        "region_attention": torch.cat(region),
    }
    total, parts = combine_rewards(components, rewards.weights)
    return Rewards(total, parts)


# ---------------------------------------------------------------- 5. update


def _logits(
    model: Any,
    chunk: SampledChunk,
    packed: PackedGroups | None,
    features: tuple[Tensor, ...],
    temperature: float,
) -> Tensor:
    """[b, T, V] logits predicting the chunk's completion tokens, given the images' `features`."""
    inputs, packed_inputs = forward_inputs(chunk, packed, features)
    if packed_inputs is not None:
        return packed_completion_logits(model, packed_inputs, temperature)
    return completion_logits(model, inputs, chunk.completion_ids, chunk.mask, temperature)


@torch.no_grad()
def vision_sensitivity(
    model: Any, chunk: SampledChunk, packed: PackedGroups | None, temperature: float
) -> Tensor:
    """[b, T] KL(p(·|image) ‖ p(·|blank image)) of each completion token's distribution.

    Two extra no-grad forwards (the real and the blanked images), only for the selections that
    rank tokens by how much they depend on the image (`rewards.attention.select`).
    """
    blank = chunk.prompt.images.blanked().encode(model)
    clean = _logits(model, chunk, packed, chunk.features, temperature)  # [b, T, V]
    return token_kl(clean, _logits(model, chunk, packed, blank, temperature))  # [b, T]


def _policy_logps(model: Any, chunk: ScoredChunk, temperature: float) -> Tensor:
    """[b, T] log-probs of the chunk's completions under the current policy, with grad."""
    sampled = chunk.sampled
    logits = _logits(model, sampled, chunk.packed, image_features(model, sampled, grad=True), temperature)
    return token_logprobs(logits, sampled.completion_ids)  # [b, T]


def update(
    engine: Any, chunks: Sequence[ScoredChunk], advantages: Tensor, cfg: GRPOConfig
) -> dict[str, float]:
    """μ optimizer steps over the batch; returns the last pass's loss statistics.

    Micro-batch losses are weighted so the accumulated gradient equals the full-batch loss of every
    `loss_type` (`dapo` divides by the valid tokens of every rank).
    """
    total_rows = sum(c.rows for c in chunks)
    total_tokens = float(sum(int(c.sampled.mask.sum()) for c in chunks))
    if cfg.loss_type == "dapo":  # all ranks' tokens; × world undoes DeepSpeed's gradient average
        total_tokens = distributed.sum_over_ranks(total_tokens) / distributed.world_size()
    stats: dict[str, float] = {}
    for iteration in range(cfg.mu):
        engine.model.train()
        row, sums = 0, {"loss": 0.0}
        for chunk in chunks:
            mask = chunk.sampled.mask
            adv = advantages[row : row + chunk.rows].to(mask.device)  # [b]
            row += chunk.rows
            fused = iteration == 0 and chunk.graph is not None
            logps = chunk.graph if fused else _policy_logps(engine.model, chunk, cfg.temperature)
            assert logps is not None
            loss, parts = policy_loss(
                logps,
                chunk.old_logps,
                adv,
                mask,
                chunk.ref_logps,
                beta=cfg.beta,
                epsilon_low=cfg.epsilon_low,
                epsilon_high=cfg.epsilon_high,
                loss_type=cfg.loss_type,
                max_completion_length=cfg.max_new_tokens,
            )
            share = (
                int(mask.sum()) / max(total_tokens, 1)
                if cfg.loss_type in ("bnpo", "dapo")
                else (chunk.rows / total_rows)
            )
            engine.backward(loss * share)
            sums["loss"] += float(loss.detach()) * share
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value) * chunk.rows / total_rows
        sums["grad_norm"] = float(engine.step())
        stats = sums
    return stats


# ---------------------------------------------------------------- observability


def group_spread(values: Tensor, group_size: int) -> tuple[float, float]:
    """(mean within-group std, std of the group means) of [B] per-rollout values.

    A reward term drives GRPO only through its within-group spread: a term that differs between
    prompts but not between one prompt's rollouts is invisible to group-normalised advantages.
    """
    groups = values.float().view(-1, group_size)  # [P, G]
    within = float(groups.std(dim=1).mean()) if group_size > 1 else 0.0
    between = float(groups.mean(dim=1).std()) if groups.shape[0] > 1 else 0.0
    return within, between


def step_metrics(
    chunks: Sequence[ScoredChunk], rewards: Rewards, advantages: Tensor, group_size: int
) -> dict[str, float]:
    """Per-step observability: every reward part and its spread, entropy, lengths, truncation, attention."""
    masks = [c.sampled.mask for c in chunks]
    lengths = torch.cat([m.sum(1) for m in masks]).float()  # [B]
    truncated = torch.cat([c.sampled.truncated for c in chunks]).float()  # [B]
    entropy = torch.cat(
        [(c.entropy * m).sum(1) / m.sum(1).clamp(min=1) for c, m in zip(chunks, masks, strict=True)]
    )
    total = rewards.total
    groups = total.view(-1, group_size)  # [P, G]
    metrics = {f"reward/{k}": float(v.float().mean()) for k, v in rewards.components.items()}
    for name, value in {**rewards.components, "total": total}.items():
        within, between = group_spread(value, group_size)
        metrics[f"reward_spread/{name}_within"] = within
        metrics[f"reward_spread/{name}_between"] = between
    measured = [c.attention for c in chunks if c.attention is not None]
    if measured:
        metrics["attention/share"] = float(torch.cat([m.share for m in measured]).float().mean())
        metrics["attention/lift"] = float(torch.cat([m.lift for m in measured]).float().mean())
    metrics.update(
        {
            "reward/total_mean": float(total.mean()),
            "reward/total_std": float(total.std()),
            "advantage_std": float(advantages.std()),
            "entropy_mean": float(entropy.mean()),
            "response_length_mean": float(lengths.mean()),
            "truncation_rate": float(truncated.mean()),
            "groups_zero_std": float((groups.std(dim=1) == 0).sum()),
        }
    )
    return metrics
