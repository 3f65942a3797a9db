"""Rollouts: sampled (or given) completions as right-padded token tensors with a validity mask.

Generation uses the model's own `generate` with its KV cache; the completion keeps its EOS token
(the policy must learn to stop) and everything after the first EOS is padding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def completion_mask(completion_ids: Tensor, eos_token_id: int | Sequence[int]) -> Tensor:
    """[B, T] True up to and including each row's first EOS (all True if it never stops)."""
    eos_ids = torch.as_tensor(eos_token_id, device=completion_ids.device).reshape(-1)
    is_eos = torch.isin(completion_ids, eos_ids)  # [B, T]
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # [B, T] strictly after the first EOS
    return ~after_eos


@torch.no_grad()
def generate_completions(
    model: Any,
    prompt_inputs: Mapping[str, Tensor],
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
) -> tuple[Tensor, Tensor]:
    """Sample one completion per prompt row. Returns `(completion_ids, completion_mask)`, [B, T]."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    sampling: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        sampling.update(temperature=temperature, top_p=top_p, top_k=0)
    out = model.generate(
        **prompt_inputs,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        use_cache=True,
        **sampling,
    )
    completion_ids = out[:, prompt_inputs["input_ids"].shape[1] :]  # [B, T]
    mask = completion_mask(completion_ids, eos_token_id)  # [B, T]
    return completion_ids.masked_fill(~mask, pad_token_id), mask


def encode_completions(
    tokenizer: Any, texts: Sequence[str], eos_token: str = "<|im_end|>"
) -> tuple[Tensor, Tensor]:
    """Given completion texts (e.g. references) as right-padded ids with EOS appended, and their mask."""
    rows = [tokenizer(t + eos_token, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    return ids, mask


def decode_completions(tokenizer: Any, completion_ids: Tensor, mask: Tensor) -> list[str]:
    """Completion texts without padding and special tokens (template tags are kept)."""
    return [
        tokenizer.decode(ids[m].tolist(), skip_special_tokens=True)
        for ids, m in zip(completion_ids, mask, strict=True)
    ]
