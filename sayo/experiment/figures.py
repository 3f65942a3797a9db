"""The results page's figures: accuracy and lift bars, training curves, the heatmap gallery."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sayo.atomic import write_bytes
from sayo.experiment.ablation import AblationRun
from sayo.experiment.curves import CurveData
from sayo.experiment.summary import SPLITS, ArmSummary
from sayo.tracking import resolve_tracking_uri
from sayo.viz import heatmap_grid

CURVES = (("reward/total_mean", "total reward"), ("attention/lift", "attention lift over uniform"))


def reward_curves(run: AblationRun) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """`{arm: {metric: [(step, mean over seeds)]}}` from the GRPO runs' MLflow histories."""
    if not run.recipe.tracking.enabled:
        return {}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(run.recipe.tracking))
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for arm in run.config.arms:
        for key, _ in CURVES:
            by_step: dict[int, list[float]] = {}
            for r in run.runs:
                if r.arm == arm and r.run_id:
                    for m in client.get_metric_history(r.run_id, key):
                        by_step.setdefault(int(m.step), []).append(float(m.value))
            curves.setdefault(arm, {})[key] = [(s, float(np.mean(v))) for s, v in sorted(by_step.items())]
    return curves


def _png(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())


def _bars(summaries: list[ArmSummary], run: AblationRun, metric: str, title: str, zero_line: bool) -> Figure:
    figure = Figure(figsize=(9, 3.6))
    axes = figure.subplots(1, len(SPLITS), sharey=True)
    arms = ["sft", *run.config.arms]
    labels = ["SFT"] + [run.config.label(a) for a in run.config.arms]
    for ax, (split, split_title) in zip(np.atleast_1d(axes), SPLITS, strict=True):
        found = {s.arm: s.values[metric] for s in summaries if s.split == split}
        means = [found[a].mean for a in arms]
        errors = [
            [max(found[a].mean - found[a].low, 0) for a in arms],
            [max(found[a].high - found[a].mean, 0) for a in arms],
        ]
        colours = ["#999999", "#4c72b0"] + ["#dd8452"] * (len(arms) - 2)
        ax.barh(range(len(arms)), means, xerr=errors, color=colours, capsize=3)
        ax.set_yticks(range(len(arms)), labels, fontsize=8)
        ax.invert_yaxis()
        if zero_line:
            ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(split_title, fontsize=9)
    figure.suptitle(f"{title} (mean over seeds × samples, {run.config.confidence:.0%} interval)", fontsize=10)
    return figure


def _curves(curves: dict[str, dict[str, list[tuple[int, float]]]], run: AblationRun) -> Figure:
    figure = Figure(figsize=(9, 3.4))
    axes = figure.subplots(1, len(CURVES))
    for ax, (key, title) in zip(np.atleast_1d(axes), CURVES, strict=True):
        for arm in run.config.arms:
            points = curves.get(arm, {}).get(key, [])
            if points:
                ax.plot(
                    [p[0] for p in points], [p[1] for p in points], label=run.config.label(arm), linewidth=1.2
                )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GRPO step", fontsize=8)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, bbox_to_anchor=(0.5, -0.12))
    figure.suptitle("training curves (mean over seeds)", fontsize=10)
    return figure


def _gallery(run: AblationRun) -> Any:
    """Rows: the same held-out samples; columns: the warm start, then each arm's first seed."""
    names = ["sft"] + [run.checkpoint_name(a, run.seeds[0]) for a in run.config.arms]
    titles = ["SFT"] + [run.config.label(a) for a in run.config.arms]
    galleries = run.first.evaluation.galleries
    ids = [item.sample_id for item in galleries.get("sft", [])][: run.config.gallery_samples]
    tiles = []
    for sample_id in ids:
        for name, title in zip(names, titles, strict=True):
            item = next((g for g in galleries.get(name, []) if g.sample_id == sample_id), None)
            if item is not None:
                tiles.append((item.image, item.heat, item.boxes, f"{title}: {item.caption}"))
    return heatmap_grid(tiles, columns=len(names), tile_width=200) if tiles else None


def _accuracy_curves(data: CurveData, run: AblationRun) -> Figure:
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    for arm in run.config.arms:
        points = data.curves.get(arm, [])
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                    label=run.config.label(arm), linewidth=1.2)  # fmt: skip
    ax.set_xlabel("GRPO step", fontsize=8)
    ax.set_ylabel("greedy accuracy (eval split)", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    figure.suptitle("accuracy over GRPO steps (mean over warm starts × seeds)", fontsize=10)
    return figure


def write_figures(
    run: AblationRun, summaries: list[ArmSummary], folder: Path, curves: CurveData | None = None
) -> dict[str, Path]:
    """The results page's figures as PNGs in `folder` (with `curves`, the accuracy curves too)."""
    figures = {
        "accuracy": _png(_bars(summaries, run, "correct", "accuracy", False), folder / "accuracy.png"),
        "lift": _png(
            _bars(summaries, run, "attention_lift", "attention lift over uniform", True), folder / "lift.png"
        ),
        "curves": _png(_curves(reward_curves(run), run), folder / "curves.png"),
    }
    if curves is not None:
        figures["accuracy_curves"] = _png(_accuracy_curves(curves, run), folder / "accuracy_curves.png")
    gallery = _gallery(run)
    if gallery is not None:
        buffer = io.BytesIO()
        gallery.save(buffer, format="PNG")
        figures["gallery"] = write_bytes(folder / "gallery.png", buffer.getvalue())
    return figures
