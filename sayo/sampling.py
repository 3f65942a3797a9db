"""Rollouts: sampled (or given) completions as right-padded token tensors with a validity mask.

`generate_completions` uses the model's own `generate` with its KV cache, one row per rollout.
`generate_groups` samples G completions per prompt from one prefill of that prompt: the prompt's
KV cache is computed once and repeated for its G rows (sampling as `generate` does: suppressed
tokens, temperature, top-p, multinomial — tested token-identical to `generate` on repeated rows
under the same seed). The completion keeps its EOS token (the policy must learn to stop) and
everything after the first EOS is padding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sayo.packing import rope_positions
from sayo.vision import encoder_inputs


def completion_mask(completion_ids: Tensor, eos_token_id: int | Sequence[int]) -> Tensor:
    """[B, T] True up to and including each row's first EOS (all True if it never stops)."""
    eos_ids = torch.as_tensor(eos_token_id, device=completion_ids.device).reshape(-1)
    is_eos = torch.isin(completion_ids, eos_ids)  # [B, T]
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # [B, T] strictly after the first EOS
    return ~after_eos


def suppressed_token_ids(tokenizer: Any, vocab_size: int, keep: Sequence[int] = ()) -> list[int]:
    """Ids a completion must never contain: special tokens (image/video placeholders, chat markers,
    padding) other than `keep` (the EOS), and embedding rows past the tokenizer's vocabulary.

    A sampled `<|image_pad|>` would make the next forward expect one more image feature than the
    image has, so these are removed from the sampling distribution, not filtered afterwards.
    """
    special = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    special |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    extra = range(len(tokenizer), vocab_size)
    return sorted((special - set(keep)) | set(extra))


def stop_and_suppress(tokenizer: Any, model: Any, eos_token: str = "<|im_end|>") -> dict[str, Any]:
    """`eos_token_id`, `pad_token_id` and `suppress_token_ids` for `generate_completions`."""
    eos = tokenizer.convert_tokens_to_ids(eos_token)
    vocab = model.get_output_embeddings().weight.shape[0]
    return {
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id,
        "suppress_token_ids": suppressed_token_ids(tokenizer, vocab, keep=[eos]),
    }


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
    suppress_token_ids: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample one completion per prompt row. Returns `(completion_ids, completion_mask)`, [B, T].

    `suppress_token_ids` (see `suppressed_token_ids`) can never be generated.
    """
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
        suppress_tokens=list(suppress_token_ids) if suppress_token_ids else None,
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


def _top_p(scores: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches `top_p` (as transformers' warper)."""
    ascending, order = torch.sort(scores, descending=False)
    remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False  # always keep the most likely token
    return scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))


@torch.no_grad()
def generate_groups(
    model: Any,
    prompts: Mapping[str, Tensor],
    features: Sequence[Tensor],
    group_size: int,
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    suppress_token_ids: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample `group_size` completions per prompt, prefilling each prompt once.

    Args:
        prompts: one row per prompt (left-padded): `input_ids`, `attention_mask`,
            `mm_token_type_ids`, `image_grid_thw`.
        features: each prompt's image features (`sayo.vision.SharedImages.encode`).
    Returns:
        `(completion_ids, completion_mask)`, [P·G, T], each prompt's G rows adjacent.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    ids, attention = prompts["input_ids"], prompts["attention_mask"]
    positions = rope_positions(model, prompts)  # [3, P, L]
    out = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **encoder_inputs(features),
    )
    cache = out.cache
    cache.batch_repeat_interleave(group_size)  # the prompt's keys/values, once per rollout
    logits = out.logits[:, -1].float().repeat_interleave(group_size, dim=0)  # [B, V]
    attention = attention.repeat_interleave(group_size, dim=0)  # [B, L]
    next_position = positions[:, :, -1:].repeat_interleave(group_size, dim=1) + 1  # [3, B, 1]
    eos = torch.as_tensor(eos_token_id, device=ids.device).reshape(-1)
    suppressed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=ids.device)
    if suppress_token_ids:
        suppressed[torch.as_tensor(list(suppress_token_ids), device=ids.device)] = True
    running = torch.ones(logits.shape[0], dtype=torch.bool, device=ids.device)
    tokens = []
    for step in range(max_new_tokens):
        scores = logits.masked_fill(suppressed, float("-inf")) / temperature
        if top_p < 1.0:
            scores = _top_p(scores, top_p)
        sampled = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)  # [B]
        sampled = torch.where(running, sampled, pad_token_id)
        tokens.append(sampled)
        running &= ~torch.isin(sampled, eos)
        if step == max_new_tokens - 1 or not running.any():
            break
        attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
        out = model(
            input_ids=sampled[:, None],
            attention_mask=attention,
            position_ids=next_position + step,  # text positions advance alike in all three axes
            cache=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1].float()
    completion_ids = torch.stack(tokens, dim=1)  # [B, T]
    mask = completion_mask(completion_ids, eos_token_id)
    return completion_ids.masked_fill(~mask, pad_token_id), mask
