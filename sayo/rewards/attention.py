"""Region-attention reward r_attn: how much of the answer tokens' visual attention lands on the region.

Why: SAYO rewards the model for looking at the task-relevant image region (docs/method.md, "The
attention reward") [paper]. Everything here is arithmetic on captured attention A_t(k) of
response token t on image key k (already reduced over heads and the chosen layers by
`sayo.attention_capture`), so the functions are pure and cheap; no gradient flows through the reward: it
is a scalar per rollout, as in GRPO.

Three forms (`rewards.attention.form`), two aggregations over the selected tokens
(`rewards.attention.aggregation`):
- `share` [ours, within the paper's description]: s_t = Σ_{k∈R} A_t(k) / Σ_{k∈I} A_t(k) ∈ [0, 1];
  uniform attention scores the region's area fraction |R|/|I|;
- `area_normalized` [ours]: the share divided by |R|/|I| so large boxes are not free reward,
  clipped to [0, max_normalized] and divided by max_normalized, so it stays in [0, 1];
- `tanh_log_ratio` [code]: the authors' r = tanh(log((ā_R + ε) / (ā_I + ε))), ā_R and ā_I the
  mean attention per region and per image key; uniform attention scores 0
  (`official_attention_reward`, with `ratio_of_means`: attention averaged over tokens first).

`measure_attention` gives the share, the area fraction, the lift over uniform (share − fraction)
and the reward together: the trainer's reward, the training probes and evaluation all report
these, so the numbers mean the same thing everywhere.

Choices [ours]: a token with no attention mass on image keys has share 0; a rollout with no
selected token gets reward 0; a rollout without a region gets reward and lift 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sayo.logprobs import upcast
from sayo.rewards.config import AttentionConfig
from sayo.rewards.selection import select_high_entropy_tokens, selection_scores


def _image_and_region(region_mask: Tensor, image_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Boolean image-token mask I (default: all keys) and region mask R ∩ I, both [B, K]."""
    image = torch.ones_like(region_mask, dtype=torch.bool) if image_mask is None else image_mask.bool()
    return image, region_mask.bool() & image


def region_area_fraction(region_mask: Tensor, image_mask: Tensor | None = None) -> Tensor:
    """Share |R ∩ I| / |I| of image tokens inside the region.

    Args:
        region_mask: [B, K] bool, True for image tokens inside the (union of) region(s).
        image_mask: [B, K] bool, True for real image tokens (default: all K).

    Returns:
        [B] float32; 0 where the image has no tokens.
    """
    image, region = _image_and_region(region_mask, image_mask)  # [B, K], [B, K]
    n_image = image.sum(dim=1).float()  # [B]
    return region.sum(dim=1).float() / n_image.clamp(min=1.0)  # [B]


def region_share(attention: Tensor, region_mask: Tensor, image_mask: Tensor | None = None) -> Tensor:
    """Share of each response token's image attention that falls on the region.

    Args:
        attention: [B, T, K] attention of response-token queries on image-token keys.
        region_mask: [B, K] bool region tokens R (intersected with ``image_mask``).
        image_mask: [B, K] bool image tokens I (default: all K), e.g. to ignore padding keys.

    Returns:
        [B, T] s_t = Σ_{k∈R} A / Σ_{k∈I} A, and 0 where the denominator is 0; float32 (float64
        for float64 attention).
    """
    if image_mask is not None and image_mask.shape != region_mask.shape:
        raise ValueError(
            f"image_mask shape {tuple(image_mask.shape)} must equal region_mask's {tuple(region_mask.shape)}"
        )
    masses = region_masses(attention, region_mask, image_mask)
    return _safe_ratio(masses.region, masses.image)  # [B, T]


def _normalize_by_area(reward: Tensor, region_fraction: Tensor | None, max_normalized: float) -> Tensor:
    """[ours] reward / (|R|/|I|), clipped to [0, max_normalized], rescaled to [0, 1]; 0 for empty regions."""
    if region_fraction is None:
        raise ValueError("normalize_by_area=True needs region_fraction ([B] tensor of |R|/|I|)")
    if not (0.0 < max_normalized < math.inf):
        raise ValueError(f"max_normalized must be a positive finite number, got {max_normalized!r}")
    if region_fraction.shape != reward.shape:
        raise ValueError(
            f"region_fraction must be [B]={tuple(reward.shape)}, got {tuple(region_fraction.shape)}"
        )
    fraction = region_fraction.to(reward.dtype)  # [B]
    has_region = fraction > 0  # [B]
    normalised = reward / torch.where(has_region, fraction, torch.ones_like(fraction))  # [B]
    normalised = torch.where(has_region, normalised, torch.zeros_like(normalised))  # [B]
    return normalised.clamp(0.0, max_normalized) / max_normalized  # [B]


def region_attention_reward(
    share: Tensor,
    selected: Tensor,
    *,
    region_fraction: Tensor | None = None,
    normalize_by_area: bool = False,
    max_normalized: float = 5.0,
) -> Tensor:
    """Mean region share over the selected tokens of each rollout.

    Args:
        share: [B, T] region shares from :func:`region_share`.
        selected: [B, T] bool tokens that count (e.g. the top-entropy tokens).
        region_fraction: [B] area share |R|/|I| (see :func:`region_area_fraction`); needed when
            ``normalize_by_area``.
        normalize_by_area: [ours] divide by ``region_fraction``, clip to [0, max_normalized], then
            divide by ``max_normalized`` so the reward stays in [0, 1].
        max_normalized: clip value of the area-normalised share (> 0).

    Returns:
        [B] float32 reward; 0 for a rollout with no selected token (or, normalised, an empty region).
    """
    if share.shape != selected.shape or share.dim() != 2:
        raise ValueError(
            f"share and selected must both be [B, T], got {tuple(share.shape)} and {tuple(selected.shape)}"
        )
    chosen = selected.bool()  # [B, T]
    n_selected = chosen.sum(dim=1)  # [B]
    total = torch.where(chosen, share.float(), torch.zeros_like(share, dtype=torch.float32)).sum(dim=1)  # [B]
    reward = total / n_selected.clamp(min=1).float()  # [B]; 0 where nothing is selected
    if not normalize_by_area:
        return reward  # [B]
    return _normalize_by_area(reward, region_fraction, max_normalized)  # [B]


# ---------------------------------------------------------------- reward forms (rewards.attention)

OFFICIAL_EPS = 1e-8  # ε of the authors' reward, tanh(log((ā_R + ε) / (ā_I + ε)))


@dataclass(frozen=True)
class RegionMasses:
    """Per-token attention mass on the region and on the whole image, and the key counts.

    region, image: [B, T] Σ_{k∈R} A_t(k) and Σ_{k∈I} A_t(k); n_region, n_image: [B] |R ∩ I| and |I|.
    Every reward form and the lift over uniform are functions of these four tensors.
    """

    region: Tensor
    image: Tensor
    n_region: Tensor
    n_image: Tensor

    @property
    def fraction(self) -> Tensor:
        """[B] the region's share of image tokens |R|/|I| (what uniform attention scores as share)."""
        return self.n_region / self.n_image.clamp(min=1.0)


def region_masses(attention: Tensor, region_mask: Tensor, image_mask: Tensor | None = None) -> RegionMasses:
    """Sum each token's attention over the region and over the image (see `RegionMasses`).

    Args:
        attention: [B, T, K] attention of response tokens on image-token keys.
        region_mask: [B, K] bool region keys R (intersected with ``image_mask``).
        image_mask: [B, K] bool image keys I (default: all K).
    """
    if attention.dim() != 3 or region_mask.shape != (attention.shape[0], attention.shape[2]):
        raise ValueError(
            f"attention must be [B, T, K] and region_mask [B, K]; got {tuple(attention.shape)} "
            f"and {tuple(region_mask.shape)}"
        )
    image, region = _image_and_region(region_mask, image_mask)  # [B, K], [B, K]
    attn = upcast(attention)  # [B, T, K], float32 (float64 for float64 attention)
    return RegionMasses(
        region=(attn * region.unsqueeze(1)).sum(dim=-1),  # [B, T]
        image=(attn * image.unsqueeze(1)).sum(dim=-1),  # [B, T]
        n_region=region.sum(dim=1).to(attn.dtype),  # [B]
        n_image=image.sum(dim=1).to(attn.dtype),  # [B]
    )


def _mean_over(values: Tensor, selected: Tensor) -> Tensor:
    """[B, T] values averaged over each row's selected tokens; 0 for a row with none."""
    chosen = selected.bool()  # [B, T]
    total = torch.where(chosen, values, torch.zeros_like(values)).sum(dim=1)  # [B]
    return total / chosen.sum(dim=1).clamp(min=1).to(values.dtype)  # [B]


def _safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, 0 where the denominator is 0."""
    ok = denominator > 0
    return torch.where(ok, numerator / torch.where(ok, denominator, torch.ones_like(denominator)), 0.0)


def _tanh_log_ratio(region_per_key: Tensor, image_per_key: Tensor) -> Tensor:
    return torch.tanh(torch.log((region_per_key + OFFICIAL_EPS) / (image_per_key + OFFICIAL_EPS)))


def region_share_of(masses: RegionMasses, selected: Tensor, aggregation: str = "mean_of_ratios") -> Tensor:
    """[B] share of visual attention on the region over the selected tokens.

    `mean_of_ratios`: mean over tokens of Σ_R A_t / Σ_I A_t; `ratio_of_means`: Σ_t Σ_R A_t / Σ_t Σ_I A_t.
    Uniform attention over the image scores the region's area fraction either way.
    """
    if aggregation == "mean_of_ratios":
        return _mean_over(_safe_ratio(masses.region, masses.image), selected)  # [B]
    if aggregation == "ratio_of_means":
        return _safe_ratio(_mean_over(masses.region, selected), _mean_over(masses.image, selected))  # [B]
    raise ValueError(f"aggregation={aggregation!r}: expected 'mean_of_ratios' or 'ratio_of_means'")


def attention_reward(
    masses: RegionMasses,
    selected: Tensor,
    *,
    form: str = "share",
    aggregation: str = "mean_of_ratios",
    max_normalized: float = 5.0,
) -> Tensor:
    """The region-attention reward of each rollout in one of three forms (docs/method.md).

    - ``share``: the share of visual attention on the region (uniform attention: the area fraction);
    - ``area_normalized``: share / area fraction, clipped to ``max_normalized`` and divided by it [ours];
    - ``tanh_log_ratio``: tanh(log((ā_R + ε) / (ā_I + ε))) with ā_R, ā_I the mean attention per
      region key and per image key — the authors' reward (uniform attention: 0). With
      ``ratio_of_means`` this is exactly `official_attention_reward`.

    Args:
        masses: per-token masses (`region_masses`).
        selected: [B, T] bool tokens that count (e.g. the top-entropy ones).
        aggregation: ``mean_of_ratios`` applies the form per token and averages over the selected
            tokens; ``ratio_of_means`` averages the attention first (the official reward's order).

    Returns:
        [B] reward; a rollout with no selected token gets 0 in every form, and one whose region is
        empty gets 0 in ``share``/``area_normalized`` (the caller decides for ``tanh_log_ratio``).
    """
    if selected.shape != masses.region.shape:
        raise ValueError(f"selected must be [B, T]={tuple(masses.region.shape)}, got {tuple(selected.shape)}")
    if form == "share":
        return region_share_of(masses, selected, aggregation)  # [B]
    if form == "area_normalized":
        share = region_share_of(masses, selected, aggregation)  # [B]
        return _normalize_by_area(share, masses.fraction.to(share.dtype), max_normalized)
    if form != "tanh_log_ratio":
        raise ValueError(f"form={form!r}: expected 'share', 'area_normalized' or 'tanh_log_ratio'")
    n_region, n_image = masses.n_region.clamp(min=1.0)[:, None], masses.n_image.clamp(min=1.0)[:, None]
    region_per_key, image_per_key = masses.region / n_region, masses.image / n_image  # [B, T] each
    if aggregation == "mean_of_ratios":
        per_token = _tanh_log_ratio(region_per_key, image_per_key)  # [B, T]
        return _mean_over(per_token, selected)  # [B]
    if aggregation == "ratio_of_means":
        return _tanh_log_ratio(_mean_over(region_per_key, selected), _mean_over(image_per_key, selected))
    raise ValueError(f"aggregation={aggregation!r}: expected 'mean_of_ratios' or 'ratio_of_means'")


def official_attention_reward(
    attention: Tensor, region_mask: Tensor, selected: Tensor, image_mask: Tensor | None = None
) -> Tensor:
    """The authors' attention reward: r = tanh(log((ā_R + ε) / (ā_I + ε))), ε = 1e-8.

    ā_R is the mean attention per region key and ā_I per image key, each averaged over the selected
    response tokens (heads are already reduced in `attention`): a ratio of means, so uniform
    attention scores 0 and attention only on the region tanh(log(|I|/|R|)).

    Args:
        attention: [B, T, K] attention of response tokens on image keys.
        region_mask: [B, K] bool region keys.
        selected: [B, T] bool tokens that count; a rollout with none gets tanh(log(ε/ε)) = 0.
        image_mask: [B, K] bool image keys, or None for all K keys.

    Returns:
        [B] rewards in (−1, 1), in the attention's float precision (float32 at least).
    """
    masses = region_masses(attention, region_mask, image_mask)
    return attention_reward(masses, selected, form="tanh_log_ratio", aggregation="ratio_of_means")


@dataclass(frozen=True)
class AttentionOnRegion:
    """Where a batch of responses looked, measured one way for the reward, probes and evaluation.

    All [B]: `share` of visual attention on the region over the selected tokens, the region's area
    `fraction` (uniform attention's share), `lift` = share − fraction (0 = no better than uniform)
    and the configured `reward`.
    """

    share: Tensor
    fraction: Tensor
    lift: Tensor
    reward: Tensor


def measure_attention(
    masses: RegionMasses, selected: Tensor, *, form: str, aggregation: str, max_normalized: float
) -> AttentionOnRegion:
    """Share, area fraction, lift over uniform and reward of each rollout (see `AttentionOnRegion`)."""
    share = region_share_of(masses, selected, aggregation)  # [B]
    fraction = masses.fraction.to(share.dtype)  # [B]
    reward = attention_reward(
        masses, selected, form=form, aggregation=aggregation, max_normalized=max_normalized
    )
    has_region = masses.n_region > 0  # [B]: without a region there is nothing to look at
    return AttentionOnRegion(
        share=share,
        fraction=fraction,
        lift=torch.where(has_region, share - fraction, 0.0),
        reward=torch.where(has_region, reward, 0.0),
    )


def select_tokens(
    entropy: Tensor, mask: Tensor, config: AttentionConfig, sensitivity: Tensor | None = None
) -> Tensor:
    """[B, T] the response tokens `config` counts: the top `ratio` by the `select` score."""
    scores = selection_scores(config.select, entropy, sensitivity)  # [B, T]
    return select_high_entropy_tokens(
        scores, mask, config.ratio, exclude_last=config.exclude_last, count=config.count
    )


def attention_on_region(
    entropy: Tensor,
    mask: Tensor,
    masses: RegionMasses,
    config: AttentionConfig,
    sensitivity: Tensor | None = None,
) -> tuple[Tensor, AttentionOnRegion]:
    """Select the tokens that count and measure their attention on the region, as `config` says.

    The one place `rewards.attention` is applied: the GRPO reward, the training probes and the
    `evaluate` stage call it, so their numbers mean the same thing.

    Args:
        entropy: [B, T] token entropies; mask: [B, T] valid response tokens.
        masses: the tokens' attention masses (`region_masses`).
        sensitivity: [B, T] the tokens' vision sensitivity, needed when `config.select` uses it.
    Returns:
        `(selected [B, T], measures)`.
    """
    selected = select_tokens(entropy, mask, config, sensitivity)
    measures = measure_attention(
        masses,
        selected,
        form=config.form,
        aggregation=config.aggregation,
        max_normalized=config.max_normalized,
    )
    return selected, measures
