"""Validation of imported samples: every fault becomes a `Problem` with file, line and field.

Why one `Problem` type for every importer: a data build either fails with *all* its problems
listed (so a bad source is fixed in one pass, not one error per run) or, with `--skip-invalid`,
writes them to `rejected.jsonl` and goes on. The checks are those of docs/architecture.md ("Data
model"): the image must decode; each box must be four finite numbers with x2 > x1, y2 > y1, inside
the image; question and answer must be non-blank; the answer type must be known; ids are unique
(checked by the build, across sources). The schema's own pydantic checks run last, so nothing the
schema rejects slips through with a vaguer message.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image
from pydantic import ValidationError

from sayo.data.schema import AnswerType, Sample

IMAGES = "images"
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
ANSWER_TYPES = [t.value for t in AnswerType]


@dataclass(frozen=True)
class Problem:
    """One fault in the input: where (file, 1-based line or row; 0 = the whole file) and what."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (a row of `rejected.jsonl`)."""
        return asdict(self)


@dataclass(frozen=True)
class Dropped:
    """A row an importer leaves out by its documented rule (docs/data.md), not an input error.

    Why not a `Problem`: some sources hold rows that a documented rule excludes (a GQA question
    whose object cannot be resolved, a ReFocus row without focus areas, an authors' token range
    that left its grid); they must not fail the build, and must not vanish either: the build
    counts them per source and reason in `stats.json` and lists them in `dropped.jsonl`.
    """

    file: str
    line: int
    reason: str  # a short key, counted in stats.json ("no_referent", "no_focus_area", ...)
    detail: str  # what exactly, for dropped.jsonl
    source: str = ""  # the source's label (set by the importer)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (a row of `dropped.jsonl`)."""
        return asdict(self)


class DataValidationError(ValueError):
    """A build found invalid input; `problems` lists all of them (the message shows the first ones)."""

    def __init__(self, problems: list[Problem], shown: int = 50) -> None:
        self.problems = list(problems)
        lines = [str(problem) for problem in self.problems[:shown]]
        if len(self.problems) > shown:
            lines.append(f"... and {len(self.problems) - shown} more problem(s)")
        super().__init__(f"{len(self.problems)} invalid input problem(s):\n" + "\n".join(lines))


@dataclass
class Candidate:
    """What an importer read for one sample, before validation.

    `fields` holds the `Sample` fields other than `image`/`image_size`; `image` the raw image bytes.
    `group` is the key the split is hashed from (default: the id), so that samples which must not
    be separated (several expressions of one referred object) land in the same split. `extra` holds
    source columns the schema has no field for (a TSV's `ID`, `key`, `l2-category`): the dataset
    build drops them, benchmark metrics that need them read them (`sayo.evaluate.benchmarks`).
    """

    fields: dict[str, Any]
    image: bytes
    file: str
    line: int
    group: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredImage:
    """A decoded, content-addressed image: where it goes in the dataset and its size."""

    relpath: str  # "images/<sha256>.<ext>"
    data: bytes
    size: tuple[int, int]  # (width, height)


def inspect_image(data: bytes) -> StoredImage:
    """Decode `data` fully (so a truncated file fails here) and name it by its sha256."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            fmt, size = image.format or "", image.size
    ext = EXTENSIONS.get(fmt, fmt.lower() or "bin")
    return StoredImage(f"{IMAGES}/{hashlib.sha256(data).hexdigest()}.{ext}", data, size)


def bbox_problem(bbox: Any, size: tuple[int, int] | None) -> str | None:
    """Why `bbox` ([x1, y1, x2, y2] pixels) is invalid for an image of `size`, or None if it is fine."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f"bbox {bbox!r} must be a list of 4 numbers [x1, y1, x2, y2]"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bbox):
        return f"bbox {list(bbox)} must contain only numbers"
    if any(not math.isfinite(v) for v in bbox):
        return f"bbox {list(bbox)} has a NaN or infinite coordinate"
    x1, y1, x2, y2 = bbox
    if x2 == x1 or y2 == y1:
        return f"bbox {list(bbox)} has zero area"
    if x2 < x1 or y2 < y1:
        return f"bbox {list(bbox)} is inverted (needs x2 > x1 and y2 > y1)"
    if size is not None and (x1 < 0 or y1 < 0 or x2 > size[0] or y2 > size[1]):
        return f"bbox {list(bbox)} lies outside the {size[0]}x{size[1]} image"
    return None


def _field_problems(fields: dict[str, Any], size: tuple[int, int] | None) -> list[tuple[str, str]]:
    found = []
    for name in ("question", "answer"):
        value = fields.get(name)
        if value is None:
            found.append((name, f"missing {name}"))
        elif not isinstance(value, str) or not value.strip():
            found.append((name, f"empty {name}"))
    answer_type = fields.get("answer_type", AnswerType.EXACT.value)
    if answer_type not in ANSWER_TYPES:
        found.append(("answer_type", f"unknown answer type {answer_type!r}; expected one of {ANSWER_TYPES}"))
    regions = fields.get("regions", [])
    if not isinstance(regions, list):
        found.append(("regions", f"must be a list, got {type(regions).__name__}"))
        regions = []
    for i, region in enumerate(regions):
        bbox = region.get("bbox") if isinstance(region, dict) else None
        why = bbox_problem(bbox, size)
        if why:
            found.append((f"regions[{i}].bbox", why))
    return found


def check_candidate(
    candidate: Candidate, inspect: Callable[[bytes], StoredImage] = inspect_image
) -> tuple[Sample, StoredImage] | list[Problem]:
    """Validate one imported sample: the sample (image path set) and its image, or its problems.

    `inspect` decodes the image; a caller that sees one image many times may pass a memoised one.
    """

    def problem(field_name: str, message: str) -> Problem:
        return Problem(candidate.file, candidate.line, field_name, message)

    try:
        image: StoredImage | None = inspect(candidate.image)
    except Exception as error:  # PIL raises many types for bad bytes
        image = None
        found = [problem("image", f"unreadable image: {type(error).__name__}: {error}")]
    else:
        found = []
    found += [problem(name, message) for name, message in _field_problems(candidate.fields, _size(image))]
    if found or image is None:
        return found
    try:
        sample = Sample.model_validate({**candidate.fields, "image": image.relpath, "image_size": image.size})
    except ValidationError as error:
        return [
            problem(".".join(str(part) for part in item["loc"]) or "<sample>", item["msg"])
            for item in error.errors()
        ]
    return sample, image


def _size(image: StoredImage | None) -> tuple[int, int] | None:
    return image.size if image is not None else None
