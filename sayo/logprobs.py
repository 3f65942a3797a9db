"""Per-token log-probabilities and entropies of a policy's next-token distributions.

Both need a full log-softmax over the vocabulary, which for a real vocabulary (~150k for
Qwen2.5-VL) and a 1k-token response is several GiB in float32. They are therefore computed in
chunks over the time axis, in float32 for half-precision or float32 logits [ours] — and in float64
for float64 logits, so a float64 policy (the equivalence tests) is float64 end to end. Used by the
scoring forward (GRPO's old/reference log-probs and the entropies that choose the attention
reward's tokens) and by SFT's loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """`x` in at least float32: half precision is raised to float32, float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_logits(logits: Tensor, chunk_size: int) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def token_entropy(logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """Entropy −Σ p log p of each position's next-token distribution, in float32 (float64 logits: float64).

    Args:
        logits: [B, T, V] unnormalised scores (any float dtype).
        chunk_size: positions per chunk; bounds the float32 working memory to B·chunk_size·V.

    Returns:
        [B, T] entropies in nats, float32 (float64 for float64 logits). Differentiable, but meant for use under ``torch.no_grad``.
    """
    _check_logits(logits, chunk_size)
    chunks = []
    for start in range(0, logits.shape[1], chunk_size):
        logp = torch.log_softmax(upcast(logits[:, start : start + chunk_size]), dim=-1)  # [B, C, V]
        chunks.append(-(logp.exp() * logp).sum(dim=-1))  # [B, C]
    if not chunks:
        return upcast(logits.new_zeros(logits.shape[:2]))  # [B, 0]
    return torch.cat(chunks, dim=1)  # [B, T]


def token_logprobs(logits: Tensor, tokens: Tensor, chunk_size: int = 1024) -> Tensor:
    """Log-probability of each given token under its position's distribution, in float32 (float64 logits: float64).

    Computed as ``logit[token] − logsumexp(logits)`` chunk by chunk, which equals gathering the
    log-softmax but never materialises the [B, T, V] log-softmax. Supports autograd (policy loss).

    Args:
        logits: [B, T, V] scores at the positions that predict ``tokens``.
        tokens: [B, T] integer token ids in [0, V) (replace padding ids before calling).
        chunk_size: positions per chunk.

    Returns:
        [B, T] log-probabilities, float32 (float64 for float64 logits).
    """
    _check_logits(logits, chunk_size)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"tokens shape {tuple(tokens.shape)} must equal logits' [B, T] {tuple(logits.shape[:2])}"
        )
    chunks = []
    for start in range(0, logits.shape[1], chunk_size):
        part = upcast(logits[:, start : start + chunk_size])  # [B, C, V]
        index = tokens[:, start : start + chunk_size].long().unsqueeze(-1)  # [B, C, 1]
        picked = part.gather(dim=-1, index=index).squeeze(-1)  # [B, C]
        chunks.append(picked - torch.logsumexp(part, dim=-1))  # [B, C]
    if not chunks:
        return upcast(logits.new_zeros(logits.shape[:2]))  # [B, 0]
    return torch.cat(chunks, dim=1)  # [B, T]


def token_kl(logits: Tensor, other_logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """KL(p ‖ q) between the next-token distributions of two forwards, per position, in float32.

    Args:
        logits: [B, T, V] scores giving p (e.g. with the real image).
        other_logits: [B, T, V] scores giving q (e.g. with the image blanked).
        chunk_size: positions per chunk.

    Returns:
        [B, T] float32 KL divergences in nats (≥ 0).
    """
    _check_logits(logits, chunk_size)
    if other_logits.shape != logits.shape:
        raise ValueError(f"logits shapes differ: {tuple(logits.shape)} and {tuple(other_logits.shape)}")
    chunks = []
    for start in range(0, logits.shape[1], chunk_size):
        logp = torch.log_softmax(logits[:, start : start + chunk_size].float(), dim=-1)  # [B, C, V]
        logq = torch.log_softmax(other_logits[:, start : start + chunk_size].float(), dim=-1)  # [B, C, V]
        chunks.append((logp.exp() * (logp - logq)).sum(dim=-1).clamp(min=0.0))  # [B, C]
    if not chunks:
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32)  # [B, 0]
    return torch.cat(chunks, dim=1)  # [B, T]
