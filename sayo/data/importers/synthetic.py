"""Importer for the synthetic generator (`sayo.data.synthetic`), parallel over processes.

Why a separate path from `synthetic.generate`: that yields PIL images and already PNG-encodes each
one to name it; here each worker draws and encodes once and ships the bytes, so 10k samples import
in well under a minute on two cores. Ids and pictures are those of `generate_sample`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.synthetic import SyntheticConfig, encode_png, task_schedule
from sayo.data.synthetic.canvas import sample_rng
from sayo.data.synthetic.dataset import TASKS
from sayo.data.validate import Candidate, Problem

CHUNK = 128  # samples per worker task
PARALLEL_FROM = 512  # fewer samples are drawn in-process (pool start-up costs ~1 s)

Drawn = tuple[dict[str, object], bytes]


def draw_chunk(config: SyntheticConfig, start: int, tasks: list[str]) -> list[Drawn]:
    """Samples start..start+len(tasks)-1: their `Sample` fields (no image) and PNG bytes."""
    out = []
    for offset, task in enumerate(tasks):
        index = start + offset
        draft, image = TASKS[task](sample_rng(config.seed, task, index), config)
        fields: dict[str, object] = {
            "id": f"synth-{task}-{config.seed}-{index:06d}",
            "question": draft.question,
            "answer": draft.answer,
            "answer_type": draft.answer_type.value,
            "choices": draft.choices,
            "regions": [region.model_dump() for region in draft.regions],
            "category": task,
            "reasoning": draft.reasoning,
            "direct_reasoning": draft.direct_reasoning,
            "demonstrated_answer": draft.demonstrated_answer,
        }
        out.append((fields, encode_png(image)))
    return out


def _chunks(config: SyntheticConfig, workers: int) -> Iterator[list[Drawn]]:
    schedule = task_schedule(config)
    starts = range(0, len(schedule), CHUNK)
    if workers <= 1 or len(schedule) < PARALLEL_FROM:
        for start in starts:
            yield draw_chunk(config, start, schedule[start : start + CHUNK])
        return
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(draw_chunk, config, s, schedule[s : s + CHUNK]) for s in starts]
        for future in futures:
            yield future.result()


def import_synthetic(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """All `config.synthetic.num_samples` synthetic samples, in index order."""
    workers = min(4, os.cpu_count() or 1)
    line = 0
    for chunk in _chunks(config.synthetic, workers):
        for fields, png in chunk:
            line += 1
            yield Candidate(
                fields={**fields, "source": source.label}, image=png, file="<synthetic>", line=line
            )
