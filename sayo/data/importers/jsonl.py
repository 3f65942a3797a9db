"""Importer for our own JSONL schema: one `Sample` per line, `image` a path to an image file.

Why a separate format from the dataset's `manifest.jsonl`: hand-made or exported annotation files
point at images wherever they are (relative to `images`, else to the JSONL file); the build copies
them into the content-addressed store and rewrites `image`. `image_size` is always measured from
the file, and `source` is set to the configured source name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.files import image_root, read_image
from sayo.data.validate import Candidate, Problem


def import_jsonl(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """One candidate per non-blank line of `source.path`."""
    del config  # the JSONL importer has no knobs beyond its source
    file, root = source.path, image_root(source.path, source.images)
    if not Path(file).is_file():
        yield Problem(file, 0, "<file>", "file not found")
        return
    with open(file, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield _parse_line(line, file, number, root, source.label)


def _parse_line(line: str, file: str, number: int, root: Path, label: str) -> Candidate | Problem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return Problem(file, number, "<line>", f"not valid JSON: {error.msg} (column {error.colno})")
    if not isinstance(row, dict):
        return Problem(file, number, "<line>", f"must be a JSON object, got {type(row).__name__}")
    if not isinstance(row.get("id"), str) or not row["id"].strip():
        return Problem(file, number, "id", f"missing or empty id (got {row.get('id')!r})")
    image = read_image(root, row.get("image"), file, number, "image")
    if isinstance(image, Problem):
        return image
    fields = {key: value for key, value in row.items() if key not in ("image", "image_size")}
    fields["source"] = label
    return Candidate(fields=fields, image=image, file=file, line=number)
