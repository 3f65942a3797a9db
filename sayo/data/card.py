"""The human-facing outputs of a build: `dataset_card.md` and `preview.png`.

Why: a dataset version is reviewed (in a pull request touching `dvc.lock`, or on the DVC remote)
by people who will not open the manifest; the card states where the data came from, how it was
mixed and split and what it contains, and the preview shows a few samples with their boxes and
questions so that a wrong box convention (xywh read as xyxy, say) is obvious at a glance.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw, ImageFont

from sayo.data.config import DataConfig
from sayo.data.schema import Sample
from sayo.viz import draw_regions

TILE = 224  # preview tile width in pixels
CAPTION_LINES = 4


def _table(title: str, counts: dict[str, int]) -> list[str]:
    rows = [f"| {title} | samples |", "| --- | ---: |"]
    rows += [f"| {key} | {value} |" for key, value in counts.items()]
    return [*rows, ""]


def _histogram_lines(name: str, hist: dict[str, Any]) -> list[str]:
    edges, counts = hist["edges"], hist["counts"]
    top = max(counts) or 1
    lines = [f"{name}:", "```"]
    for i, count in enumerate(counts):
        upper = f"{edges[i + 1]:g}" if i + 1 < len(edges) else "inf"
        lines.append(f"[{edges[i]:g}, {upper}) {count:7d} {'#' * round(30 * count / top)}")
    return [*lines, "```", ""]


def dataset_card(config: DataConfig, stats: dict[str, Any]) -> str:
    """Markdown describing the dataset: sources, mixing, splits, counts, box statistics, config."""
    sources = [
        f"- `{s.label}`: {s.type}"
        + (f" from `{Path(s.path).name}`" if s.path else "")
        + f", weight {s.weight:g}"
        for s in config.sources
    ]
    lines = [
        "# Dataset card",
        "",
        f"{stats['num_samples']} samples on {stats['num_images']} distinct images, "
        f"{stats['num_regions']} annotated regions; {stats['num_rejected']} input problem(s) rejected, "
        f"{stats.get('num_dropped', 0)} row(s) dropped by an importer's rule (`dropped.jsonl`).",
        "",
        "## Sources",
        *sources,
        "",
        "Weight w: each valid sample is kept floor(w) times plus once with probability frac(w) "
        "(seeded hash of source, id and copy); splits are hashed from the id (or its group), so "
        "adding samples never moves existing ones between splits.",
        "",
        "## Counts",
        *_table("split", stats["per_split"]),
        *_table("source", stats["per_source"]),
        *_table("answer type", stats["per_answer_type"]),
        "## Regions",
        *_histogram_lines("box side sqrt(w*h) in px", stats["box_side_px"]),
        *_histogram_lines("box area / image area", stats["box_area_fraction"]),
        "## Images",
        f"Widths {stats['image_width_range']}, heights {stats['image_height_range']}.",
        "",
        "## Config",
        "```yaml",
        yaml.safe_dump(_portable(asdict(config)), sort_keys=False).rstrip(),
        "```",
        "",
        "Load a split with `sayo.data.layout.load_split(directory, 'train')`.",
    ]
    return "\n".join(lines) + "\n"


def _portable(value: Any) -> Any:
    """The config as plain YAML types, with file paths reduced to their names (no machine paths)."""
    if isinstance(value, dict):
        return {
            k: Path(v).name if k in ("path", "images", "refs", "scene_graphs") and v else _portable(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    return value


def pick_preview(samples: Sequence[Sample], count: int) -> list[Sample]:
    """Up to `count` samples, taken round-robin over sources in manifest order (every source shows)."""
    by_source: dict[str, list[Sample]] = {}
    for sample in samples:
        by_source.setdefault(sample.source, []).append(sample)
    picked: list[Sample] = []
    queues = list(by_source.values())
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def _tile(sample: Sample, root: Path, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> Image.Image:
    with Image.open(root / sample.image) as image:
        boxed = draw_regions(image, sample.regions, labels=False)
    boxed = boxed.resize((TILE, max(1, round(boxed.height * TILE / boxed.width))), Image.Resampling.BILINEAR)
    options = " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(sample.choices or []))
    text = textwrap.wrap(f"{sample.question} {options} => {sample.answer}", width=36)[:CAPTION_LINES]
    tile = Image.new("RGB", (TILE, boxed.height + 14 * CAPTION_LINES + 4), (255, 255, 255))
    tile.paste(boxed, (0, 0))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(text):
        draw.text((3, boxed.height + 2 + 14 * i), line, font=font, fill=(0, 0, 0))
    return tile


def preview_grid(samples: Sequence[Sample], root: Path, columns: int = 4, padding: int = 4) -> Image.Image:
    """A grid of samples (image, boxes in magenta, question → answer) read from dataset `root`."""
    font = ImageFont.load_default(size=11)
    tiles = [_tile(sample, root, font) for sample in samples]
    if not tiles:
        return Image.new("RGB", (TILE, TILE), (255, 255, 255))
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    cell_h = max(tile.height for tile in tiles)
    out = Image.new(
        "RGB", (cols * (TILE + padding) + padding, rows * (cell_h + padding) + padding), (230, 230, 230)
    )
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        out.paste(tile, (padding + col * (TILE + padding), padding + row * (cell_h + padding)))
    return out
