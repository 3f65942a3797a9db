"""The layout of a built dataset directory, and how the training stages read a split.

Why a module of names: the `data` stage writes these files and `sft`/`grpo`/`evaluate` read them;
one place for the names keeps both ends in step.

    <dataset>/manifest.jsonl        every sample (`Sample` per line, `image` = images/<sha256>.<ext>)
    <dataset>/{train,val,test}.jsonl the same samples, one file per split
    <dataset>/images/<sha256>.<ext> content-addressed images (identical bytes stored once)
    <dataset>/stats.json, dataset_card.md, preview.png, rejected.jsonl (with --skip-invalid)
    <dataset>/dropped.jsonl          rows an importer's rule left out (counted in stats.json)
"""

from __future__ import annotations

from pathlib import Path

from sayo.data.config import SPLIT_NAMES
from sayo.data.manifest import load_manifest
from sayo.data.schema import Sample

MANIFEST = "manifest.jsonl"
STATS = "stats.json"
CARD = "dataset_card.md"
PREVIEW = "preview.png"
REJECTED = "rejected.jsonl"
DROPPED = "dropped.jsonl"  # rows importers leave out by a documented rule (docs/data.md)


def split_file(split: str) -> str:
    """The manifest file name of one split."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split {split!r} is unknown; expected one of {list(SPLIT_NAMES)}")
    return f"{split}.jsonl"


def load_split(dataset: str | Path, split: str | None = None) -> list[Sample]:
    """The samples of one split (or of the whole dataset when `split` is None).

    Image paths in the samples are relative to `dataset`.
    """
    return load_manifest(Path(dataset) / (split_file(split) if split else MANIFEST))
