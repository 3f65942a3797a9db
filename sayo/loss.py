"""GRPO maths: group-normalised advantages and the clipped policy loss with a k3 KL penalty.

Why: SAYO optimises its reward with GRPO — G rollouts per prompt, advantages normalised within
each group, a clipped per-token importance-ratio surrogate and a KL penalty to a reference policy
(docs/method.md, "Total reward and optimisation"; finding 5) [paper]. These are pure functions with no
trainer state, so each can be checked against hand-computed values (docs/architecture.md, "Training").

Where this departs from the textbook / the choices left open [ours]:
- asymmetric clipping (ε_low, ε_high) as in DAPO; both default to ε = 0.2;
- KL is the k3 estimator exp(ref − logp) − (ref − logp) − 1, added per token as β·KL;
- ``grpo`` aggregation divides each sequence by max(n_tokens, 1) and averages over all B
  sequences, so a sequence with no valid token adds 0 but still counts in the mean;
- ``bnpo`` and ``dapo`` are the same here (sum over valid tokens / number of valid tokens); the
  trainer tells them apart across processes: ``dapo`` divides by the valid tokens of all ranks
  (`sayo.train.grpo.update`), ``bnpo`` by the rank's own;
- a group of one rollout has undefined std; its advantage is defined as 0 (nothing to compare);
- options against amplified noise: a floor under the std (`std_floor`), and normalising each reward
  component before weighting them (`combined_advantages`).
- masked positions are zeroed *before* exp, so garbage log-probs there give exact-zero gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch
from torch import Tensor

from sayo.logprobs import upcast

AdvantageScale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dapo", "dr_grpo"]
ADVANTAGE_SCALES: tuple[str, ...] = get_args(AdvantageScale)
LOSS_TYPES: tuple[str, ...] = get_args(LossType)
STD_EPS = 1e-4


def group_advantages(
    rewards: Tensor, group_size: int, scale: str = "group", std_floor: float = 0.0
) -> Tensor:
    """Rewards minus their group's mean, optionally divided by a std.

    Args:
        rewards: [B] rewards laid out as consecutive groups of ``group_size`` rollouts of one prompt.
        group_size: rollouts per prompt, G >= 1 dividing B.
        scale: ``group`` divides by each group's unbiased std + 1e-4, ``batch`` by the whole batch's
            unbiased std + 1e-4, ``none`` only centres.
        std_floor: [ours] the std is taken as at least this, so differences far below it (noise in a
            group whose other rewards tie) are not blown up to unit-size advantages; 0 = off.

    Returns:
        [B] float32 advantages; all 0 when ``group_size`` is 1 (every rollout is its own baseline).
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; expected one of {ADVANTAGE_SCALES}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [B], got shape {tuple(rewards.shape)}")
    batch = rewards.shape[0]
    if group_size < 1 or batch % group_size != 0:
        raise ValueError(f"group_size={group_size} must be >= 1 and divide the batch size B={batch}")
    grouped = rewards.float().view(-1, group_size)  # [B/G, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B/G, G]
    return (centred / _denominator(rewards, group_size, scale, std_floor)).reshape(-1)  # [B]


def _denominator(rewards: Tensor, group_size: int, scale: str, std_floor: float) -> Tensor:
    """What `group_advantages` divides the centred rewards by: [B/G, 1], [] or 1 (no scaling)."""
    if group_size == 1 or scale == "none":
        return torch.ones((), device=rewards.device)  # G == 1: the centred rewards are exactly 0
    if std_floor < 0:
        raise ValueError(f"std_floor must be >= 0, got {std_floor!r}")
    if scale == "group":
        std = rewards.float().view(-1, group_size).std(dim=1, keepdim=True, correction=1)  # [B/G, 1]
    else:
        std = rewards.float().std(correction=1)  # []
    return std.clamp(min=std_floor) + STD_EPS


def advantage_parts(
    components: Mapping[str, Tensor],
    weights: Mapping[str, float],
    group_size: int,
    scale: str = "group",
    std_floor: float = 0.0,
    per_component: bool = False,
) -> dict[str, Tensor]:
    """Each weighted reward component's additive part of the advantages, name → [B].

    The parts sum to the advantages the trainer uses: `combined_advantages` with `per_component`
    (each part w_i·A(r_i)), else `group_advantages` of Σ w_i r_i (each part w_i·(r_i − its group
    mean) over the total's denominator). Components without a weight, or weight 0, have no part.
    Their spreads show which term drives the update, e.g. whether near-constant attention noise is
    blown up to unit-size advantages (`sayo diagnose`).
    """
    weighted = {name: float(weights[name]) for name in components if weights.get(name)}
    if per_component:
        return {
            name: w * group_advantages(components[name], group_size, scale, std_floor)
            for name, w in weighted.items()
        }
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; expected one of {ADVANTAGE_SCALES}")
    centred = {
        name: w * group_advantages(components[name], group_size, "none") for name, w in weighted.items()
    }
    if not centred:
        return {}
    total = torch.stack([w * components[name].float() for name, w in weighted.items()]).sum(0)  # [B]
    denominator = _denominator(total, group_size, scale, std_floor)
    return {name: (part.view(-1, group_size) / denominator).reshape(-1) for name, part in centred.items()}


def flat_group_metrics(
    flat_rewards: Tensor | None, parts: Mapping[str, Tensor], group_size: int, flat_term: str = "accuracy"
) -> dict[str, float]:
    """Which term moves the policy, overall and where `flat_term` cannot (its groups all tie).

    A group whose rollouts are all right (or all wrong) gives accuracy no advantage; whatever the
    update does with it comes from the other terms. That is how an attention reward could add to
    accuracy: by ranking the rollouts of the groups accuracy cannot rank (docs/method.md, "Accuracy
    over GRPO steps"). `flat_rewards` are `flat_term`'s rewards [B] (None: the recipe has no such
    term), `parts` each weighted term's additive part of the advantages (`advantage_parts`, the
    trainer's own scheme). Returns `groups/<flat_term>_flat`, the share of groups whose `flat_term`
    has no spread; `advantage_share/<term>`, each term's share of Σ|advantage part|; and
    `advantage_share_flat/<term>`, the same within the flat groups (absent when there are none, or
    when they get no advantage at all).
    """
    if flat_rewards is None or group_size < 2:
        return {}
    flat = flat_rewards.float().view(-1, group_size).std(dim=1) == 0  # [P]
    out = {f"groups/{flat_term}_flat": float(flat.float().mean())}
    if not parts:
        return out
    size = {name: part.abs().view(-1, group_size) for name, part in parts.items()}  # [P, G] each
    for key, groups in (("advantage_share", torch.ones_like(flat)), ("advantage_share_flat", flat)):
        sums = {name: float(value[groups].sum()) for name, value in size.items()}
        total = sum(sums.values())
        if total > 0:
            out.update({f"{key}/{name}": value / total for name, value in sums.items()})
    return out


def combined_advantages(
    components: Mapping[str, Tensor],
    weights: Mapping[str, float],
    group_size: int,
    scale: str = "group",
    std_floor: float = 0.0,
) -> Tensor:
    """Σ_i w_i · A(r_i): each reward component normalised on its own, then weighted [ours].

    With one std for the weighted total (`group_advantages` of Σ w_i r_i), a component that barely
    varies inside a group is divided by the same std as one that varies a lot; normalising each
    component first gives every weighted term a comparable scale, and ``std_floor`` keeps a
    component that is constant up to noise from being amplified.

    Args:
        components: name → [B] rewards (grouped as in `group_advantages`).
        weights: name → weight; components without a weight, or weight 0, add nothing.

    Returns:
        [B] float32 advantages.
    """
    if not components:
        raise ValueError("combined_advantages needs at least one reward component")
    first = next(iter(components.values()))
    total = torch.zeros(first.shape[0], dtype=torch.float32, device=first.device)  # [B]
    for part in advantage_parts(
        components, weights, group_size, scale, std_floor, per_component=True
    ).values():
        total = total + part  # [B]
    return total


def _check_loss_args(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor, ref_logps: Tensor | None, beta: float
) -> None:
    if logps.dim() != 2:
        raise ValueError(f"logps must be [B, T], got shape {tuple(logps.shape)}")
    for name, tensor in (("old_logps", old_logps), ("mask", mask), ("ref_logps", ref_logps)):
        if tensor is not None and tensor.shape != logps.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} must equal logps' {tuple(logps.shape)}")
    if advantages.shape != logps.shape[:1]:
        raise ValueError(f"advantages must be [B]={tuple(logps.shape[:1])}, got {tuple(advantages.shape)}")
    if not beta >= 0.0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if beta > 0.0 and ref_logps is None:
        raise ValueError(f"beta={beta} > 0 needs ref_logps (reference-policy log-probabilities)")


def _aggregate(per_token: Tensor, valid: Tensor, loss_type: str, max_completion_length: int | None) -> Tensor:
    """Reduce [B, T] masked per-token losses to a scalar according to ``loss_type``."""
    masked = torch.where(valid, per_token, torch.zeros_like(per_token))  # [B, T]
    if loss_type == "grpo":
        n_tokens = valid.sum(dim=1).clamp(min=1)  # [B]
        return (masked.sum(dim=1) / n_tokens).mean()  # []
    if loss_type in ("bnpo", "dapo"):
        return masked.sum() / valid.sum().clamp(min=1)  # []
    length = per_token.shape[1] if max_completion_length is None else max_completion_length
    if length < 1:
        raise ValueError(f"max_completion_length must be >= 1, got {length}")
    return masked.sum() / (per_token.shape[0] * length)  # []


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, values, torch.zeros_like(values)).sum() / valid.sum().clamp(min=1)  # []


@torch.no_grad()
def _loss_stats(
    ratio: Tensor, adv: Tensor, kl: Tensor, valid: Tensor, epsilon_low: float, epsilon_high: float
) -> dict[str, Tensor]:
    """Detached diagnostics over valid tokens: clip fractions, mean k3 KL, ratio mean and max."""
    low = valid & (adv < 0) & (ratio < 1.0 - epsilon_low)  # [B, T]
    high = valid & (adv > 0) & (ratio > 1.0 + epsilon_high)  # [B, T]
    # ratio >= 0, so 0 at masked positions never wins the max
    ratio_valid = torch.where(valid, ratio, torch.zeros_like(ratio))  # [B, T]
    stats = {
        "clip_fraction_low": _masked_mean(low.float(), valid),
        "clip_fraction_high": _masked_mean(high.float(), valid),
        "clip_fraction": _masked_mean((low | high).float(), valid),
        "kl": _masked_mean(kl, valid),
        "ratio_mean": _masked_mean(ratio, valid),
        "ratio_max": ratio_valid.max() if ratio_valid.numel() else ratio_valid.sum(),
    }
    return {name: value.detach() for name, value in stats.items()}


def policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    ref_logps: Tensor | None = None,
    *,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate GRPO loss with an optional k3 KL penalty.

    Per token: −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A) + β·(exp(ref−logp) − (ref−logp) − 1),
    with r = exp(logp − old_logp).

    Args:
        logps: [B, T] log-probabilities of the sampled tokens under the current policy (with grad).
        old_logps: [B, T] the same under the policy that sampled them.
        advantages: [B] one advantage per rollout.
        mask: [B, T] bool, True for response tokens that count.
        ref_logps: [B, T] reference-policy log-probabilities (needed when ``beta`` > 0).
        beta: KL coefficient β >= 0.
        epsilon_low, epsilon_high: clip range [1−ε_low, 1+ε_high] of the ratio.
        loss_type: ``grpo`` | ``bnpo`` | ``dapo`` | ``dr_grpo`` (see the module docstring).
        max_completion_length: ``dr_grpo`` denominator length (default: T).

    Returns:
        ``(loss, stats)``: the scalar loss and detached scalars ``clip_fraction_low``,
        ``clip_fraction_high``, ``clip_fraction``, ``kl`` (0 without ``ref_logps``), ``ratio_mean``
        and ``ratio_max`` (over valid tokens).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
    if not (0.0 <= epsilon_low < 1.0 and epsilon_high >= 0.0):
        raise ValueError(
            f"need 0 <= epsilon_low < 1 and 0 <= epsilon_high, got {epsilon_low!r}, {epsilon_high!r}"
        )
    _check_loss_args(logps, old_logps, advantages, mask, ref_logps, beta)
    valid = mask.bool()  # [B, T]
    zeros = upcast(torch.zeros_like(logps))  # [B, T], float32 (float64 for float64 log-probs)
    log_ratio = torch.where(valid, upcast(logps) - upcast(old_logps), zeros)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    adv = upcast(advantages).unsqueeze(1)  # [B, 1]
    unclipped = ratio * adv  # [B, T]
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * adv  # [B, T]
    per_token = -torch.minimum(unclipped, clipped)  # [B, T]
    kl = zeros  # [B, T]
    if ref_logps is not None:
        delta = torch.where(valid, upcast(ref_logps) - upcast(logps), zeros)  # [B, T]
        kl = torch.exp(delta) - delta - 1.0  # [B, T]
    if beta > 0.0:
        per_token = per_token + beta * kl  # [B, T]
    loss = _aggregate(per_token, valid, loss_type, max_completion_length)  # []

    stats = _loss_stats(ratio, adv, kl, valid, epsilon_low, epsilon_high)
    return loss, stats
