"""Where the answer looks: attention measures that do not depend on which tokens are selected.

The paper's measure (docs/method.md, "The attention reward") averages the region share over the
top-ρ tokens by entropy. Which tokens those are moves with training: after GRPO the high-entropy
tokens of a rollout can be different words than before, so the selected tokens' lift can stay flat
while the behaviour the reward targets (looking at the region before answering) changes, or the
reverse. These measures read fixed places instead (docs/method.md, "Where the answer looks"):

- `answer_lift`: the region share minus the region's area fraction at the step that produces the
  first answer token (the token after `<answer>`): where the model looked when it committed;
- `all_lift`: the same lift averaged over every response token (the ρ = 1 selection);
- `peak_in_region`: the share of response steps whose single most-attended image token lies in the
  region (robust to a diffuse attention that a mean would average away);
- `position_lift`: the lift averaged within `bins` equal slices of each response (a per-position
  curve: early vs late looking);
- `token_lift`: every response token's own lift (what the others average; per-token analyses such
  as benchmarks/selection.py read it).

All are per rollout, from the tensors the scoring forward already has; a response without an answer
tag has no `answer_lift` (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

ANSWER_TAG = "<answer>"


@dataclass
class Looking:
    """Per-rollout looking measures; NaN where a measure has nothing to read."""

    answer_lift: Tensor  # [B]
    all_lift: Tensor  # [B]
    peak_in_region: Tensor  # [B]
    position_lift: Tensor  # [B, bins]
    token_lift: Tensor  # [B, T] (NaN: padding)


def answer_steps(tokenizer: Any, ids: Tensor, mask: Tensor) -> Tensor:
    """[B] index of each completion's first token after `<answer>` (−1 if none), from the tokens.

    The shortest prefix whose decoding contains the tag is found by bisection (decoding grows with
    the prefix), so it holds whether the tag is one added token or several.
    """
    steps = []
    for row in range(ids.shape[0]):
        valid = int(mask[row].sum())
        tokens = ids[row, :valid].tolist()

        def has_tag(n: int, tokens: list[int] = tokens) -> bool:
            return ANSWER_TAG in tokenizer.decode(tokens[:n], skip_special_tokens=False)

        if not has_tag(valid):
            steps.append(-1)
            continue
        low, high = 1, valid  # the shortest n with the tag in tokens[:n] lies in [low, high]
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if has_tag(middle) else (middle + 1, high)
        steps.append(low if low < valid else -1)  # the token after the tag's last one
    return torch.tensor(steps, dtype=torch.long)


def looking_measures(
    share: Tensor,
    attention: Tensor,
    region_keys: Tensor,
    image_keys: Tensor,
    mask: Tensor,
    answer_step: Tensor,
    bins: int = 10,
) -> Looking:
    """The measures of the module docstring.

    Args:
        share: [B, T] each token's share of its visual attention on the region.
        attention: [B, T, K] attention of each response token on the image keys.
        region_keys, image_keys: [B, K] keys inside the region / valid image keys.
        mask: [B, T] valid response tokens.
        answer_step: [B] the first answer token's index (−1: none), e.g. `answer_steps`.
    """
    valid = mask.bool()  # [B, T]
    fraction = region_keys.sum(-1).float() / image_keys.sum(-1).clamp(min=1).float()  # [B]
    lift = share.float() - fraction[:, None]  # [B, T]
    count = valid.sum(-1)  # [B]
    nan = torch.full_like(fraction, float("nan"))
    all_lift = torch.where(count > 0, (lift * valid).sum(-1) / count.clamp(min=1), nan)  # [B]
    scores = attention.float().masked_fill(~image_keys.bool()[:, None, :], float("-inf"))  # [B, T, K]
    peak = scores.argmax(-1)  # [B, T]
    in_region = region_keys.bool().gather(1, peak) & valid  # [B, T]
    peak_in_region = torch.where(count > 0, in_region.sum(-1) / count.clamp(min=1), nan)  # [B]
    rows = torch.arange(share.shape[0])
    has_answer = (answer_step >= 0) & (answer_step < share.shape[1])
    at_answer = lift[rows, answer_step.clamp(0, share.shape[1] - 1)]  # [B]
    answer_lift = torch.where(
        has_answer & valid[rows, answer_step.clamp(0, share.shape[1] - 1)], at_answer, nan
    )
    token_lift = lift.masked_fill(~valid, float("nan"))
    return Looking(answer_lift, all_lift, peak_in_region, _by_position(lift, valid, bins), token_lift)


def _by_position(lift: Tensor, valid: Tensor, bins: int) -> Tensor:
    """[B, bins] mean lift of the tokens in each equal slice of the response (NaN: an empty slice)."""
    count = valid.sum(-1, keepdim=True).clamp(min=1)  # [B, 1]
    index = torch.arange(lift.shape[1])[None, :].expand_as(lift)  # [B, T]
    slot = (index * bins // count).clamp(max=bins - 1)  # [B, T] slice of each token
    out = torch.full((lift.shape[0], bins), float("nan"))
    for b in range(bins):
        members = valid & (slot == b)  # [B, T]
        n = members.sum(-1)
        out[:, b] = torch.where(n > 0, (lift * members).sum(-1) / n.clamp(min=1), out[:, b])
    return out
