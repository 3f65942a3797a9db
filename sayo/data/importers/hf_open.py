"""Opening a Hugging Face dataset as a stream of rows, wherever it lies on disk (docs/data.md, "hf").

Why a stream: a source of 200k rows with images must not be held in memory; `datasets` reads
parquet/arrow/jsonl files in batches (`streaming=True`) and memory-maps `save_to_disk` arrow files,
so a row is in memory only while it is imported. Why no network: a build must give the same data
on a cluster node without internet; a dataset named by `dataset` is looked up in the local HF hub
cache only, and a missing one is a problem that says where it looked and how to get it.

Where a row is: files (a file or a glob) are opened one by one, so a problem names the file and its
1-based row; a directory (`save_to_disk`, or a dataset repository's layout) names the directory and
the split: `dir[test]:12` is row 12 (`ds[11]`) of split `test`.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayo.data.config import SourceConfig
from sayo.data.validate import Problem

BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json"}
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # what save_to_disk writes


@dataclass
class Part:
    """One stream of rows: where it is (for messages), its column names, and the rows."""

    where: str  # a file, or "<dir>[<split>]"
    columns: list[str]
    rows: Iterator[dict[str, Any]]
    root: Path  # relative image paths are looked up here
    stem: str  # distinguishes row-number ids of different files
    known_rows: int | None = None  # the row count, when the format records it

    def num_rows(self) -> int:
        """How many rows the part has: recorded, else counted (which reads the rows)."""
        if self.known_rows is None:
            self.known_rows = sum(1 for _ in self.rows)
        return self.known_rows


def open_parts(source: SourceConfig) -> Iterator[Part | Problem]:
    """The parts of `source`, every image column left undecoded ({"bytes", "path"}).

    Undecoded because the build stores the dataset's own bytes, and an image column no field
    maps to (ReFocus's `edited_image`) is then never decoded at all.
    """
    try:
        import datasets
    except ImportError:
        yield Problem(source.path or source.dataset, 0, "type", "needs `datasets`: pip install 'sayo[data]'")
        return
    datasets.disable_progress_bars()
    if source.dataset:
        yield _from_cache(source)
        return
    path = Path(source.path)
    if path.is_dir():
        saved = any((path / marker).is_file() for marker in SAVED_MARKERS)
        yield _from_saved(source, path) if saved else _from_dir(source, path)
        return
    files = sorted(glob.glob(source.path)) if glob.has_magic(source.path) else [source.path]
    if not files or not Path(files[0]).exists():
        yield Problem(source.path, 0, "path", "no such file, directory or glob match")
        return
    if source.split != "train":
        yield Problem(source.path, 0, "split", f"files have one split, 'train'; got {source.split!r}")
        return
    for file in files:
        yield _from_file(file)


def _from_file(file: str) -> Part | Problem:
    import datasets  # the `data` extra: imported only when an hf source is read
    import pyarrow.parquet as pq

    builder = BUILDERS.get(Path(file).suffix.lower())
    if builder is None:
        return Problem(file, 0, "path", f"unknown file type; expected one of {sorted(BUILDERS)}")
    try:
        stream = datasets.load_dataset(builder, data_files=[file], split="train", streaming=True)
        part = _part(stream, file, Path(file).parent, Path(file).stem)
        if builder == "parquet":
            part.known_rows = pq.ParquetFile(file).metadata.num_rows
        return part
    except Exception as error:
        return Problem(file, 0, "<file>", f"cannot read as {builder}: {type(error).__name__}: {error}")


def _from_saved(source: SourceConfig, path: Path) -> Part | Problem:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:
        return Problem(str(path), 0, "<dataset>", f"cannot load_from_disk: {type(error).__name__}: {error}")
    if isinstance(loaded, datasets.DatasetDict):
        if source.split not in loaded:
            return Problem(str(path), 0, "split", f"no split {source.split!r}; available: {sorted(loaded)}")
        loaded = loaded[source.split]
    where = f"{path}[{source.split}]"
    part = _part(loaded.to_iterable_dataset(), where, path, source.split)
    part.known_rows = len(loaded)
    return part


def _from_dir(source: SourceConfig, path: Path) -> Part | Problem:
    """A directory laid out as a dataset repository (data files, perhaps a README with configs)."""
    import datasets

    where = f"{path}[{source.split}]"
    try:
        stream = datasets.load_dataset(
            str(path), name=source.subset or None, split=source.split, streaming=True
        )
    except ValueError as error:
        field = "split" if "split" in str(error).lower() else "subset"
        return Problem(str(path), 0, field, str(error))
    except Exception as error:
        return Problem(str(path), 0, "<dataset>", f"cannot load: {type(error).__name__}: {error}")
    return _part(stream, where, path, source.split)


def hub_cache() -> str:
    """The HF hub cache directory, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _from_cache(source: SourceConfig) -> Part | Problem:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache()
    try:
        local = snapshot_download(source.dataset, repo_type="dataset", cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as error:
        how = (
            f"download it where there is network with `hf download {source.dataset} --repo-type dataset` "
            f"(same HF_HOME/HF_HUB_CACHE), or save it with `save_to_disk` and set `path` instead"
        )
        message = f"dataset {source.dataset!r} is not in the local HF cache {cache}: {how}"
        return Problem(source.dataset, 0, "dataset", f"{message} ({type(error).__name__})")
    part = _from_dir(source, Path(local))
    if isinstance(part, Part):
        part.where = f"{source.dataset}[{source.split}]"
    return part


def _part(stream: Any, where: str, root: Path, stem: str) -> Part:
    import datasets

    features = stream.features or {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            stream = stream.cast_column(name, datasets.Image(decode=False))  # raw bytes, as stored
    rows = iter(stream)
    columns = list(features) if features else list(stream.column_names or [])
    if not columns:  # jsonl without declared features: the first row tells
        first = next(rows, None)
        columns = list(first or {})
        rows = itertools.chain([first] if first is not None else [], rows)
    return Part(where, columns, rows, root, stem)
