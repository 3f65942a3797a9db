"""Importer for VLMEvalKit-style TSV benchmarks: base64 `image`, `question`, `answer`, options A–D.

Why: most multimodal benchmarks are distributed in this one layout (VLMEvalKit's `*.tsv`), so
evaluation sets with boxes (or our own exports) come in without conversion scripts. Rules
*[ours]*: a row with any non-empty option column is multiple choice (`answer` must be one of the
option letters); otherwise `answer_type` comes from an `answer_type` column if present, else
"number" when the answer parses as a number, else "exact". The optional `bbox` column holds one
box or a list of boxes as JSON, in `bbox_format` (xyxy or xywh). Row numbers are file lines (the
header is line 1).
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.coco import xywh_to_xyxy
from sayo.data.validate import Candidate, Problem

OPTION_LETTERS = ("A", "B", "C", "D")
REQUIRED = ("image", "question", "answer")
MISSING = ("", "nan", "none")  # what pandas writes for an empty option cell


def import_tsv(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """One candidate per data row of `source.path`."""
    del config
    file = source.path
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default limit
    if not Path(file).is_file():
        yield Problem(file, 0, "<file>", "file not found")
        return
    with open(file, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            yield Problem(file, 1, "<header>", f"missing column(s) {missing}; found {reader.fieldnames}")
            return
        for row in reader:
            yield _row_candidate(row, file, reader.line_num, source)


def _row_candidate(row: dict[Any, Any], file: str, line: int, source: SourceConfig) -> Candidate | Problem:
    def problem(field: str, message: str) -> Problem:
        return Problem(file, line, field, message)

    if None in row:  # csv puts cells beyond the header under the key None
        return problem("<row>", "has more cells than the header")
    try:
        image = base64.b64decode((row.get("image") or "").strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        return problem("image", f"undecodable base64: {error}")
    if not image:
        return problem("image", "empty image cell")
    regions = _regions(row.get("bbox"), source.bbox_format)
    if isinstance(regions, str):
        return problem("bbox", regions)
    index = (row.get("index") or "").strip() or str(line)
    fields: dict[str, Any] = {
        "id": f"{source.label}-{index}",
        "question": row.get("question") or "",
        "answer": (row.get("answer") or "").strip(),
        "regions": regions,
        "source": source.label,
        "category": (row.get("category") or "").strip(),
    }
    choice = _choice_fields(row, fields["answer"])
    if isinstance(choice, str):
        return problem("answer", choice)
    fields.update(choice)
    return Candidate(fields=fields, image=image, file=file, line=line)


def _choices(row: dict[str, Any]) -> list[str]:
    options = [(row.get(letter) or "").strip() for letter in OPTION_LETTERS]
    while options and options[-1].lower() in MISSING:
        options.pop()
    return options


def _choice_fields(row: dict[str, Any], answer: str) -> dict[str, Any] | str:
    choices = _choices(row)
    if choices:
        letters = OPTION_LETTERS[: len(choices)]
        if answer.upper() not in letters:
            return f"answer {answer!r} is not one of the option letters {list(letters)}"
        return {"answer_type": "choice", "choices": choices, "answer": answer.upper()}
    if (row.get("answer_type") or "").strip():
        return {"answer_type": row["answer_type"].strip()}
    try:
        float(answer)
    except ValueError:
        return {"answer_type": "exact"}
    return {"answer_type": "number"}


def _regions(cell: Any, bbox_format: str) -> list[dict[str, Any]] | str:
    """Regions from a bbox cell (one box or a list of boxes, JSON), or why the cell is unreadable."""
    text = (cell or "").strip()
    if not text or text.lower() in MISSING:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"cannot parse bbox {text!r}: {error.msg}"
    if not isinstance(value, list) or not value:
        return f"bbox {text!r} must be a box [x1, y1, x2, y2] or a list of boxes"
    boxes = value if isinstance(value[0], list) else [value]
    if bbox_format == "xywh":
        boxes = [xywh_to_xyxy(box) for box in boxes]
    return [{"bbox": box} for box in boxes]
