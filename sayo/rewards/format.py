"""Format reward r_fmt: 1 when the response follows the reasoning-then-answer template, else 0.

Why: SAYO's total reward includes a format term so that answers stay parsable (docs/method.md, "Total
reward and optimisation": ``<think>…</think><answer>…</answer>``) [paper].

Exact rules [ours]:
- with ``require_think`` (default): optional leading whitespace, exactly one ``<think>…</think>``,
  then exactly one ``<answer>…</answer>`` with a non-empty answer, then nothing but whitespace or
  chat special tokens such as ``<|im_end|>``; the reasoning may be empty (as in R1-V / TRL);
- without it: exactly one non-empty ``<answer>…</answer>``, anything before it, nothing
  substantial after it.
Tags are case-sensitive, as the template the SFT warm-up teaches is.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

# Whatever may follow the closing tag: whitespace and special tokens like <|im_end|>.
_TAIL = r"(?:\s|<\|[^|<>]*\|>)*"
_THINK_THEN_ANSWER = re.compile(
    r"\s*<think>.*?</think>\s*<answer>(?P<answer>.*?)</answer>" + _TAIL, re.DOTALL
)
_ANY_THEN_ANSWER = re.compile(r".*?<answer>(?P<answer>.*?)</answer>" + _TAIL, re.DOTALL)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _follows_template(completion: str, require_think: bool) -> bool:
    counts = {tag: completion.count(tag) for tag in _TAGS}
    if counts["<answer>"] != 1 or counts["</answer>"] != 1:
        return False
    if require_think and (counts["<think>"] != 1 or counts["</think>"] != 1):
        return False
    pattern = _THINK_THEN_ANSWER if require_think else _ANY_THEN_ANSWER
    match = pattern.fullmatch(completion)
    return match is not None and bool(match.group("answer").strip())


def format_reward(completions: list[str], *, require_think: bool = True) -> Tensor:
    """Format reward of each completion.

    Examples:
        ``"<think>red is top left</think> <answer>red</answer>"`` → 1.0;
        ``"<answer>red</answer>"`` → 0.0 (1.0 with ``require_think=False``);
        ``"<think>…</think><answer></answer>"`` → 0.0 (empty answer).

    Returns:
        [B] float32 tensor of 0.0 / 1.0.
    """
    scores = [1.0 if _follows_template(c, require_think) else 0.0 for c in completions]
    return torch.tensor(scores, dtype=torch.float32)  # [B]
