"""Dataset statistics (`stats.json`): what a reviewer checks before training on a new version.

Why these numbers: the attention reward depends on how big the annotated regions are relative to
the image (a box covering half the picture makes "attention on the region" nearly free), so box
size and box-area-fraction histograms sit next to the usual counts per source, split and answer
type. Histograms use fixed bin edges, so two versions of a dataset compare bin by bin.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sayo.data.config import SPLIT_NAMES
from sayo.data.schema import Sample
from sayo.data.validate import Dropped

BOX_SIDE_EDGES = [0, 8, 16, 32, 64, 128, 256, 512, 1024]  # px; sqrt(box area); last bin is open
AREA_FRACTION_EDGES = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]  # box area / image area
REGION_COUNT_EDGES = [0, 1, 2, 3, 5, 10]


def histogram(values: Sequence[float], edges: Sequence[float]) -> dict[str, Any]:
    """Counts of `values` in [edges[i], edges[i+1]), the last bin open-ended: {"edges", "counts"}."""
    counts = [0] * len(edges)
    for value in values:
        counts[max(0, bisect.bisect_right(edges, value) - 1)] += 1
    return {"edges": list(edges), "counts": counts}


def _box_measures(samples: Sequence[Sample]) -> tuple[list[float], list[float]]:
    sides, fractions = [], []
    for sample in samples:
        width, height = sample.image_size or (0, 0)
        for region in sample.regions:
            x1, y1, x2, y2 = region.bbox
            area = (x2 - x1) * (y2 - y1)
            sides.append(math.sqrt(area))
            if width and height:
                fractions.append(area / (width * height))
    return sides, fractions


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _dropped(dropped: Sequence[Dropped]) -> dict[str, dict[str, int]]:
    by_source: dict[str, Counter[str]] = {}
    for row in dropped:
        by_source.setdefault(row.source or "-", Counter())[row.reason] += 1
    return {source: dict(sorted(counts.items())) for source, counts in sorted(by_source.items())}


def compute_stats(
    samples: Sequence[Sample], splits: Sequence[str], rejected: int = 0, dropped: Sequence[Dropped] = ()
) -> dict[str, Any]:
    """All of `stats.json` for `samples` (with `splits[i]` the split of `samples[i]`).

    `dropped` (rows importers left out by rule) are counted per source and reason.
    """
    sides, fractions = _box_measures(samples)
    sizes = [f"{s.image_size[0]}x{s.image_size[1]}" for s in samples if s.image_size]
    widths = [s.image_size[0] for s in samples if s.image_size]
    heights = [s.image_size[1] for s in samples if s.image_size]
    return {
        "num_samples": len(samples),
        "num_images": len({s.image for s in samples}),
        "num_regions": len(sides),
        "num_rejected": rejected,
        "num_dropped": len(dropped),
        "dropped": _dropped(dropped),
        "per_split": {name: sum(1 for s in splits if s == name) for name in SPLIT_NAMES},
        "per_source": _counts([s.source for s in samples]),
        "per_source_split": {
            source: _counts([split for s, split in zip(samples, splits, strict=True) if s.source == source])
            for source in sorted({s.source for s in samples})
        },
        "per_answer_type": _counts([s.answer_type.value for s in samples]),
        "per_category": _counts([s.category or "-" for s in samples]),
        "regions_per_sample": histogram([len(s.regions) for s in samples], REGION_COUNT_EDGES),
        "box_side_px": histogram(sides, BOX_SIDE_EDGES),
        "box_area_fraction": histogram(fractions, AREA_FRACTION_EDGES),
        "image_sizes": dict(Counter(sizes).most_common(20)),
        "image_width_range": [min(widths), max(widths)] if widths else None,
        "image_height_range": [min(heights), max(heights)] if heights else None,
    }
