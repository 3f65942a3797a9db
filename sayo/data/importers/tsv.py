"""Importer for VLMEvalKit-style TSV benchmarks: base64 `image`, `question`, `answer`, options A–J.

Why: most multimodal benchmarks are distributed in this one layout (VLMEvalKit's `*.tsv`), so
evaluation sets with boxes (or our own exports) come in without conversion scripts. Rules
*[ours]*: a row with any non-empty option column (A–J, as many as the prompt can letter) is
multiple choice (`answer` must be one of the option letters); without option columns, a `choices`
column holding a Python list literal (MATH-Vision's layout) gives the options; otherwise
`answer_type` comes from an `answer_type` column if present, else "number" when the answer parses
as a number, else "exact". The optional `bbox` column holds one box or a list of boxes as JSON, in
`bbox_format` (xyxy or xywh). Row numbers are file lines (the header is line 1). Columns the
sample schema has no field for (`ID`, `key`, `l2-category`, `hint`, …) travel as
`Candidate.extra`, for metrics that need them (docs/evaluation.md).

Image references (MMBench's layout): an `image` cell of at most 64 characters that equals another
row's `index` stands for that row's image, as VLMEvalKit reads it, so a question asked about one
image several times stores it once. References are followed through chains (VLMEvalKit resolves a
chain only when the rows happen to come in the right order; any file it accepts reads the same
here); a reference to a missing index, to the row itself, around a cycle or to an empty image cell
is a problem on the referring row. A short cell that is no index is read as base64 as before; one
of digits only is reported as a reference to a missing index. Finding references costs one extra
read of the file (only index and image cells are looked at), and a third read, of the referenced
rows only, when a row refers forward.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.coco import xywh_to_xyxy
from sayo.data.validate import Candidate, Problem

OPTION_LETTERS = tuple("ABCDEFGHIJ")  # as many as `sayo.prompts.OPTION_LETTERS` can show
REQUIRED = ("image", "question", "answer")
MISSING = ("", "nan", "none")  # what pandas writes for an empty option cell
MAX_REFERENCE = 64  # VLMEvalKit: an image cell this short holds another row's index, not an image
CONSUMED = {"image", "question", "answer", "bbox", "choices", *OPTION_LETTERS}  # not copied into `extra`


def import_tsv(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """One candidate per data row of `source.path`."""
    del config
    file = source.path
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default limit
    if not Path(file).is_file():
        yield Problem(file, 0, "<file>", "file not found")
        return
    with open(file, encoding="utf-8", newline="") as stream:
        fieldnames = next(csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE), [])
    missing = [name for name in REQUIRED if name not in fieldnames]
    if missing:
        yield Problem(file, 1, "<header>", f"missing column(s) {missing}; found {fieldnames}")
        return
    references = _find_references(file, fieldnames)
    cells = _read_cells(file, references.forward)  # images referred to before their own row
    with open(file, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            line = reader.line_num
            index = _row_index(row, line)
            if index in references.targets and index not in cells and line == references.lines.get(index):
                cells[index] = (row.get("image") or "").strip()
            yield _row_candidate(row, file, line, source, references.image_cell(index, line, cells))


@dataclass
class _References:
    """What the first read found: where each index is, and what each referring row resolves to."""

    lines: dict[str, int] = field(default_factory=dict)  # index → line of its first row
    resolved: dict[int, str | Problem] = field(default_factory=dict)  # line → target index, or why not
    targets: set[str] = field(default_factory=set)  # indices whose image cell is referred to
    forward: set[str] = field(default_factory=set)  # ... by a row above them

    def image_cell(self, index: str, line: int, cells: dict[str, str]) -> tuple[str, str | Problem | None]:
        """(index, the row's own cell) or (target index, its cell) or the reference's problem."""
        target = self.resolved.get(line)
        if target is None:
            return index, None
        if isinstance(target, Problem):
            return index, target
        return target, cells[target]


def _row_index(row: dict[Any, Any], line: int) -> str:
    return (row.get("index") or "").strip() or str(line)


def _find_references(file: str, fieldnames: list[str]) -> _References:
    """First read: every row's index and line, and the short image cells resolved to data rows."""
    found = _References()
    short: dict[int, tuple[str, str]] = {}  # line → (index, cell) of cells short enough to be references
    empty: set[str] = set()
    for line, index, cell in _scan(file, fieldnames):
        found.lines.setdefault(index, line)
        if cell == "":
            empty.add(index)
        elif cell is not None:
            short[line] = (index, cell)
    own: dict[str, str] = {}  # index → its short cell (first row of the index)
    for index, cell in short.values():
        own.setdefault(index, cell)
    for line, (index, cell) in short.items():
        if cell not in found.lines:
            if cell.isdigit():  # no base64 of an image is this short and all digits
                found.resolved[line] = Problem(
                    file, line, "image", f"refers to index {cell!r}, which no row has"
                )
            continue
        target = _follow(file, line, index, cell, own, found, empty)
        found.resolved[line] = target
        if isinstance(target, str):
            found.targets.add(target)
            if line < found.lines[target]:
                found.forward.add(target)
    return found


def _scan(file: str, fieldnames: list[str]) -> Iterator[tuple[int, str, str | None]]:
    """(line, index, stripped image cell or None when longer than a reference) of every data row.

    Reads raw lines instead of csv rows so that the long image cells are measured, never copied:
    with `QUOTE_NONE` a row is one line and its cells are split by tabs, exactly as csv reads it.
    """
    image_column = fieldnames.index("image")
    index_column = fieldnames.index("index") if "index" in fieldnames else None
    with open(file, encoding="utf-8", newline="") as stream:
        next(stream, None)  # the header
        for line, text in enumerate(stream, start=2):
            stop = len(text)
            while stop and text[stop - 1] in "\r\n":
                stop -= 1
            if not stop:
                continue  # csv skips blank lines too
            index = str(line)
            if index_column is not None:
                bounds = _cell_bounds(text, index_column, stop)
                index = text[bounds[0] : bounds[1]].strip() if bounds else ""
                index = index or str(line)
            bounds = _cell_bounds(text, image_column, stop)
            if bounds is None or bounds[1] - bounds[0] > MAX_REFERENCE + 64:  # room for surrounding spaces
                yield line, index, None if bounds else ""
                continue
            cell = text[bounds[0] : bounds[1]].strip()
            yield line, index, cell if len(cell) <= MAX_REFERENCE else None


def _cell_bounds(text: str, column: int, stop: int) -> tuple[int, int] | None:
    """Start and end of tab-separated cell `column` in `text[:stop]`, or None when the row is shorter."""
    start = 0
    for _ in range(column):
        start = text.find("\t", start, stop) + 1
        if start == 0:
            return None
    end = text.find("\t", start, stop)
    return start, stop if end < 0 else end


def _follow(
    file: str, line: int, index: str, cell: str, own: dict[str, str], found: _References, empty: set[str]
) -> str | Problem:
    """The index of the row whose image cell holds the data `cell` leads to, through chains.

    `own` maps indices to their short image cells; a short cell that is some row's index is a
    reference.
    """
    if cell == index:
        return Problem(file, line, "image", f"refers to its own index {index!r}")
    path = [index, cell]
    while path[-1] in own and own[path[-1]] in found.lines:
        step = own[path[-1]]
        if step in path:
            cycle = " -> ".join([*path[path.index(step) :], step])
            return Problem(file, line, "image", f"image references form a cycle: {cycle}")
        path.append(step)
    if path[-1] in empty:
        return Problem(file, line, "image", f"refers to index {path[-1]!r}, whose image cell is empty")
    return path[-1]


def _read_cells(file: str, wanted: set[str]) -> dict[str, str]:
    """The image cells of the rows with index in `wanted` (their first rows), in one more read."""
    cells: dict[str, str] = {}
    if not wanted:
        return cells
    with open(file, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            index = _row_index(row, reader.line_num)
            if index in wanted and index not in cells:
                cells[index] = (row.get("image") or "").strip()
    return cells


def _row_candidate(
    row: dict[Any, Any],
    file: str,
    line: int,
    source: SourceConfig,
    image_cell: tuple[str, str | Problem | None],
) -> Candidate | Problem:
    def problem(field_name: str, message: str) -> Problem:
        return Problem(file, line, field_name, message)

    if None in row:  # csv puts cells beyond the header under the key None
        return problem("<row>", "has more cells than the header")
    origin, cell = image_cell
    if isinstance(cell, Problem):
        return cell
    referred = cell is not None
    text = cell if cell is not None else (row.get("image") or "").strip()
    where = f" (the image of index {origin!r}, which this row refers to)" if referred else ""
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        return problem("image", f"undecodable base64{where}: {error}")
    if not image:
        return problem("image", "empty image cell")
    regions = _regions(row.get("bbox"), source.bbox_format)
    if isinstance(regions, str):
        return problem("bbox", regions)
    index = _row_index(row, line)
    fields: dict[str, Any] = {
        "id": f"{source.label}-{index}",
        "question": row.get("question") or "",
        "answer": (row.get("answer") or "").strip(),
        "regions": regions,
        "source": source.label,
        "category": (row.get("category") or "").strip(),
    }
    choice = _choice_fields(row, fields["answer"])
    if isinstance(choice, tuple):
        return problem(*choice)
    fields.update(choice)
    extra = {str(k): (v or "").strip() for k, v in row.items() if k not in CONSUMED}
    return Candidate(fields=fields, image=image, file=file, line=line, extra=extra)


def _choices(row: dict[str, Any]) -> list[str]:
    options = [(row.get(letter) or "").strip() for letter in OPTION_LETTERS]
    while options and options[-1].lower() in MISSING:
        options.pop()
    return options


def _listed_choices(cell: Any) -> list[str] | str:
    """Options from a `choices` cell holding a Python list literal; [] when empty; why not, if unreadable."""
    text = (cell or "").strip()
    if not text or text.lower() in MISSING:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return f"cannot read choices {text[:80]!r}: expected a list literal such as ['3', '4']"
    if not isinstance(value, (list, tuple)) or len(value) > len(OPTION_LETTERS):
        return f"choices {text[:80]!r} must be a list of at most {len(OPTION_LETTERS)} options"
    return [str(v).strip() for v in value]


def _choice_fields(row: dict[str, Any], answer: str) -> dict[str, Any] | tuple[str, str]:
    """The answer-type fields of a row, or (field, message) when they are inconsistent."""
    choices: list[str] | str = _choices(row)
    if not choices and "choices" in row:
        choices = _listed_choices(row["choices"])
        if isinstance(choices, str):
            return "choices", choices
    if choices:
        letters = OPTION_LETTERS[: len(choices)]
        if answer.upper() not in letters:
            return "answer", f"answer {answer!r} is not one of the option letters {list(letters)}"
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
