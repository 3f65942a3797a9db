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

The authors' form [code] (`rewards.format.form: official`, `official_format_reward`): 1 when the
completion's last ``<answer>`` is closed, anything around it allowed, times length factors
0.6·100/L above 100 tokens and 0.6·L/60 below 60 (L = completion tokens, EOS included). The
token count is an explicit argument, so the reward stays a pure function of its inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


# ---------------------------------------------------------------- the authors' form (rewards.format.form)

FORMAT_FORMS = ("template", "official")
_OPEN, _CLOSE = "<answer>", "</answer>"
LONG_FROM, SHORT_BELOW, LENGTH_SCALE = 100, 60, 0.6  # [code] answer_format_reward's length terms


def has_last_answer(completion: str) -> bool:
    """Whether the completion's last ``<answer>`` is closed by a later ``</answer>`` [code].

    What the authors' search for ``<answer>(?!.*<answer>)(.*?)</answer>`` (DOTALL) finds: only the
    last opening tag can match, anything may come before or after, and the answer may be empty.
    """
    start = completion.rfind(_OPEN)
    return start >= 0 and _CLOSE in completion[start + len(_OPEN) :]


def length_factor(length: int) -> float:
    """[code] 0.6·100/L above 100 tokens, 0.6·L/60 below 60, else 1 (L = completion tokens)."""
    if length > LONG_FROM:
        return LENGTH_SCALE * LONG_FROM / length
    if length < SHORT_BELOW:
        return max(0.0, LENGTH_SCALE * length / SHORT_BELOW)
    return 1.0


def official_format_reward(completions: Sequence[str], lengths: Sequence[int] | Tensor) -> Tensor:
    """The authors' format reward: ``has_last_answer`` × ``length_factor(length)`` per completion.

    Args:
        completions: decoded completion texts (special tokens skipped, as TRL decodes them).
        lengths: each completion's length in tokens of the policy's tokenizer, EOS included and
            padding excluded — what the authors' ``len(completion_ids)`` counts (TRL keeps the
            tokens up to and including the first EOS); the GRPO step passes its completion mask's
            row sums.
    Returns:
        [B] float32 rewards in [0, 1].
    """
    counts = [int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
    if len(counts) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(counts)} lengths")
    scores = [
        length_factor(n) if has_last_answer(text) else 0.0
        for text, n in zip(completions, counts, strict=True)
    ]
    return torch.tensor(scores, dtype=torch.float32)  # [B]


def format_rewards(form: str, completions: Sequence[str], lengths: Sequence[int] | Tensor) -> Tensor:
    """[B] the format reward in the recipe's form (`rewards.format.form`): `template` or `official`."""
    if form == "template":
        return format_reward(list(completions))
    if form == "official":
        return official_format_reward(completions, lengths)
    raise ValueError(f"rewards.format.form={form!r}: expected one of {FORMAT_FORMS}")
