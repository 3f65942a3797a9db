"""Accuracy over GRPO steps: each arm's curve, its area and end point, and the groups accuracy cannot rank.

With `grpo.eval_every` set (docs/method.md, "Accuracy over GRPO steps"), every GRPO run logs a
greedy accuracy on its eval split before the first step, every k steps and after the last
(`eval/accuracy`), and every step the share of accuracy-flat groups and each reward term's share of
the advantages, overall and within those groups (`sayo.loss.flat_group_metrics`). Per run this
module reads them from MLflow and reduces each curve to numbers:

- `start`, `final`: the first and last point;
- `area`: the trapezoid area under the curve over the step span, divided by that span: the mean
  accuracy over training (an arm that learns faster has the larger area at the same end point);
- the step means of `groups/accuracy_flat`, `advantage_share/<term>` and `advantage_share_flat/<term>`.

Each number is then a [seeds, 1] table per warm start, summarised like the page's other numbers:
hierarchical over warm starts and seeds, and paired by seed with the arm's baseline
(`sayo.experiment.stats`). Nothing is read when tracking is off or no run logged a curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sayo.experiment.ablation import AblationRun
from sayo.experiment.stats import Estimate, hierarchical, hierarchical_paired
from sayo.tracking import resolve_tracking_uri

CURVE = "eval/accuracy"
# (metric, title) of the numbers each run's curve and step histories reduce to
NUMBERS = (
    ("start", "accuracy at step 0"),
    ("final", "final accuracy"),
    ("area", "area under the curve"),
    ("flat", "accuracy-flat groups"),
    ("share/region_attention", "region term's share of the advantages"),
    ("share_flat/region_attention", "… within accuracy-flat groups"),
)
COMPARED = ("final", "area")  # the numbers compared with the baseline arm
HISTORIES = {
    "flat": "groups/accuracy_flat",
    "share/region_attention": "advantage_share/region_attention",
    "share_flat/region_attention": "advantage_share_flat/region_attention",
}


def area(points: list[tuple[int, float]]) -> float:
    """Trapezoid area under (step, value) points over their step span, divided by the span (the
    curve's mean over training); one point: its value; none: NaN."""
    if not points:
        return math.nan
    steps = np.asarray([p[0] for p in points], dtype=np.float64)
    values = np.asarray([p[1] for p in points], dtype=np.float64)
    span = steps[-1] - steps[0]
    if span <= 0:
        return float(values.mean())
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps)) / span)


def reduce(curve: list[tuple[int, float]], histories: dict[str, list[float]]) -> dict[str, float]:
    """One run's numbers (module docstring) from its sorted curve and its step histories."""
    nan = math.nan
    out = {
        "start": curve[0][1] if curve else nan,
        "final": curve[-1][1] if curve else nan,
        "area": area(curve),
    }
    for key, values in histories.items():
        out[key] = float(np.mean(values)) if values else nan
    return out


@dataclass
class CurveData:
    """Per warm start and arm, one number dict per seed (in `run.seeds` order), and the curves."""

    numbers: list[dict[str, list[dict[str, float]]]]  # [warm start] arm -> [seed] -> numbers
    curves: dict[str, list[tuple[int, float]]]  # arm -> (step, mean over warm starts × seeds)

    def table(self, arm: str, metric: str) -> list[np.ndarray]:
        """One [seeds, 1] table of `metric` per warm start."""
        return [np.asarray([[seed[metric]] for seed in warm[arm]], dtype=np.float64) for warm in self.numbers]


def read_curves(run: AblationRun) -> CurveData | None:
    """Every GRPO run's curve and histories from MLflow; None when there are none to read."""
    if not run.recipe.tracking.enabled or not any(r.run_id for r in run.runs):
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(run.recipe.tracking))

    def history(run_id: str | None, key: str) -> list[tuple[int, float]]:
        if not run_id:
            return []
        return sorted((int(m.step), float(m.value)) for m in client.get_metric_history(run_id, key))

    numbers: list[dict[str, list[dict[str, float]]]] = []
    pooled: dict[str, dict[int, list[float]]] = {}
    for warm in run.warm_starts:
        by_arm: dict[str, list[dict[str, float]]] = {}
        for arm in run.config.arms:
            for seed in run.seeds:
                done = next((r for r in warm.runs if r.arm == arm and r.seed == seed), None)
                curve = history(done.run_id if done else None, CURVE)
                steps = {k: [v for _, v in history(done.run_id if done else None, key)]
                         for k, key in HISTORIES.items()}  # fmt: skip
                by_arm.setdefault(arm, []).append(reduce(curve, steps))
                for step, value in curve:
                    pooled.setdefault(arm, {}).setdefault(step, []).append(value)
        numbers.append(by_arm)
    if not pooled:
        return None
    curves = {
        arm: [(s, float(np.mean(v))) for s, v in sorted(steps.items())] for arm, steps in pooled.items()
    }
    return CurveData(numbers, curves)


def curve_summaries(
    run: AblationRun, data: CurveData
) -> dict[str, dict[str, tuple[Estimate, Estimate | None]]]:
    """arm -> metric -> (value, paired Δ from the arm's baseline or None), hierarchical intervals."""
    cfg = run.config
    kw: dict[str, Any] = {"samples": cfg.bootstrap_samples, "confidence": cfg.confidence}
    out: dict[str, dict[str, tuple[Estimate, Estimate | None]]] = {}
    for arm in cfg.arms:
        for metric, _ in NUMBERS:
            value = hierarchical(data.table(arm, metric), **kw)
            delta = None
            if arm != cfg.baseline and metric in COMPARED:
                delta = hierarchical_paired(
                    data.table(arm, metric), data.table(cfg.baseline_of(arm), metric), **kw
                )
            out.setdefault(arm, {})[metric] = (value, delta)
    return out


def curve_lines(run: AblationRun, data: CurveData, verdict: Any) -> list[str]:
    """The page's section: a table per arm and the verdicts of the accuracy claim on the curves.

    `verdict(estimate, claim_positive)` is the page's own verdict wording.
    """
    cfg = run.config
    summary = curve_summaries(run, data)
    n_warm = len(run.warm_starts)
    lines = [
        "## Accuracy over GRPO steps",
        "",
        f"Greedy accuracy on each run's first `grpo.eval_samples` eval-split samples at step 0, every "
        f'`grpo.eval_every` steps and at the last step (docs/method.md, "Accuracy over GRPO steps"); '
        f"area = the curve's mean over training (trapezoid); values over {n_warm} warm start(s) × "
        f"{len(run.seeds)} seeds; Δ paired by seed with the baseline arm. Flat groups: the share of GRPO "
        "groups whose rollouts are all right or all wrong (accuracy gives them no advantage); the "
        "region term's share of the advantages there is what an attention reward adds where accuracy "
        "cannot rank.",
        "",
        "| arm | " + " | ".join(title for _, title in NUMBERS) + " | Δ final | Δ area |",
        "| --- |" + " --- |" * (len(NUMBERS) + 2),
    ]
    for arm in cfg.arms:
        cells = [summary[arm][m][0].text("{:.3f}") for m, _ in NUMBERS]
        deltas = [summary[arm][m][1] for m in COMPARED]
        lines.append(
            f"| {cfg.label(arm)} | " + " | ".join(cells) + " | "
            + " | ".join(d.text() if d is not None else "–" for d in deltas) + " |"
        )  # fmt: skip
    lines += ["", "| claim | paired difference | verdict |", "| --- | --- | --- |"]
    for arm in cfg.arms:
        if arm == cfg.baseline:
            continue
        base = cfg.label(cfg.baseline_of(arm))
        for metric, what in (("final", "ends more accurate"), ("area", "learns faster (area)")):
            delta = summary[arm][metric][1]
            assert delta is not None
            lines.append(f"| {cfg.label(arm)} {what} than {base} | {delta.text()} | {verdict(delta, True)} |")
    return [*lines, ""]
