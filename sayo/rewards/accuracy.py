"""Answer-accuracy reward r_acc: 1 when the extracted answer is correct, else 0.

Why: the accuracy term of SAYO's total reward (docs/method.md, "Total reward and optimisation") [paper]:
exact match after normalisation, numbers within 5 % relative error as in ChartQA's relaxed
accuracy, and multiple-choice answers given either as the option letter or the option text.

Choices below are ours [ours], made so that a correct answer is not scored 0 for its spelling:
- extraction: the last ``<answer>…</answer>`` wins (models sometimes restate); without tags, the
  text after a final "Answer:" / "answer is" on its line; otherwise nothing (reward 0);
- numbers: "," is a thousands separator only in groups of three ("1,234"; "1,2" is not a number),
  currency symbols, "%" and trailing unit words are dropped, so "12.5%" parses as 12.5 (not 0.125);
- a target of 0 needs an exact 0 (relative error is undefined there);
- ``exact`` compares normalised strings, ``number`` and ``open`` use relaxed matching (numbers
  within the tolerance, else normalised strings), ``choice`` compares option indices.
"""

from __future__ import annotations

import re
import string

import torch
from torch import Tensor

ANSWER_TYPES = ("exact", "number", "choice", "open")

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is\b|:)\s*:?[ \t]*(.*)", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(
    r"""^(?P<sign>[-+−])?\s*[$€£¥]?\s*(?P<sign2>[-+−])?\s*
    (?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<exp>[eE][-+]?\d+)?
    \s*%?\s*(?:[^\W\d_][^\d]*)?$""",
    re.VERBOSE,
)
_LETTER_ONLY = re.compile(r"^\(?([A-Za-z])\)?[.:)]?$")
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Za-z])[).:]\s+\S")
_CHOICE_PREFIX = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+)?answer\s*(?:is\b|:)|option|choice)\s*:?\s*", re.IGNORECASE
)
_BARE_CAPITAL = re.compile(r"(?<![A-Za-z])\(?([A-Z])\)?(?![A-Za-z])")


def extract_answer(completion: str) -> str | None:
    """Return the final answer in ``completion``, or None when there is none.

    The content of the last ``<answer>…</answer>``; without tags, the rest of the line after the
    last "Answer:" / "answer is" (a trailing full stop dropped). Empty answers give None.
    """
    tagged = _ANSWER_TAG.findall(completion)
    if tagged:
        text = tagged[-1].strip()
        return text or None
    phrases = list(_ANSWER_PHRASE.finditer(completion))
    if not phrases:
        return None
    text = phrases[-1].group(1).strip().rstrip(".").strip()
    return text or None


def normalize_text(s: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD style)."""
    s = s.lower().translate(_PUNCT_TABLE)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def parse_number(s: str) -> float | None:
    """Parse "12.5%", "$1,200", "3.0 kg", "-4", "1e3" as a float; None when ``s`` is not a number."""
    match = _NUMBER.match(s.strip().rstrip("."))
    if match is None:
        return None
    value = float(match.group("num").replace(",", "") + (match.group("exp") or ""))
    minus_signs = sum(1 for sign in (match.group("sign"), match.group("sign2")) if sign in ("-", "−"))
    return -value if minus_signs % 2 else value


def relaxed_match(pred: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed match: numbers within ``tolerance`` relative error, else normalised equality.

    A target of 0 requires the prediction to be exactly 0.
    """
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    target_value = parse_number(target)
    pred_value = parse_number(pred)
    if target_value is not None and pred_value is not None:
        if target_value == 0.0:
            return pred_value == 0.0
        return abs(pred_value - target_value) / abs(target_value) <= tolerance
    return normalize_text(pred) == normalize_text(target)


def _letter_index(text: str, n_choices: int) -> int | None:
    """Index of an option letter written as "B", "(B)", "b)", "B." or "B. text"; None otherwise."""
    match = _LETTER_ONLY.match(text) or _LETTER_THEN_TEXT.match(text)
    if match is None:
        return None
    index = ord(match.group(1).upper()) - ord("A")
    return index if index < n_choices else None


def _strip_option_label(choice: str) -> str:
    """Drop a leading "A." / "(A)" label that some datasets keep inside the option text."""
    return re.sub(r"^\(?[A-Za-z][).:]\s+", "", choice.strip())


def extract_choice(text: str, choices: list[str]) -> int | None:
    """Index of the option that ``text`` names, or None when it names none (or is ambiguous).

    Accepts "B", "(B)", "b)", "Answer: b", "B. text", the option text itself, and, as a last
    resort, exactly one distinct capital option letter standing alone in the text.
    """
    s = _CHOICE_PREFIX.sub("", text.strip()).strip().rstrip(".").strip() or text.strip()
    index = _letter_index(s, len(choices))
    if index is not None:
        return index
    wanted = normalize_text(s)
    by_text = [
        i for i, c in enumerate(choices) if wanted and normalize_text(_strip_option_label(c)) == wanted
    ]
    if not by_text:
        by_text = [i for i, c in enumerate(choices) if wanted and normalize_text(c) == wanted]
    if len(by_text) == 1:
        return by_text[0]
    letters = {ord(m.group(1)) - ord("A") for m in _BARE_CAPITAL.finditer(s)}
    letters = {i for i in letters if i < len(choices)}
    return letters.pop() if len(letters) == 1 else None


def _choice_correct(prediction: str, answer: str, choices: list[str] | None) -> bool:
    if choices is None:  # only letters can be compared
        pred_index, target_index = _letter_index(prediction.strip(), 26), _letter_index(answer.strip(), 26)
        if target_index is None:
            return normalize_text(prediction) == normalize_text(answer)
    else:
        pred_index, target_index = extract_choice(prediction, choices), extract_choice(answer, choices)
    return pred_index is not None and pred_index == target_index


def score_answer(
    prediction: str | None,
    answer: str,
    answer_type: str,
    choices: list[str] | None = None,
    tolerance: float = 0.05,
) -> float:
    """Score one extracted prediction against the reference answer: 1.0 if correct, else 0.0.

    Args:
        prediction: extracted answer text (None scores 0).
        answer: reference; for ``choice`` the option letter ("B") or the option text.
        answer_type: one of ``exact``, ``number``, ``choice``, ``open``.
        choices: option texts for ``choice`` questions (None: letters only).
        tolerance: relative tolerance for numbers.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    if prediction is None:
        return 0.0
    if answer_type == "exact":
        correct = normalize_text(prediction) == normalize_text(answer)
    elif answer_type == "choice":
        correct = _choice_correct(prediction, answer, choices)
    else:
        correct = relaxed_match(prediction, answer, tolerance)
    return 1.0 if correct else 0.0


def accuracy_reward(
    completions: list[str],
    answers: list[str],
    answer_types: list[str],
    choices: list[list[str] | None] | None = None,
    tolerance: float = 0.05,
) -> Tensor:
    """Accuracy reward of each completion.

    Returns:
        [B] float32 tensor of 0.0 / 1.0.
    """
    per_sample_choices = choices if choices is not None else [None] * len(completions)
    lengths = {len(completions), len(answers), len(answer_types), len(per_sample_choices)}
    if len(lengths) != 1:
        raise ValueError(
            f"completions ({len(completions)}), answers ({len(answers)}), answer_types "
            f"({len(answer_types)}) and choices ({len(per_sample_choices)}) must have the same length"
        )
    scores = [
        score_answer(extract_answer(c), a, t, ch, tolerance)
        for c, a, t, ch in zip(completions, answers, answer_types, per_sample_choices, strict=True)
    ]
    return torch.tensor(scores, dtype=torch.float32)  # [B]
