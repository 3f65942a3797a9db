"""Intervals for an ablation: per-arm means and paired differences over seeds × held-out samples.

Every arm answers the same held-out samples with each of the same seeds, so an arm is compared
with the baseline *paired*: the difference of the two arms on one sample under one seed. The
interval of a mean (or of a mean difference) is a two-level percentile bootstrap: resample the seeds
with replacement, then the samples with replacement (the same samples for every drawn seed), and take
the mean of the drawn cells; it carries both the seed-to-seed variance of training and the
sample-to-sample variance of evaluation [ours].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds × samples and its bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self, pattern: str = "{:+.3f}") -> str:
        if math.isnan(self.mean):
            return "–"
        return f"{pattern.format(self.mean)} [{pattern.format(self.low)}, {pattern.format(self.high)}]"


def bootstrap(
    values: np.ndarray, *, samples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean of a [seeds, items] table (NaN cells ignored) with its two-level bootstrap interval.

    Example: `bootstrap(np.ones((3, 5)))` is `Estimate(1.0, 1.0, 1.0)`.
    """
    table = np.asarray(values, dtype=np.float64)  # [S, N]
    if table.ndim != 2:
        raise ValueError(f"values must be a [seeds, items] table, got shape {table.shape}")
    if table.size == 0 or np.isnan(table).all():
        return Estimate(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    n_seeds, n_items = table.shape
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds))  # [B, S]
    items = rng.integers(0, n_items, size=(samples, n_items))  # [B, N]
    drawn = table[seeds[:, :, None], items[:, None, :]]  # [B, S, N]
    means = np.nanmean(drawn.reshape(samples, -1), axis=1)  # [B]
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return Estimate(float(np.nanmean(table)), float(low), float(high))


def paired(
    arm: np.ndarray, baseline: np.ndarray, *, samples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean of arm − baseline over the same [seeds, items] cells, with its bootstrap interval."""
    a, b = np.asarray(arm, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired tables must have one shape, got {a.shape} and {b.shape}")
    return bootstrap(a - b, samples=samples, seed=seed, confidence=confidence)


def cell_table(
    records: Mapping[str, list[dict[str, Any]]], names: Sequence[str], split: str, metric: str
) -> np.ndarray:
    """[len(names), samples] the evaluation records' `metric` on benchmark `split`, one row per
    checkpoint `name`, the samples every checkpoint answered in one order (None → NaN)."""
    per_name = {n: {r["id"]: r.get(metric) for r in records[n] if r["benchmark"] == split} for n in names}
    ids = sorted(set.intersection(*(set(v) for v in per_name.values()))) if per_name else []
    table = [[_number(per_name[n][i]) for i in ids] for n in names]
    return np.asarray(table, dtype=np.float64).reshape(len(names), len(ids))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
