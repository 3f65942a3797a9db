"""Which response tokens the attention reward looks at: the top ρ by a per-token score.

Why: SAYO scores attention only on the response tokens where the policy is most uncertain
(docs/method.md, "Which tokens count": H_t = −Σ_v p_t(v) log p_t(v), S = top ρ·T tokens)
[paper]. Rewarding every token adds noise (finding 3) [paper], so the selection is a first-class
function. Two other scores are options [ours, after VPPO/VEPO]: the token's *vision sensitivity*
(how much its next-token distribution changes when the image is blanked, KL(p(·|I) ‖ p(·|I′))),
and entropy × vision sensitivity (`rewards.attention.select`).

Selection details [ours]: k = ceil(ρ · n_valid) per sequence (at least one token when there is a
valid token), ties broken by position (earlier first), NaN entropies ranked below every number.

The authors' count [code] (`rewards.attention.count: batch_width`): one k for the whole batch,
k = max(1, ⌊ρ·(T − 1)⌋) over the batch's padded width T, every column but the last a candidate in
every row — so positions after a row's EOS can be picked (docs/method.md lists the difference).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Guard against ρ·n landing a hair above an integer in floating point (0.7 · 10 = 7.000000000000001).
_CEIL_SLACK = 1e-9


SELECTIONS = ("entropy", "vision", "entropy_x_vision")
COUNTS = ("per_row", "batch_width")


def selection_scores(select: str, entropy: Tensor, sensitivity: Tensor | None = None) -> Tensor:
    """[B, T] the per-token score `select` ranks tokens by (`rewards.attention.select`)."""
    if select == "entropy":
        return entropy
    if select not in SELECTIONS:
        raise ValueError(f"select={select!r}: expected one of {SELECTIONS}")
    if sensitivity is None or sensitivity.shape != entropy.shape:
        raise ValueError(f"select={select!r} needs the tokens' vision sensitivity [B, T] (see sayo.scoring)")
    return sensitivity if select == "vision" else entropy.clamp(min=0) * sensitivity.clamp(min=0)


def _candidates(mask: Tensor, ratio: float, exclude_last: bool, count: str) -> tuple[Tensor, Tensor]:
    """([B, T] tokens that may be selected, [B] how many of them to select) under `count`."""
    positions = torch.arange(mask.shape[1], device=mask.device)  # [T]
    if count == "batch_width":  # [code]: every column of the padded batch, the last one dropped
        candidates = torch.ones_like(mask)  # [B, T]
        if exclude_last and mask.shape[1]:
            candidates[:, -1] = False
        width = mask.shape[1] - int(exclude_last and mask.shape[1] > 0)
        batch_k = min(max(1, int(width * ratio)), width)  # int(): the authors' floor, in double precision
        return candidates, torch.full((mask.shape[0],), batch_k, dtype=torch.long, device=mask.device)
    if count != "per_row":
        raise ValueError(f"count={count!r}: expected one of {COUNTS}")
    if exclude_last:
        last = torch.where(mask, positions, -1).amax(dim=1, keepdim=True)  # [B, 1] last valid position
        mask = mask & (positions[None, :] != last)  # [B, T]
    n_valid = mask.sum(dim=1)  # [B]
    k = torch.ceil(n_valid.double() * ratio - _CEIL_SLACK).long()  # [B]
    return mask, torch.minimum(k.clamp(min=1), n_valid)  # [B, T], [B]


def select_high_entropy_tokens(
    entropy: Tensor, mask: Tensor, ratio: float, exclude_last: bool = False, count: str = "per_row"
) -> Tensor:
    """Per sequence, mark the top-k candidate tokens by entropy.

    Args:
        entropy: [B, T] token entropies.
        mask: [B, T] bool, True for valid response tokens (up to and including EOS).
        ratio: fraction ρ in (0, 1]; 1.0 selects every candidate (the "full-token" ablation).
        exclude_last: drop each sequence's last valid token (usually its EOS) before selecting,
            as the authors' code does [code]; with `batch_width`, the batch's last column.
        count: `per_row` [ours]: the valid tokens are the candidates, k = ⌈ρ·n_valid⌉ per row;
            `batch_width` [code]: every column of the padded batch is a candidate (positions after
            EOS included) and k = max(1, ⌊ρ·(T − exclude_last)⌋) is one number for the batch.

    Returns:
        [B, T] bool selection; at least one token per sequence with a candidate, none otherwise.
        Equal entropies are broken by position (earlier first), so the result is deterministic.

    Raises:
        ValueError: ``ratio`` outside (0, 1] (NaN included), an unknown ``count`` or mismatched shapes.
    """
    if not 0.0 < ratio <= 1.0:  # also rejects NaN
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if entropy.dim() != 2 or entropy.shape != mask.shape:
        raise ValueError(
            f"entropy and mask must both be [B, T], got {tuple(entropy.shape)} and {tuple(mask.shape)}"
        )
    mask, k = _candidates(mask.bool(), ratio, exclude_last, count)  # [B, T], [B]
    # NaN would sort first in a descending sort; rank it below every real entropy instead.
    scores = torch.nan_to_num(entropy.float(), nan=-math.inf)  # [B, T]
    # Two stable sorts give a lexicographic order: valid first, then entropy descending, then position.
    by_entropy = torch.sort(scores, dim=1, descending=True, stable=True).indices  # [B, T]
    valid_sorted = mask.gather(1, by_entropy)  # [B, T]
    by_valid = torch.sort(valid_sorted.to(torch.int8), dim=1, descending=True, stable=True).indices  # [B, T]
    order = by_entropy.gather(1, by_valid)  # [B, T] positions, best first
    positions = torch.arange(mask.shape[1], device=mask.device)  # [T]
    in_top = positions.unsqueeze(0) < k.unsqueeze(1)  # [B, T] in sorted order
    selected = torch.zeros_like(mask).scatter(1, order, in_top)  # [B, T] back in position order
    return selected & mask  # [B, T]
