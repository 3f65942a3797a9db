"""Turn task drafts into `Sample`s and write them as a content-addressed dataset directory.

Why content addressing and atomic writes: the `data` stage's output is versioned by DVC and pushed
to S3 (docs/architecture.md, "The stages"); naming each image by the sha256 of its PNG bytes makes
identical images stored once and the manifest reproducible byte for byte, and building the
directory next to its destination then renaming it means a crash never leaves a half-written
dataset where a good one used to be.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from sayo.atomic import swap_into_place
from sayo.data.schema import Sample
from sayo.data.synthetic.bars import bars_task
from sayo.data.synthetic.canvas import Draft, sample_rng
from sayo.data.synthetic.config import TASK_NAMES, SyntheticConfig
from sayo.data.synthetic.search import search_task
from sayo.data.synthetic.shapes import choice_task, shapes_task

TaskFn = Callable[[np.random.Generator, SyntheticConfig], tuple[Draft, Image.Image]]
TASKS: dict[str, TaskFn] = {
    "shapes": shapes_task,
    "bars": bars_task,
    "choice": choice_task,
    "search": search_task,
}
assert tuple(TASKS) == TASK_NAMES, "config.TASK_NAMES and dataset.TASKS must list the same tasks"

MANIFEST = "manifest.jsonl"
IMAGES = "images"


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of `image` (deterministic for identical pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def generate_sample(task: str, index: int, config: SyntheticConfig) -> tuple[Sample, Image.Image]:
    """Sample `index` of `task`: a pure function of (config, task, index).

    `Sample.image` is "images/<sha256 of the PNG bytes>.png", the path `write_dataset` stores it at.
    """
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; known tasks are {list(TASKS)}")
    draft, image = TASKS[task](sample_rng(config.seed, task, index), config)
    sha = hashlib.sha256(encode_png(image)).hexdigest()
    sample = Sample(
        id=f"synth-{task}-{config.seed}-{index:06d}",
        image=f"{IMAGES}/{sha}.png",
        question=draft.question,
        answer=draft.answer,
        answer_type=draft.answer_type,
        choices=draft.choices,
        regions=draft.regions,
        source="synthetic",
        image_size=image.size,
        category=task,
        reasoning=draft.reasoning,
        direct_reasoning=draft.direct_reasoning,
        demonstrated_answer=draft.demonstrated_answer,
    )
    return sample, image


def task_schedule(config: SyntheticConfig) -> list[str]:
    """The task of each sample: counts proportional to the weights (largest remainder), shuffled."""
    names = [name for name, weight in config.tasks.items() if weight > 0]
    total = sum(config.tasks[name] for name in names)
    quotas = [config.num_samples * config.tasks[name] / total for name in names]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(names)), key=lambda i: counts[i] - quotas[i])
    for i in by_remainder[: config.num_samples - sum(counts)]:
        counts[i] += 1
    schedule = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    order = np.random.default_rng(config.seed).permutation(len(schedule))
    return [schedule[i] for i in order]


def generate(config: SyntheticConfig) -> Iterator[tuple[Sample, Image.Image]]:
    """All `config.num_samples` samples, lazily; sample i has id "synth-<task>-<seed>-<i>"."""
    for index, task in enumerate(task_schedule(config)):
        yield generate_sample(task, index, config)


def write_dataset(config: SyntheticConfig, out_dir: Path) -> Path:
    """Write `out_dir/manifest.jsonl` and `out_dir/images/<sha256>.png` atomically.

    The directory is built as a hidden sibling and renamed into place; an existing `out_dir` is
    replaced only once the new one is complete. Returns the manifest path.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _write_into(staging, config)
        os.chmod(staging, 0o755)
        swap_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / MANIFEST


def _write_into(directory: Path, config: SyntheticConfig) -> None:
    (directory / IMAGES).mkdir()
    with open(directory / MANIFEST, "w", encoding="utf-8") as manifest:
        for sample, image in generate(config):
            path = directory / sample.image
            if not path.exists():  # content-addressed: an identical image is stored once
                path.write_bytes(encode_png(image))
            manifest.write(sample.model_dump_json() + "\n")
        manifest.flush()
        os.fsync(manifest.fileno())
