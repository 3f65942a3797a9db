"""Weighted total reward r = w_acc·r_acc + w_fmt·r_fmt + w_attn·r_attn, and the ablation presets.

Why: SAYO's reward is a weighted sum of accuracy, format and region attention, and its ablations
(accuracy-only, attention-only, full-token) differ only in the weights (`rewards.weights`) or the
token ratio ρ (`rewards.attention.ratio`) (docs/method.md, "Total reward and optimisation") [paper].
The weights are recipe values [ours]: the paper names the terms, not their weights.

Like EasyR1's reward functions, the total comes back together with its parts, so every component
is logged every step, even those whose weight is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

REWARD_NAMES = ("accuracy", "format", "region_attention")


def _check_weights(components: Mapping[str, Tensor], weights: Mapping[str, float]) -> None:
    unknown = sorted(set(weights) - set(components))
    if unknown:
        raise ValueError(f"weights name unknown reward components {unknown}; known: {sorted(components)}")
    for name, weight in weights.items():
        if not (0.0 <= weight < math.inf):  # also rejects NaN
            raise ValueError(f"weight for {name!r} must be a finite number >= 0, got {weight!r}")


def combine_rewards(
    components: Mapping[str, Tensor], weights: Mapping[str, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of per-rollout reward components.

    Args:
        components: name → [B] reward tensor.
        weights: name → non-negative weight; every name must be a component. A component with
            no weight counts with weight 0 (it is still returned, for logging).

    Returns:
        ``(total, parts)``: the [B] float32 weighted total and a dict of every component.

    Raises:
        ValueError: no components, mismatched shapes, unknown names, negative or NaN weights.
    """
    if not components:
        raise ValueError("combine_rewards needs at least one reward component")
    _check_weights(components, weights)
    shapes = {name: tuple(value.shape) for name, value in components.items()}
    first = next(iter(components.values()))
    if len(set(shapes.values())) != 1 or first.dim() != 1:
        raise ValueError(f"reward components must all be [B] tensors of one length, got {shapes}")
    total = torch.zeros(first.shape, dtype=torch.float32, device=first.device)  # [B]
    for name, value in components.items():
        total = total + weights.get(name, 0.0) * value.float()  # [B]
    return total, dict(components)
