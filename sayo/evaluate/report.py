"""The evaluation report: comparison tables, figures and a heatmap gallery, as HTML and Markdown.

Why these pictures (docs/method.md, "Evaluation" and "Findings"): accuracy with its bootstrap interval
per benchmark and checkpoint (is the gain larger than the noise?), the distribution of
attention-on-region on grounded samples (does the trained model look at the region?), reward and
response-length curves of the training runs (shorter chains), and the same images' heatmaps for
every checkpoint side by side. Figures are matplotlib `Figure`s (Agg canvas, no pyplot state),
saved as PNG in `figures/`; the HTML embeds them, so the file is self-contained in MLflow's
artifact viewer, and the Markdown links them.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from sayo.atomic import write_bytes, write_text
from sayo.viz import heatmap_grid

ROW_METRICS = (
    ("format_rate", "format rate", "{:.3f}"),
    ("response_length_mean", "mean response length (tokens)", "{:.1f}"),
    ("region_attention", "attention on region", "{:.3f}"),
    ("num_answers", "answers", "{:.0f}"),
)


EXTRA_ROWS = (  # benchmark scores beyond accuracy: (section, key, label)
    ("hallusionbench", "aAcc", "HallusionBench aAcc"),
    ("hallusionbench", "fAcc", "HallusionBench fAcc"),
    ("hallusionbench", "qAcc", "HallusionBench qAcc"),
    ("wemath", "score_strict", "We-Math score (strict)"),
    ("wemath", "score_loose", "We-Math score (loose)"),
    ("circular", "accuracy", "circular accuracy"),
)


@dataclass
class GalleryItem:
    """One heatmap tile: a grounded sample's image, the attention grid, its boxes and a caption."""

    sample_id: str
    image: Image.Image
    heat: np.ndarray  # [rows, cols] over the merged visual-token grid
    boxes: list[Any]
    caption: str


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def comparison_rows(
    metrics: dict[str, Any], not_run: Sequence[tuple[str, str, str]] = ()
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table: one row per benchmark × metric, a column per checkpoint;
    a set that was skipped as missing gets one row, "not run" in every column."""
    names = list(metrics)
    benchmarks = list(next(iter(metrics.values()))) if metrics else []
    rows = []
    for bench in benchmarks:
        cells = [metrics[n][bench] for n in names]
        acc = [f"{_fmt(c['accuracy'], '{:.3f}')} [{_fmt(c['accuracy_ci_low'], '{:.3f}')}, "
               f"{_fmt(c['accuracy_ci_high'], '{:.3f}')}]" for c in cells]  # fmt: skip
        rows.append([bench, "scored with", *(_scored_with(c) for c in cells)])
        rows.append([bench, "accuracy [95% CI]", *acc])
        rows += [
            [bench, label, *(_fmt(c[key], pattern) for c in cells)] for key, label, pattern in ROW_METRICS
        ]
        rows += [
            [bench, label, *(_fmt((c.get(section) or {}).get(key), "{:.3f}") for c in cells)]
            for section, key, label in EXTRA_ROWS
            if any(section in c for c in cells)
        ]
    rows += [[name, "not run", *("not run" for _ in names)] for name, _, _ in not_run]
    return ["benchmark", "metric", *names], rows


def _scored_with(cell: dict[str, Any]) -> str:
    metric = str(cell.get("metric", "–"))
    return f"{metric} ({cell['metric_note']})" if cell.get("metric_note") else metric


def category_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Accuracy per benchmark category, a column per checkpoint."""
    names = list(metrics)
    rows = []
    for bench, first in (next(iter(metrics.values())) if metrics else {}).items():
        for category in first["categories"]:
            values = [metrics[n][bench]["categories"].get(category, {}).get("accuracy") for n in names]
            rows.append([bench, category, *(_fmt(v, "{:.3f}") for v in values)])
    return ["benchmark", "category", *names], rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def accuracy_figure(metrics: dict[str, Any]) -> Figure:
    """Grouped bars: accuracy per benchmark, a bar per checkpoint, bootstrap intervals as error bars."""
    names = list(metrics)
    benchmarks = list(metrics[names[0]])
    fig = Figure(figsize=(max(4.0, 1.6 * len(benchmarks) * max(1, len(names)) / 2), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        cells = [metrics[name][b] for b in benchmarks]
        acc = np.array([c["accuracy"] for c in cells], dtype=float)  # [num_benchmarks]
        low = np.nan_to_num(acc - np.array([c["accuracy_ci_low"] for c in cells], dtype=float))
        high = np.nan_to_num(np.array([c["accuracy_ci_high"] for c in cells], dtype=float) - acc)
        ax.bar(np.arange(len(benchmarks)) + i * width, acc, width, yerr=[low, high], capsize=3, label=name)
    ax.set_xticks(np.arange(len(benchmarks)) + width * (len(names) - 1) / 2, benchmarks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.legend(fontsize=8)
    return fig


def attention_figure(evals: Sequence[Any]) -> Figure | None:
    """Distribution of attention-on-region over grounded answers, a box per checkpoint and benchmark."""
    groups = {}
    for e in evals:
        for bench in dict.fromkeys(r["benchmark"] for r in e.records):
            values = [
                r["region_attention"]
                for r in e.records
                if r["benchmark"] == bench and r["region_attention"] is not None
            ]
            if values:
                groups[f"{e.name}\n{bench}"] = values
    if not groups:
        return None
    fig = Figure(figsize=(max(4.0, 1.2 * len(groups)), 3.2))
    ax = fig.add_subplot()
    ax.boxplot(list(groups.values()), tick_labels=list(groups))
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of image attention on region")
    return fig


def curves_figure(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> Figure | None:
    """Training curves: a panel per metric, a line per stage."""
    keys = list(dict.fromkeys(k for stage in curves.values() for k in stage))
    if not keys:
        return None
    fig = Figure(figsize=(4.0 * len(keys), 3.0))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for stage, found in curves.items():
            if key in found:
                steps, values = zip(*found[key], strict=True)
                ax.plot(steps, values, label=stage)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return fig


def gallery_image(evals: Sequence[Any]) -> Image.Image | None:
    """Heatmaps of the same samples, a row per sample and a column per checkpoint."""
    by_name = [{item.sample_id: item for item in e.gallery} for e in evals]
    ids = [i for i in by_name[0] if all(i in g for g in by_name)] if by_name else []
    tiles = [(g[i].image, g[i].heat, g[i].boxes, f"{e.name}: {g[i].caption}")
             for i in ids for e, g in zip(evals, by_name, strict=True)]  # fmt: skip
    return heatmap_grid(tiles, columns=len(evals)) if tiles else None


def _figures(metrics: dict[str, Any], evals: Sequence[Any], curves: dict) -> dict[str, bytes]:
    figures: dict[str, bytes] = {"accuracy.png": _png(accuracy_figure(metrics))}
    for name, fig in (
        ("region_attention.png", attention_figure(evals)),
        ("training_curves.png", curves_figure(curves)),
    ):
        if fig is not None:
            figures[name] = _png(fig)
    gallery = gallery_image(evals)
    if gallery is not None:
        buffer = io.BytesIO()
        gallery.save(buffer, format="PNG")
        figures["heatmaps.png"] = buffer.getvalue()
    return figures


CAPTIONS = {
    "accuracy.png": "Accuracy per benchmark with bootstrap 95% intervals",
    "region_attention.png": "Attention on the annotated region (top-entropy response tokens), grounded samples",
    "training_curves.png": "Training curves of the latest sft/grpo runs",
    "heatmaps.png": "Where the answers look: the same samples for every checkpoint (columns)",
}


def write_report(
    out: Path,
    metrics: dict[str, Any],
    evals: Sequence[Any],
    curves: dict,
    not_run: Sequence[tuple[str, str, str]] = (),
) -> list[Path]:
    """Write `figures/*.png`, `report.md` and `report.html` under `out`; returns every path written.

    `not_run`: (name, where it was looked for, how to get it) of the sets skipped as missing.
    """
    figures = _figures(metrics, evals, curves)
    paths = [write_bytes(out / "figures" / name, data) for name, data in figures.items()]
    tables = [
        ("Comparison", *comparison_rows(metrics, not_run)),
        ("Accuracy per category", *category_rows(metrics)),
    ]
    if not_run:
        tables.append(
            ("Not run (missing)", ["benchmark", "looked for", "to get it"], [list(r) for r in not_run])
        )
    md = ["# sayo evaluation report", ""]
    body = ["<h1>sayo evaluation report</h1>"]
    for title, header, rows in tables:
        md += [f"## {title}", "", markdown_table(header, rows), ""]
        body += [f"<h2>{html.escape(title)}</h2>", html_table(header, rows)]
    for name, data in figures.items():
        md += [f"## {CAPTIONS[name]}", "", f"![{name}](figures/{name})", ""]
        encoded = base64.b64encode(data).decode()
        body += [
            f"<h2>{html.escape(CAPTIONS[name])}</h2>",
            f'<img alt="{name}" src="data:image/png;base64,{encoded}">',
        ]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>sayo evaluation</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    paths.append(write_text(out / "report.md", "\n".join(md)))
    paths.append(write_text(out / "report.html", page))
    return paths
