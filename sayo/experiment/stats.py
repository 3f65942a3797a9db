"""Intervals for an ablation: per-arm means and paired differences over warm starts × seeds × samples.

Every arm answers the same held-out samples with each of the same seeds, so an arm is compared
with the baseline *paired*: the difference of the two arms on one sample under one seed. Within one
warm start the interval of a mean (or of a mean difference) is a two-level percentile bootstrap:
resample the seeds with replacement, then the samples with replacement (the same samples for every
drawn seed), and take the mean of the drawn cells; it carries both the seed-to-seed variance of
training and the sample-to-sample variance of evaluation [ours].

With several warm starts (each its own data seed, SFT run and held-out samples) the interval is
hierarchical: resample the warm starts, then within each drawn warm start its seeds and samples as
above, and average the drawn warm starts' means with equal weight. So the variance between warm
starts, which the two-level interval of one warm start cannot see, is in the interval (docs/results.md
shows what one warm start hid). With one warm start it is exactly the two-level interval.
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
    means = _resampled_means(table, samples, np.random.default_rng(seed))  # [B]
    return _interval(float(np.nanmean(table)), means, confidence)


def _resampled_means(table: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """`samples` means of a [seeds, items] table, seeds then items drawn with replacement."""
    n_seeds, n_items = table.shape
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds))  # [B, S]
    items = rng.integers(0, n_items, size=(samples, n_items))  # [B, N]
    drawn = table[seeds[:, :, None], items[:, None, :]]  # [B, S, N]
    return np.nanmean(drawn.reshape(samples, -1), axis=1)  # [B]


def _interval(mean: float, means: np.ndarray, confidence: float) -> Estimate:
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return Estimate(mean, float(low), float(high))


def hierarchical(
    tables: Sequence[np.ndarray], *, samples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean over warm starts of each warm start's [seeds, items] table mean, with the hierarchical
    interval (warm starts, then seeds, then samples, drawn with replacement); one table: `bootstrap`.

    Example: two warm starts whose every cell is 0 and 1 give mean 0.5 and an interval from 0 to 1,
    where pooling their seeds as one warm start's would give a narrower one.
    """
    arrays = [np.asarray(t, dtype=np.float64) for t in tables]
    usable = [t for t in arrays if t.ndim == 2 and t.size and not np.isnan(t).all()]
    if any(t.ndim != 2 for t in arrays):
        raise ValueError(f"each table must be [seeds, items], got shapes {[t.shape for t in arrays]}")
    if len(usable) <= 1:
        return bootstrap(usable[0] if usable else np.empty((0, 0)), samples=samples, seed=seed,
                         confidence=confidence)  # fmt: skip
    rng = np.random.default_rng(seed)
    n = len(usable)
    inner = np.stack([_resampled_means(t, samples * n, rng) for t in usable])  # [W, B*W]
    drawn = rng.integers(0, n, size=(samples, n))  # [B, W]: the warm starts of each resample
    slots = np.arange(samples * n).reshape(samples, n)  # [B, W]: an own inner draw per slot
    means = np.nanmean(inner[drawn, slots], axis=1)  # [B]
    mean = float(np.mean([np.nanmean(t) for t in usable]))
    return _interval(mean, means, confidence)


def hierarchical_paired(
    arms: Sequence[np.ndarray],
    baselines: Sequence[np.ndarray],
    *,
    samples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """`hierarchical` of arm − baseline, paired cell by cell within each warm start."""
    if len(arms) != len(baselines):
        raise ValueError(f"{len(arms)} arm tables but {len(baselines)} baseline tables")
    differences = []
    for a, b in zip(arms, baselines, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"paired tables must have one shape, got {a.shape} and {b.shape}")
        differences.append(a - b)
    return hierarchical(differences, samples=samples, seed=seed, confidence=confidence)


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
