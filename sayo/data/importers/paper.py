"""Importers for the paper's chart data: ReFocus (`refocus`) and the authors' own parquet (`paper_parquet`).

ReFocus (docs/data.md, "refocus"): the Hugging Face dataset `ReFocus/ReFocus_Data`, columns `id`,
`question`, `answer`, `image` and `focus_areas_bbox` (a sequence of {x1, y1, x2, y2} pixel boxes,
which `datasets` hands over as a dict of lists). Each focus area becomes a region (or only the
first, `areas: first`, as the authors' writers keep); a row without any area is dropped and
counted (`no_focus_area`), as the authors skip it.

The authors' parquet (docs/data.md, "The authors' parquet"): columns `id`, `type` ("chart" or
"img"), `question`, `answer`, `short_answer`, `image` (bytes) and `focus_area` (token ranges).
The box comes from inverting the declared writer's ranges (`sayo.data.importers.paper_grid`);
ranges that wrap, point past the grid or are ambiguous are dropped and counted, never mapped to a
box; malformed ranges are input errors. The answer is `short_answer` where the row has one (the
GQA rows: `answer` holds GQA's full sentence there), else `answer`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from PIL import Image

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.hf import column_map, import_mapped
from sayo.data.importers.hf_open import Part
from sayo.data.importers.paper_grid import ranges_to_box, writer_grid
from sayo.data.validate import Candidate, Dropped, Problem

REFOCUS_COLUMNS = {"bbox": "focus_areas_bbox"}
PAPER_COLUMNS = {"category": "type", "bbox": "focus_area"}
DEFECTS = {"wraps": "range_wraps", "points past": "range_past_grid", "ambiguous": "range_ambiguous"}


def import_refocus(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem | Dropped]:
    """One candidate per ReFocus row with focus areas (of the selected rows, if `select_fraction`)."""
    del config
    bbox = column_map(source, REFOCUS_COLUMNS)["bbox"]

    def finish(candidate: Candidate, row: dict[str, Any], part: Part, number: int) -> Candidate | Dropped:
        regions = candidate.fields["regions"]
        if not regions:
            return Dropped(part.where, number, "no_focus_area", f"{bbox} holds no area", source.label)
        if source.areas == "first":
            candidate.fields["regions"] = regions[:1]
        return candidate

    yield from import_mapped(source, column_map(source, REFOCUS_COLUMNS), ("bbox",), finish)


def import_paper_parquet(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem | Dropped]:
    """One candidate per row of the authors' parquet whose token ranges invert to one box."""
    del config
    mapping = column_map(source, PAPER_COLUMNS)
    ranges_column = mapping.pop("bbox")  # read here, not as pixel boxes

    def finish(
        candidate: Candidate, row: dict[str, Any], part: Part, number: int
    ) -> Candidate | Problem | Dropped:
        try:
            with Image.open(io.BytesIO(candidate.image)) as image:
                size = image.size
        except Exception:  # the image check reports it, with PIL's reason
            return candidate
        grid = writer_grid(source.writer, *size)
        if isinstance(grid, str):
            return Problem(part.where, number, mapping["image"], grid)
        box = ranges_to_box(row.get(ranges_column), grid)
        if isinstance(box, str):
            reason = next((key for text, key in DEFECTS.items() if text in box), None)
            if reason is None:
                return Problem(part.where, number, ranges_column, box)
            return Dropped(part.where, number, reason, f"{ranges_column}: {box}", source.label)
        candidate.fields["regions"] = [{"bbox": box}]
        short = row.get("short_answer")
        if isinstance(short, str) and short.strip():
            candidate.fields["answer"] = short
            candidate.fields["answer_type"] = "exact"
        return candidate

    yield from import_mapped(source, mapping, (), finish, raw=(ranges_column,))
