"""File helpers shared by the importers: reading an image or a JSON document into a `Problem` on failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sayo.data.validate import Problem


def image_root(source_path: str, images: str) -> Path:
    """Where relative image paths of a source are looked up: `images`, else the source file's directory."""
    return Path(images) if images else Path(source_path).parent


def read_image(root: Path, relpath: object, file: str, line: int, field: str) -> bytes | Problem:
    """The bytes of image `relpath` under `root`, or a `Problem` naming the missing/unreadable file."""
    if not isinstance(relpath, str) or not relpath.strip():
        return Problem(file, line, field, f"missing image path (got {relpath!r})")
    path = root / relpath
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Problem(file, line, field, f"image file not found: {path}")
    except OSError as error:
        return Problem(file, line, field, f"cannot read image file {path}: {error}")


def load_json(path: str) -> Any | Problem:
    """The parsed JSON document at `path`, or a `Problem` (missing file, invalid JSON with its line)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        return Problem(path, 0, "<file>", "file not found")
    except json.JSONDecodeError as error:
        return Problem(path, error.lineno, "<json>", f"not valid JSON: {error.msg} (column {error.colno})")
    except (OSError, UnicodeDecodeError) as error:
        return Problem(path, 0, "<file>", f"cannot read: {error}")
