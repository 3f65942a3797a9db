"""Evaluation metrics: pure functions from per-answer records to numbers (docs/method.md, "Evaluation").

Why bootstrap intervals: the paper's gains are a few points (up to +4.5), while a 500-sample
benchmark has a binomial standard error of about 2 points; without an interval a comparison of
checkpoints cannot tell progress from noise. The interval is the percentile bootstrap of the mean
with a seeded numpy generator, so the same records always give the same interval.

A record is one answer: `correct` (0/1), `format` (0/1), `length` (response tokens), optional
`region_attention` (None for samples without regions) and `category`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, Any]


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values`; (nan, nan) when empty.

    Example: `bootstrap_ci([1, 1, 1])` is `(1.0, 1.0)`: every resample has mean 1.
    """
    data = np.asarray(values, dtype=np.float64)  # [N]
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(samples, data.size))  # [S, N]
    means = data[picks].mean(axis=1)  # [S]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def summarize(
    records: Sequence[Record], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Accuracy with its interval, format rate, mean length and attention-on-region of `records`.

    `region_attention` (the share of visual attention on the region), `attention_lift` (that share
    minus the region's area fraction: 0 = uniform attention) and `attention_reward` (the configured
    reward form) average only the records that have them (grounded samples); `num_grounded` says
    how many that is.
    """
    correct = [float(r["correct"]) for r in records]
    attention = [float(r["region_attention"]) for r in records if r.get("region_attention") is not None]
    lift = [float(r["attention_lift"]) for r in records if r.get("attention_lift") is not None]
    reward = [float(r["attention_reward"]) for r in records if r.get("attention_reward") is not None]
    low, high = bootstrap_ci(correct, samples=samples, seed=seed, confidence=confidence)
    return {
        "accuracy": _mean(correct),
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "format_rate": _mean([float(r["format"]) for r in records]),
        "response_length_mean": _mean([float(r["length"]) for r in records]),
        "region_attention": _mean(attention),
        "attention_lift": _mean(lift),
        "attention_reward": _mean(reward),
        "num_answers": float(len(records)),
        "num_grounded": float(len(attention)),
    }


def group_by(records: Iterable[Record], key: str) -> dict[str, list[Record]]:
    """Records grouped by the value of `key` (missing or empty → "none"), in first-seen order."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(str(record.get(key) or "none"), []).append(record)
    return groups


def benchmark_metrics(
    records: Sequence[Record], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """`summarize` of all records plus a `categories` mapping with the same summary per category."""
    out: dict[str, Any] = summarize(records, samples=samples, seed=seed, confidence=confidence)
    out["categories"] = {
        name: summarize(group, samples=samples, seed=seed, confidence=confidence)
        for name, group in group_by(records, "category").items()
    }
    return out


def json_safe(nested: Any) -> Any:
    """NaN → None, recursively, so metrics.json is strict JSON (DVC and browsers reject NaN)."""
    if isinstance(nested, Mapping):
        return {k: json_safe(v) for k, v in nested.items()}
    if isinstance(nested, float) and not math.isfinite(nested):
        return None
    return nested


def accuracy_rows(nested: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per checkpoint × benchmark (accuracy and interval), for `dvc plots` and CSV."""
    return [
        {
            "label": f"{checkpoint}/{bench}",
            "checkpoint": checkpoint,
            "benchmark": bench,
            "accuracy": values["accuracy"],
            "ci_low": values["accuracy_ci_low"],
            "ci_high": values["accuracy_ci_high"],
        }
        for checkpoint, benches in nested.items()
        for bench, values in benches.items()
    ]
