"""The ablation's numbers: per arm and split, means and paired differences with their intervals.

Each metric is a [seeds, samples] table per warm start (`tables`), summarised with the hierarchical
bootstrap of `sayo.experiment.stats` (two-level with one warm start); the paired difference from the
arm's baseline (`AblationConfig.baseline_of`) pooled and within each warm start; `carried_by_one`
names a warm start a pooled result rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sayo.data.synthetic.search import names_asked_first
from sayo.experiment.ablation import AblationRun
from sayo.experiment.stats import Estimate, cell_table, hierarchical, hierarchical_paired, paired

SPLITS = (("heldout", "held-out test split"), ("hard", "harder split"))
METRICS = (("correct", "accuracy"), ("attention_lift", "attention lift"), ("length", "response length"))
# where the answer looks, read at fixed steps rather than the selected tokens (sayo.looking)
LOOKING = (
    ("answer_lift", "lift at the answer step"),
    ("peak_in_region", "steps peaking in the region"),
    ("all_lift", "lift over all tokens"),
)
# a task-level behaviour read off the answer's text, not a generic measure: the synthetic `search`
# task's answers whose reasoning names the asked object first (NaN for other tasks)
TASK_LOOKING = (("names_asked_first", "names the asked object first (search task)"),)


def _names_asked_first(record: dict[str, Any]) -> float | None:
    if record.get("category") != "search":
        return None
    named = names_asked_first(str(record.get("question", "")), str(record.get("completion", "")))
    return None if named is None else float(named)


DERIVED = {"names_asked_first": _names_asked_first}  # metric -> its value from one answer's record


@dataclass
class ArmSummary:
    """One arm on one split: means with intervals, and paired differences from the baseline."""

    arm: str
    split: str
    values: dict[str, Estimate]  # metric -> mean over warm starts × seeds × samples
    deltas: dict[str, Estimate]  # metric -> paired difference from the baseline arm
    per_warm: dict[str, list[Estimate]]  # metric -> the paired difference within each warm start


def tables(run: AblationRun, arm: str, split: str, metric: str) -> list[np.ndarray]:
    """One [seeds, samples] table per warm start of `arm` (`sft`: the warm start itself) on `split`."""
    names = ["sft"] if arm == "sft" else [run.checkpoint_name(arm, s) for s in run.seeds]
    derive = DERIVED.get(metric)
    out = []
    for w in run.warm_starts:
        records = w.evaluation.records
        if derive is not None:
            records = {n: [{**r, metric: derive(r)} for r in records[n]] for n in names}
        out.append(cell_table(records, names, split, metric))
    return out


def summarize(run: AblationRun) -> list[ArmSummary]:
    """Every arm (and the SFT warm start, as `sft`) on every split."""
    cfg = run.config
    kw: dict[str, Any] = {"samples": cfg.bootstrap_samples, "confidence": cfg.confidence}
    out = []
    for split, _ in SPLITS:
        for arm in ["sft", *cfg.arms]:
            values, deltas, per_warm = {}, {}, {}
            for metric, _ in (*METRICS, *LOOKING, *TASK_LOOKING):
                table = tables(run, arm, split, metric)
                values[metric] = hierarchical(table, **kw)
                if arm not in ("sft", cfg.baseline):
                    base = tables(run, cfg.baseline_of(arm), split, metric)
                    deltas[metric] = hierarchical_paired(table, base, **kw)
                    per_warm[metric] = [paired(a, b, **kw) for a, b in zip(table, base, strict=True)]
            out.append(ArmSummary(arm, split, values, deltas, per_warm))
    return out


def carried_by_one(run: AblationRun, arm: str, split: str, metric: str, pooled: Estimate) -> str | None:
    """The warm start without which a pooled Δ that excludes 0 no longer does (None: none, or one
    warm start only): the result then rests on that warm start."""
    if len(run.warm_starts) < 2 or not pooled.excludes_zero:
        return None
    arm_t, base_t = tables(run, arm, split, metric), tables(run, run.config.baseline_of(arm), split, metric)
    kw: dict[str, Any] = {"samples": run.config.bootstrap_samples, "confidence": run.config.confidence}
    for drop, warm in enumerate(run.warm_starts):
        keep = [i for i in range(len(arm_t)) if i != drop]
        rest = hierarchical_paired([arm_t[i] for i in keep], [base_t[i] for i in keep], **kw)
        if not rest.excludes_zero or (rest.mean > 0) != (pooled.mean > 0):
            return warm.spec.name()
    return None
