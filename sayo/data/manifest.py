"""Reading a manifest (`Sample` per JSON line): one reader for every producer and every stage.

Why its own module: the synthetic generator writes manifests and `sayo.data.layout` reads a built
dataset's splits; both import this reader from here, so the stages never import the generator
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from sayo.data.schema import Sample


def load_manifest(path: Path) -> list[Sample]:
    """Read a manifest.jsonl; a bad row raises ValueError naming the file, line and field."""
    path = Path(path)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            sample = _parse_row(path, number, line)
            if sample.id in seen:
                first = seen[sample.id]
                raise ValueError(
                    f"{path}, line {number}, field 'id': duplicate id {sample.id!r} (first on line {first})"
                )
            seen[sample.id] = number
            samples.append(sample)
    return samples


def _parse_row(path: Path, number: int, line: str) -> Sample:
    try:
        return Sample.model_validate(json.loads(line))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {number}: not valid JSON: {error}") from error
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "<sample>"
        raise ValueError(
            f"{path}, line {number}, field {field!r}: {first['msg']} ({error.error_count()} error(s))"
        ) from error
