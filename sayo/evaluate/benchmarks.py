"""Benchmark sets as data: a built dataset split, or a VLMEvalKit-style TSV read in memory.

Why read TSVs directly instead of requiring `sayo data build` first: public benchmarks (ChartQA,
We-Math, MME-RealWorld exports) come as one TSV with base64 images, and evaluation should not
need a second copy of them on disk. The rows go through the same importer and validation as the
`data` stage (`sayo.data.importers.tsv`, `sayo.data.validate`), so a benchmark row means the same
thing in both places; an invalid row fails with its file, line and field. One evaluation-side
rule [ours]: an `exact` answer that parses as a number with `sayo.rewards.parse_number` ("1,234",
"12.5%") is scored as `number` (ChartQA relaxed accuracy); the importer only recognises plain
floats.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.dataset import GroundedDataset
from sayo.data.importers.tsv import import_tsv
from sayo.data.schema import AnswerType, Sample
from sayo.data.validate import DataValidationError, Problem, check_candidate
from sayo.evaluate.config import BenchmarkConfig
from sayo.rewards import parse_number


@dataclass
class Benchmark:
    """A loaded benchmark: its samples and their RGB images, index-aligned."""

    name: str
    samples: list[Sample]
    images: list[Image.Image]

    def __len__(self) -> int:
        return len(self.samples)


def load_benchmark(config: BenchmarkConfig) -> Benchmark:
    """Load one configured benchmark (the first `max_samples` samples)."""
    if config.type == "tsv":
        samples, images = _load_tsv(Path(config.path), config.name)
        cut = config.max_samples or len(samples)
        return Benchmark(config.name, samples[:cut], images[:cut])
    data = GroundedDataset.load(config.path, config.split, config.max_samples)
    samples, images = data.batch(list(range(len(data))))
    return Benchmark(config.name, samples, images)


def _load_tsv(path: Path, name: str) -> tuple[list[Sample], list[Image.Image]]:
    source = SourceConfig(type="tsv", path=str(path), name=name)
    samples: list[Sample] = []
    images: list[Image.Image] = []
    problems: list[Problem] = []
    for item in import_tsv(source, DataConfig(sources=[source])):
        checked = item if isinstance(item, Problem) else check_candidate(item)
        if isinstance(checked, Problem):
            problems.append(checked)
        elif isinstance(checked, list):
            problems.extend(checked)
        else:
            sample, stored = checked
            if sample.answer_type is AnswerType.EXACT and parse_number(sample.answer) is not None:
                sample = sample.model_copy(update={"answer_type": AnswerType.NUMBER})
            samples.append(sample)
            with Image.open(io.BytesIO(stored.data)) as image:
                images.append(image.convert("RGB"))
    if problems:
        raise DataValidationError(problems)
    if not samples:
        raise ValueError(f"benchmark {name!r}: {path} has no samples")
    return samples, images
