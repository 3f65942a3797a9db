"""WikiTableQuestions denotation accuracy, the official metric of TableVQA-Bench's VWTQ split.

Why a module of its own: TableVQA-Bench (and VLMEvalKit's `TableVQABench`, `evaluate_wtq`) scores
VWTQ with the WikiTableQuestions evaluator — answers are lists of values separated by "|", each
value normalised (accents, quotes, dashes, citations, a trailing period, case) and read as a
number, a date or a string; the prediction is right when both lists have the same number of
distinct values and every reference value matches one predicted value. This re-implements that
definition (read, not copied; docs/evaluation.md lists the reference); its quirks are kept: "1"
and "1.0" match, "2004" and "2004-xx-xx" match (a year-only date is a number), a value's
parenthesised tail is dropped ("Paris (France)" is "paris").
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

_CITATION = re.compile(r"((?<!^)\[[^\]]*\]|\[\d+\]|[•♦†‡*#+])*$")
_PARENTHESES = re.compile(r"(?<!^)( \([^)]*\))*$")
_QUOTED = re.compile(r'^"([^"]*)"$')


def normalize(text: str) -> str:
    """The evaluator's normal form: no accents, plain quotes and dashes, no trailing citations or
    parenthesised details, no outer quotes, no final ".", single spaces, lower case."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")
    text = re.sub(r"[‘’´`]", "'", text)
    text = re.sub(r"[“”]", '"', text)
    text = re.sub(r"[‐‑‒–—−]", "-", text)
    while True:
        before = text
        text = _CITATION.sub("", text.strip())
        text = _PARENTHESES.sub("", text.strip())
        text = _QUOTED.sub(r"\1", text.strip())
        if text == before:
            break
    if text.endswith("."):
        text = text[:-1]
    return re.sub(r"\s+", " ", text).lower().strip()


@dataclass(frozen=True, eq=False)
class Value:
    """One answer value: `kind` number, date or string; `key` what equality and hashing use
    (so "1" and "1.0" are one distinct value, as in the reference's set)."""

    kind: str
    key: object  # the amount, (year, month, day), or the normalised text
    normalized: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Value) and (self.kind, self.key) == (other.kind, other.key)

    def __hash__(self) -> int:
        return hash((self.kind, self.key))

    def match(self, other: Value) -> bool:
        """Equal normal forms, or two numbers within 1e-6, or two dates with the same y/m/d."""
        if self.normalized == other.normalized:
            return True
        if self.kind == other.kind == "number":
            return abs(float(self.key) - float(other.key)) < 1e-6  # type: ignore[arg-type]
        return self.kind == other.kind == "date" and self.key == other.key


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        amount = float(text)
    except ValueError:
        return None
    return amount if math.isfinite(amount) else None  # the reference fails on nan/inf: a string here


def _date(text: str) -> tuple[int, int, int] | None:
    parts = text.lower().split("-")
    if len(parts) != 3:
        return None
    try:
        year = -1 if parts[0] in ("xx", "xxxx") else int(parts[0])
        month = -1 if parts[1] == "xx" else int(parts[1])
        day = -1 if parts[2] == "xx" else int(parts[2])
    except ValueError:
        return None
    if (
        year == month == day == -1
        or not (month == -1 or 1 <= month <= 12)
        or not (day == -1 or 1 <= day <= 31)
    ):
        return None
    return year, month, day


def to_value(text: str) -> Value:
    """A number if `int`/`float` reads it, else a date "yyyy-mm-dd" (xx for unknown parts; a year
    alone is a number), else a string."""
    amount = _number(text)
    if amount is None:
        ymd = _date(text)
        if ymd is not None and ymd[1] == ymd[2] == -1:
            amount = ymd[0]
        elif ymd is not None:
            return Value("date", ymd, normalize(text))
    if amount is not None:
        whole = abs(amount - round(amount)) < 1e-6
        return Value("number", int(amount) if whole else float(amount), normalize(text))
    return Value("string", normalize(text), normalize(text))


def _unescape(text: str) -> str:
    return text.replace(r"\n", "\n").replace(r"\p", "|").replace("\\\\", "\\")


def to_values(answer: str) -> list[Value]:
    """The distinct values of a "|"-separated answer (escaped as in the WTQ TSV files)."""
    return list(dict.fromkeys(to_value(_unescape(part)) for part in answer.split("|")))


def wtq_correct(prediction: str, answer: str) -> bool:
    """VWTQ's score of one prediction ("||" separates a list in predictions, "|" in answers)."""
    targets, predicted = to_values(answer), to_values(prediction.replace("||", "|"))
    if len(targets) != len(predicted):
        return False
    return all(any(t.match(p) for p in predicted) for t in targets)
