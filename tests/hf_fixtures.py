"""Small Hugging Face datasets written on the fly (no downloads): parquet, arrow, jsonl, save_to_disk, hub cache."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

COLOURS = ("red", "green", "blue", "yellow")


def png(colour: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    """A plain PNG of `size` filled with `colour`."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def rows(n: int = 4, size: tuple[int, int] = (64, 48)) -> list[dict[str, Any]]:
    """`n` rows in sayo's own column names, with one xyxy box each."""
    return [
        {
            "id": f"q{i}",
            "image": {"bytes": png(COLOURS[i % len(COLOURS)], size), "path": None},
            "question": f"What colour is the square {i}?",
            "answer": COLOURS[i % len(COLOURS)],
            "bbox": [1.0 + i % 8, 2.0, 30.0, 40.0],
        }
        for i in range(n)
    ]


def dataset(records: list[dict[str, Any]], image_column: str = "image") -> datasets.Dataset:
    """A `Dataset` of `records`, the image column typed as `datasets.Image` when it holds images."""
    data = datasets.Dataset.from_list(records)
    if image_column in data.column_names and isinstance(records[0][image_column], dict):
        data = data.cast_column(image_column, datasets.Image())
    return data


def fake_hub_cache(cache: Path, name: str, splits: dict[str, datasets.Dataset]) -> Path:
    """`name` laid out as `hf download` leaves a dataset in the hub cache `cache` (parquet per split)."""
    repo = cache / f"datasets--{name.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    (snapshot / "data").mkdir(parents=True)
    for split, data in splits.items():
        data.to_parquet(str(snapshot / "data" / f"{split}-00000-of-00001.parquet"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot
