"""Importer for Hugging Face datasets: any on-disk form `datasets` reads, mapped column by column.

Why a column map and no guessing: datasets name their fields differently (`query`/`question`,
`label`/`answer`, `bbox`/`boxes`), and a box's convention cannot be told from its numbers (is
`[10, 20, 30, 40]` xyxy or xywh?). `columns` maps sayo's fields to the dataset's columns (the
default maps each field to the column of the same name); a column named in `columns` must exist,
a default one is used when present. `bbox_format` declares the boxes' convention. See
docs/data.md for every accepted cell form.

Rows *[ours]*: the image cell is a decoded image, bytes, `{"bytes", "path"}` (the `Image` feature,
read undecoded so the stored bytes are the dataset's own), or a path relative to the dataset (the
`images` field overrides where). An `options` list makes the row multiple choice (the answer is
an option letter or an option's text, stored as the letter); else `answer_type` comes from its
column, else "number" when the answer parses as a number, else "exact". A list answer (several
accepted answers) keeps its first as the answer and all of them in `extra["answers"]`. Columns
without a sayo field travel in `Candidate.extra` (scalars as text, lists as JSON).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from sayo.data.config import HF_FIELDS, DataConfig, SourceConfig
from sayo.data.importers.files import read_image
from sayo.data.importers.hf_open import Part, open_parts
from sayo.data.importers.tsv import OPTION_LETTERS
from sayo.data.validate import Candidate, Dropped, Problem

REQUIRED = ("image", "question", "answer")
BOX_KEYS = {"xyxy": ("x1", "y1", "x2", "y2"), "xywh": ("x", "y", "w", "h")}  # dict-of-lists boxes


def column_map(source: SourceConfig, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """sayo field -> column: each field's own name, then `defaults` (a known dataset's), then `columns`."""
    return {**{name: name for name in HF_FIELDS}, **(defaults or {}), **source.columns}


def import_hf(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem | Dropped]:
    """One candidate per row of every part (file, or the split of a directory/cached dataset)."""
    del config
    yield from import_mapped(source, column_map(source))


Finish = Callable[[Candidate, dict[str, Any], Part, int], "Candidate | Problem | Dropped"]


def import_mapped(
    source: SourceConfig,
    mapping: dict[str, str],
    explicit: tuple[str, ...] = (),
    finish: Finish | None = None,
    raw: tuple[str, ...] = (),
) -> Iterator[Candidate | Problem | Dropped]:
    """Rows of `source` read through `mapping`; fields in `explicit` (or `source.columns`) must exist.

    `raw` names further columns that must exist (read by `finish` itself).
    `finish` completes a candidate from its raw row (a dataset-specific importer's own fields);
    with `source.select_fraction`, only the rows `selected_rows` picks are read.
    """
    required = {*REQUIRED, *explicit, *source.columns}
    keep = selected_rows(source) if source.select_fraction else None
    index = -1
    for part in open_parts(source):
        if isinstance(part, Problem):
            yield part
            continue
        missing = [
            f"{f} (column {c!r})" for f, c in mapping.items() if f in required and c not in part.columns
        ]
        missing += [f"column {c!r}" for c in raw if c not in part.columns]
        if missing:
            yield Problem(part.where, 0, "<columns>", f"missing {', '.join(missing)}; found {part.columns}")
            continue
        used = {f: c for f, c in mapping.items() if c in part.columns}
        for number, row in _rows(part):
            index += 1
            if isinstance(row, Problem):
                yield row
            elif keep is None or index in keep:
                result = row_candidate(row, used, part, number, source)
                yield (
                    finish(result, row, part, number) if finish and isinstance(result, Candidate) else result
                )


def _rows(part: Part) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    number = 0
    while True:
        try:
            row = next(part.rows, None)
        except Exception as error:  # a corrupt file stops its part, reported where it broke
            yield (
                number + 1,
                Problem(part.where, number + 1, "<row>", f"unreadable: {type(error).__name__}: {error}"),
            )
            return
        if row is None:
            return
        number += 1
        yield number, row


def selected_rows(source: SourceConfig) -> set[int]:
    """Row indices (over all parts, in order) in the test part of `train_test_split` as configured.

    The authors select ReFocus rows with `train_test_split(test_size=0.25, seed=42)["test"]`; that
    split depends only on the number of rows and the seed, so it is taken here on a table of row
    indices with `datasets` itself, and equals theirs on the same rows in the same order.
    """
    import datasets

    total = sum(part.num_rows() for part in open_parts(source) if isinstance(part, Part))
    if total < 2:
        return set(range(total))
    indices = datasets.Dataset.from_dict({"i": list(range(total))})
    split = indices.train_test_split(test_size=source.select_fraction, seed=source.select_seed)
    return set(split["test"]["i"])


def row_candidate(
    row: dict[str, Any], used: dict[str, str], part: Part, number: int, source: SourceConfig
) -> Candidate | Problem:
    """The candidate of one row (`used`: sayo field -> existing column)."""

    def problem(field: str, message: str) -> Problem:
        return Problem(part.where, number, used.get(field, field), message)

    root = Path(source.images) if source.images else part.root
    image = image_bytes(row[used["image"]], root, part.where, number, used["image"])
    if isinstance(image, Problem):
        return image
    regions = read_boxes(row.get(used.get("bbox", "")), source.bbox_format, image)
    if isinstance(regions, str):
        return problem("bbox", regions)
    fields: dict[str, Any] = {
        "id": f"{source.label}-{_row_id(row, used, part, number)}",
        "question": row[used["question"]],
        "regions": [{"bbox": box} for box in regions],
        "source": source.label,
        "category": _text(row.get(used.get("category", ""))),
    }
    answer, extra = _answer(row[used["answer"]])
    choice = _answer_fields(answer, row.get(used.get("options", "")), row.get(used.get("answer_type", "")))
    if isinstance(choice, str):
        return problem("answer", choice)
    fields.update(choice)
    consumed = set(used.values())
    for key, value in row.items():
        text = _extra(value) if key not in consumed else None
        if text is not None:
            extra[str(key)] = text
    return Candidate(fields=fields, image=image, file=part.where, line=number, extra=extra)


def _row_id(row: dict[str, Any], used: dict[str, str], part: Part, number: int) -> str:
    value = row.get(used.get("id", ""))
    return str(value).strip() if value is not None and str(value).strip() else f"{part.stem}-{number}"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _extra(value: Any) -> str | None:
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    if isinstance(value, (list, dict)):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return None
    return None


def image_bytes(cell: Any, root: Path, where: str, number: int, column: str) -> bytes | Problem:
    """The encoded image of a cell: bytes, {"bytes", "path"}, a path under `root`, or a decoded image."""
    if isinstance(cell, dict):
        cell = cell.get("bytes") or cell.get("path")
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell) if cell else Problem(where, number, column, "empty image bytes")
    if isinstance(cell, str):
        return read_image(root, cell, where, number, column)
    if isinstance(cell, Image.Image):
        buffer = io.BytesIO()
        cell.save(buffer, format="PNG")  # lossless: the pixels the dataset holds
        return buffer.getvalue()
    return Problem(where, number, column, f"no image in the cell (got {type(cell).__name__})")


def read_boxes(cell: Any, bbox_format: str, image: bytes) -> list[list[float]] | str:
    """Boxes of a cell as [x1, y1, x2, y2] pixels, or why not: one box, a list, or a dict of lists."""
    if cell is None or (isinstance(cell, (list, dict)) and not cell):
        return []
    base = bbox_format.removesuffix("_norm")
    if isinstance(cell, dict):
        keys = BOX_KEYS[base]
        if not all(isinstance(cell.get(k), list) for k in keys):
            return (
                f"a dict of boxes needs lists {list(keys)} (bbox_format {bbox_format!r}); got {sorted(cell)}"
            )
        cell = [list(values) for values in zip(*(cell[k] for k in keys), strict=False)]
        if not cell:
            return []
    if not isinstance(cell, list):
        return f"boxes must be a list of 4 numbers or a list of boxes, got {type(cell).__name__}"
    if isinstance(cell[0], dict):  # a list of {x1, y1, x2, y2} (a parquet read without its features)
        keys = BOX_KEYS[base]
        cell = [[box.get(k) for k in keys] if isinstance(box, dict) else box for box in cell]
    boxes = cell if isinstance(cell[0], (list, tuple)) else [cell]
    scale = (1.0, 1.0)
    if bbox_format.endswith("_norm"):
        try:
            with Image.open(io.BytesIO(image)) as opened:
                scale = (float(opened.size[0]), float(opened.size[1]))
        except Exception as error:
            return f"normalised boxes need the image size, and the image does not open: {error}"
    out = []
    for box in boxes:
        converted = _to_xyxy(box, base, scale)
        if isinstance(converted, str):
            return converted
        out.append(converted)
    return out


def _to_xyxy(box: Any, base: str, scale: tuple[float, float]) -> list[float] | str:
    if (
        not isinstance(box, (list, tuple))
        or len(box) != 4
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in box)
    ):
        return f"box {box!r} must be 4 numbers ({base})"
    a, b, c, d = (float(v) for v in box)
    if base == "xywh":
        if c <= 0 or d <= 0:
            return f"box {list(box)} (x, y, w, h) has w or h <= 0"
        c, d = a + c, b + d
    return [a * scale[0], b * scale[1], c * scale[0], d * scale[1]]


def _answer(cell: Any) -> tuple[Any, dict[str, str]]:
    """(the answer, extra): a list of accepted answers keeps its first; numbers become text."""
    if isinstance(cell, list):
        accepted = [str(a) for a in cell]
        return (accepted[0] if accepted else None), {"answers": json.dumps(accepted)}
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return str(cell), {}
    return cell, {}


def _answer_fields(answer: Any, options: Any, answer_type: Any) -> dict[str, Any] | str:
    """answer, answer_type and choices of a row, or why the answer does not fit its options."""
    if isinstance(options, list) and options:
        choices = [str(o).strip() for o in options]
        if len(choices) > len(OPTION_LETTERS):
            return f"{len(choices)} options; at most {len(OPTION_LETTERS)} can be lettered"
        letters = OPTION_LETTERS[: len(choices)]
        text = _text(answer)
        if text.upper() in letters:
            letter = text.upper()
        elif text in choices:
            letter = letters[choices.index(text)]
        else:
            return f"answer {text!r} is neither an option letter {list(letters)} nor an option's text"
        return {"answer": letter, "answer_type": "choice", "choices": choices}
    if _text(answer_type):
        return {"answer": answer, "answer_type": _text(answer_type)}
    try:
        float(_text(answer))
    except ValueError:
        return {"answer": answer, "answer_type": "exact"}
    return {"answer": answer, "answer_type": "number"}
