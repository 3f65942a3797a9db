"""Benchmark sets as data: a built dataset split, or a VLMEvalKit-style TSV read in memory.

Why read TSVs directly instead of requiring `sayo data build` first: public benchmarks (ChartQA,
We-Math, MME-RealWorld, MMBench exports) come as one TSV with base64 images, and evaluation should
not need a second copy of them on disk. The rows go through the same importer and validation as the
`data` stage (`sayo.data.importers.tsv`, `sayo.data.validate`), so a benchmark row means the same
thing in both places (MMBench-style image references included); an invalid row, or an id given
twice, fails with its file, line and field. The TSV columns the sample schema has no field for stay
beside the samples (`Benchmark.extras`) for the metrics that need them (We-Math's `ID` and `key`).
One evaluation-side rule [ours]: an `exact` answer that parses as a number with
`sayo.rewards.parse_number` ("1,234", "12.5%") is typed `number`; only the `lenient` and
`by_answer_type` metrics look at answer types (`sayo.evaluate.scorers`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.dataset import GroundedDataset
from sayo.data.importers.tsv import import_tsv
from sayo.data.schema import AnswerType, Sample
from sayo.data.validate import Candidate, DataValidationError, Problem, check_candidate
from sayo.evaluate.config import BenchmarkConfig
from sayo.evaluate.scorers import check_samples, resolve_metric
from sayo.rewards import parse_number


@dataclass
class Benchmark:
    """A loaded benchmark: its samples, their RGB images and extra source columns, index-aligned."""

    name: str
    samples: list[Sample]
    images: list[Image.Image]
    metric: str = "by_answer_type"  # resolved: never `auto`
    extras: list[dict[str, str]] = field(default_factory=list)  # per sample; empty for datasets

    def __len__(self) -> int:
        return len(self.samples)

    def extra(self, index: int) -> dict[str, str]:
        """The extra source columns of sample `index` ({} when there are none)."""
        return self.extras[index] if index < len(self.extras) else {}


def load_benchmark(config: BenchmarkConfig) -> Benchmark:
    """Load one configured benchmark (the first `max_samples` samples) and resolve its metric."""
    metric = resolve_metric(config.metric, config.name, config.path)
    if config.type == "tsv":
        samples, images, extras = _load_tsv(Path(config.path), config.name)
        cut = config.max_samples or len(samples)
        bench = Benchmark(config.name, samples[:cut], images[:cut], metric, extras[:cut])
    else:
        data = GroundedDataset.load(config.path, config.split, config.max_samples)
        samples, images = data.batch(list(range(len(data))))
        bench = Benchmark(config.name, samples, images, metric)
    check_samples(metric, bench.samples, config.name)
    return bench


def _load_tsv(path: Path, name: str) -> tuple[list[Sample], list[Image.Image], list[dict[str, str]]]:
    source = SourceConfig(type="tsv", path=str(path), name=name)
    samples: list[Sample] = []
    images: list[Image.Image] = []
    extras: list[dict[str, str]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for item in import_tsv(source, DataConfig(sources=[source])):
        checked = item if isinstance(item, Problem) else check_candidate(item)
        if isinstance(checked, Problem):
            problems.append(checked)
        elif isinstance(checked, list):
            problems.extend(checked)
        else:
            assert isinstance(item, Candidate)
            sample, stored = checked
            if sample.id in seen:
                message = f"duplicate id {sample.id!r} (first at {path}:{seen[sample.id]})"
                problems.append(Problem(item.file, item.line, "id", message))
                continue
            seen[sample.id] = item.line
            if sample.answer_type is AnswerType.EXACT and parse_number(sample.answer) is not None:
                sample = sample.model_copy(update={"answer_type": AnswerType.NUMBER})
            samples.append(sample)
            extras.append(item.extra)
            with Image.open(io.BytesIO(stored.data)) as image:
                images.append(image.convert("RGB"))
    if problems:
        raise DataValidationError(problems)
    if not samples:
        raise ValueError(f"benchmark {name!r}: {path} has no samples")
    return samples, images, extras
