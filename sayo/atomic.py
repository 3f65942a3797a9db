"""Atomic writes: a reader (DVC, a browser, a resumed run) never sees half a file or directory.

Files are written to a temporary file in the same directory, flushed, then renamed over the
target; directories are built next to the target and swapped in, so an interrupted write leaves
the previous version intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def write_with(
    path: str | os.PathLike[str], write: Callable[[IO[Any]], object], *, binary: bool = False
) -> Path:
    """Call `write(stream)` on a temporary file next to `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        stream: IO[Any] = os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8")
        with stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically."""
    return write_with(path, lambda stream: stream.write(text))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return write_with(path, lambda stream: stream.write(data), binary=True)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Strict JSON (no NaN), indented, keys in insertion order."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> Path:
    """One JSON object per line."""
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def swap_into_place(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the fully written directory `staging` (the old one is kept on failure)."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
