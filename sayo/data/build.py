"""The `data` stage: sources → validated, mixed, split, content-addressed dataset directory.

Why this order: every source is imported and validated in full before anything is kept, so a
build fails with *all* its problems listed (or, with `skip_invalid`, records them in
`rejected.jsonl`); mixing and splitting are hashes of (seed, source, id), so they are
deterministic and adding samples never moves existing ones between splits. The directory is
written next to its destination and renamed into place at the very end: an interrupted or failed
build leaves the previous dataset untouched (docs/architecture.md, "The stages"). What a *killed* build
leaves next to the output (its locked staging root) is removed by the next build of the same
output (`sayo.data.staging`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sayo.data import layout
from sayo.data.card import dataset_card, pick_preview, preview_grid
from sayo.data.checking import Checked, Job, check_all
from sayo.data.config import SPLIT_NAMES, DataConfig
from sayo.data.importers import import_source
from sayo.data.mixing import assign_split
from sayo.data.schema import Sample
from sayo.data.staging import DATA, staging_root, swap_in, sweep_stale
from sayo.data.stats import compute_stats
from sayo.data.validate import DataValidationError, Dropped, Problem
from sayo.viz import save_png

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a build produced: where, how many samples per split, how many problems were skipped."""

    output: Path
    num_samples: int
    splits: dict[str, int]
    rejected: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows importers left out by rule


@dataclass
class _Collected:
    samples: list[Sample] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # id -> "file:line" of its first occurrence
    dropped: list[Dropped] = field(default_factory=list)  # rows left out by an importer's rule


def _accept(checked: Checked, into: _Collected) -> None:
    sample = checked.sample
    if sample.id in into.seen:
        message = f"duplicate id {sample.id!r} (first at {into.seen[sample.id]})"
        into.problems.append(Problem(checked.file, checked.line, "id", message))
        return
    into.seen[sample.id] = f"{checked.file}:{checked.line}"
    for k in range(checked.copies):
        into.samples.append(sample if k == 0 else sample.model_copy(update={"id": f"{sample.id}~r{k}"}))
        into.groups.append(checked.group or sample.id)


def _collect(config: DataConfig, staging: Path, progress: bool) -> _Collected:
    collected = _Collected()
    (staging / "images").mkdir()
    for source in config.sources:
        job = Job(str(staging), source.weight, config.seed)
        # the synthetic source already draws in worker processes; its checks stay in this one
        workers = 1 if source.type == "synthetic" else min(4, os.cpu_count() or 1)
        results = check_all(import_source(source, config), job, workers)
        for result in tqdm(results, desc=f"import {source.label}", unit=" samples", disable=not progress):
            if isinstance(result, Problem):
                collected.problems.append(result)
            elif isinstance(result, Dropped):
                collected.dropped.append(result)
            else:
                _accept(result, collected)
            if source.fill_to and len(collected.samples) >= source.fill_to:
                break
        results.close()  # stops the source's workers now when fill_to ended it early
    return collected


def _write_jsonl(path: Path, rows: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(row + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def _write_outputs(
    staging: Path, config: DataConfig, collected: _Collected, splits: list[str]
) -> dict[str, Any]:
    lines = [sample.model_dump_json() for sample in collected.samples]
    _write_jsonl(staging / layout.MANIFEST, lines)
    for name in SPLIT_NAMES:
        chosen = (line for line, split in zip(lines, splits, strict=True) if split == name)
        _write_jsonl(staging / layout.split_file(name), chosen)
    _write_jsonl(staging / layout.REJECTED, (json.dumps(p.to_dict()) for p in collected.problems))
    _write_jsonl(staging / layout.DROPPED, (json.dumps(d.to_dict()) for d in collected.dropped))
    stats = compute_stats(
        collected.samples, splits, rejected=len(collected.problems), dropped=collected.dropped
    )
    (staging / layout.STATS).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    (staging / layout.CARD).write_text(dataset_card(config, stats), encoding="utf-8")
    save_png(
        preview_grid(pick_preview(collected.samples, config.preview_samples), staging),
        staging / layout.PREVIEW,
    )
    return stats


def build(config: DataConfig, skip_invalid: bool = False, progress: bool = True) -> BuildResult:
    """Build the dataset of `config` at `config.path`, replacing any previous one atomically.

    Raises:
        DataValidationError: some input is invalid and `skip_invalid` is False (nothing is written),
            or no valid sample is left.
    """
    start = time.perf_counter()
    out = Path(config.path)
    sweep_stale(out)  # what killed builds of this output left behind
    with staging_root(out) as root:
        target = root / DATA
        collected = _collect(config, target, progress)
        if collected.problems and not skip_invalid:
            raise DataValidationError(collected.problems, shown=config.max_problems)
        if not collected.samples:
            raise DataValidationError([Problem("<config>", 0, "sources", "no valid sample in any source")])
        splits = [assign_split(group, config.seed, config.splits) for group in collected.groups]
        stats = _write_outputs(target, config, collected, splits)
        swap_in(root, out)
    seconds = time.perf_counter() - start
    log.info("built %d samples into %s in %.1f s", stats["num_samples"], out, seconds)
    dropped = dict(Counter(row.reason for row in collected.dropped))
    return BuildResult(out, stats["num_samples"], stats["per_split"], collected.problems, seconds, dropped)
