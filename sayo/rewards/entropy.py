"""Token entropies, token log-probabilities and high-entropy token selection.

Why: SAYO scores attention only on the response tokens where the policy is most uncertain
(method.md, "The attention reward": H_t = −Σ_v p_t(v) log p_t(v), S = top ρ·T tokens) [paper].
Rewarding every token adds noise (finding 3) [paper], so the selection is a first-class function.

Both entropy and log-probabilities need a full log-softmax over the vocabulary, which for a real
vocabulary (~150k for Qwen2.5-VL) and a 1k-token response is several GiB in float32. They are
therefore computed in chunks over the time axis, in float32 whatever the logits' dtype [ours].

Selection details [ours]: k = ceil(ρ · n_valid) per sequence (at least one token when there is a
valid token), ties broken by position (earlier first), NaN entropies ranked below every number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Guard against ρ·n landing a hair above an integer in floating point (0.7 · 10 = 7.000000000000001).
_CEIL_SLACK = 1e-9


def _check_logits(logits: Tensor, chunk_size: int) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def token_entropy(logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """Entropy −Σ p log p of each position's next-token distribution, in float32.

    Args:
        logits: [B, T, V] unnormalised scores (any float dtype).
        chunk_size: positions per chunk; bounds the float32 working memory to B·chunk_size·V.

    Returns:
        [B, T] float32 entropies in nats. Differentiable, but meant for use under ``torch.no_grad``.
    """
    _check_logits(logits, chunk_size)
    chunks = []
    for start in range(0, logits.shape[1], chunk_size):
        logp = torch.log_softmax(logits[:, start : start + chunk_size].float(), dim=-1)  # [B, C, V]
        chunks.append(-(logp.exp() * logp).sum(dim=-1))  # [B, C]
    if not chunks:
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32)  # [B, 0]
    return torch.cat(chunks, dim=1)  # [B, T]


def token_logprobs(logits: Tensor, tokens: Tensor, chunk_size: int = 1024) -> Tensor:
    """Log-probability of each given token under its position's distribution, in float32.

    Computed as ``logit[token] − logsumexp(logits)`` chunk by chunk, which equals gathering the
    log-softmax but never materialises the [B, T, V] log-softmax. Supports autograd (policy loss).

    Args:
        logits: [B, T, V] scores at the positions that predict ``tokens``.
        tokens: [B, T] integer token ids in [0, V) (replace padding ids before calling).
        chunk_size: positions per chunk.

    Returns:
        [B, T] float32 log-probabilities.
    """
    _check_logits(logits, chunk_size)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"tokens shape {tuple(tokens.shape)} must equal logits' [B, T] {tuple(logits.shape[:2])}"
        )
    chunks = []
    for start in range(0, logits.shape[1], chunk_size):
        part = logits[:, start : start + chunk_size].float()  # [B, C, V]
        index = tokens[:, start : start + chunk_size].long().unsqueeze(-1)  # [B, C, 1]
        picked = part.gather(dim=-1, index=index).squeeze(-1)  # [B, C]
        chunks.append(picked - torch.logsumexp(part, dim=-1))  # [B, C]
    if not chunks:
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32)  # [B, 0]
    return torch.cat(chunks, dim=1)  # [B, T]


def select_high_entropy_tokens(entropy: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """Per sequence, mark the top ``ceil(ratio · n_valid)`` valid tokens by entropy.

    Args:
        entropy: [B, T] token entropies.
        mask: [B, T] bool, True for valid response tokens; invalid tokens are never selected.
        ratio: fraction ρ in (0, 1]; 1.0 selects every valid token (the "full-token" ablation).

    Returns:
        [B, T] bool selection; at least one token per sequence with a valid token, none otherwise.
        Equal entropies are broken by position (earlier first), so the result is deterministic.

    Raises:
        ValueError: ``ratio`` outside (0, 1] (NaN included) or mismatched shapes.
    """
    if not 0.0 < ratio <= 1.0:  # also rejects NaN
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if entropy.dim() != 2 or entropy.shape != mask.shape:
        raise ValueError(
            f"entropy and mask must both be [B, T], got {tuple(entropy.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.bool()  # [B, T]
    n_valid = mask.sum(dim=1)  # [B]
    k = torch.ceil(n_valid.double() * ratio - _CEIL_SLACK).long()  # [B]
    k = torch.minimum(k.clamp(min=1), n_valid)  # [B]
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
