"""Region-attention reward r_attn: how much of a token's visual attention lands on the region.

Why: SAYO rewards the model for looking at the task-relevant image region (method.md, "The
attention reward") [paper]. For each response token t the region share is
s_t = Σ_{k∈R} A_t(k) / Σ_{k∈I} A_t(k) ∈ [0, 1], and the rollout's reward is the mean share over
the selected high-entropy tokens S [ours, within the paper's description].

The attention A is captured elsewhere (already averaged over heads and the chosen layers, keys
restricted to image tokens); these functions only do the arithmetic, so they are pure and cheap.
No gradient flows through this reward: it is a scalar per rollout, as in GRPO (method.md).

Choices [ours]:
- a token with no attention mass on image keys (denominator 0) has share 0, and a rollout with no
  selected token gets reward 0;
- area normalisation (option): divide by the region's area share |R|/|I| so large boxes are not
  free reward, clip to [0, max_normalized], then divide by max_normalized so the reward stays in
  [0, 1] like the accuracy and format rewards (uniform attention then scores 1/max_normalized);
  a rollout whose region is empty gets 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sayo.logprobs import upcast


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
    if attention.dim() != 3 or region_mask.shape != (attention.shape[0], attention.shape[2]):
        raise ValueError(
            f"attention must be [B, T, K] and region_mask [B, K]; got {tuple(attention.shape)} "
            f"and {tuple(region_mask.shape)}"
        )
    if image_mask is not None and image_mask.shape != region_mask.shape:
        raise ValueError(
            f"image_mask shape {tuple(image_mask.shape)} must equal region_mask's {tuple(region_mask.shape)}"
        )
    image, region = _image_and_region(region_mask, image_mask)  # [B, K], [B, K]
    attn = upcast(attention)  # [B, T, K]
    numerator = (attn * region.unsqueeze(1)).sum(dim=-1)  # [B, T]
    denominator = (attn * image.unsqueeze(1)).sum(dim=-1)  # [B, T]
    has_mass = denominator > 0  # [B, T]
    share = numerator / torch.where(has_mass, denominator, torch.ones_like(denominator))  # [B, T]
    return torch.where(has_mass, share, torch.zeros_like(share))  # [B, T]


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
    fraction = region_fraction.float()  # [B]
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
