"""Benchmark sets as data: a built dataset split, a VLMEvalKit-style TSV, or a Hugging Face dataset.

Why read TSVs and HF datasets directly instead of requiring `sayo data build` first: public
benchmarks come as one TSV with base64 images (VLMEvalKit) or as a Hugging Face dataset (the
paper's suite), and evaluation should not need a second copy of them on disk. The rows go through
the same importers and validation as the `data` stage (`sayo.data.importers`, `sayo.data.validate`),
so a benchmark row means the same thing in both places; an invalid row, or an id given twice, fails
with its file, row and field. The columns the sample schema has no field for stay beside the
samples (`Benchmark.extras`) for the metrics that need them (We-Math's `ID` and `key`).

A `preset` (`sayo.evaluate.presets`) rebuilds the paper authors' prompt and answer from the row;
the model is then asked that prompt as it is (`Benchmark.asked`: the options are already in it).
One evaluation-side rule [ours]: an `exact` answer that parses as a number with
`sayo.rewards.parse_number` ("1,234", "12.5%") is typed `number`; only the `lenient` and
`by_answer_type` metrics look at answer types (`sayo.evaluate.scorers`).
"""

from __future__ import annotations

import dataclasses
import glob
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.dataset import GroundedDataset
from sayo.data.importers.hf import column_map, import_hf, import_mapped
from sayo.data.importers.hf_open import hub_cache
from sayo.data.importers.tsv import import_tsv
from sayo.data.schema import AnswerType, Sample
from sayo.data.validate import Candidate, DataValidationError, Dropped, Problem, check_candidate
from sayo.evaluate.config import BenchmarkConfig
from sayo.evaluate.presets import LETTERS, PRESETS, Preset, listed
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
    asked: list[Sample] = field(default_factory=list)  # the samples as put to the model; empty = `samples`
    note: str = ""  # how the metric relates to the official scoring, when it is a fallback

    def __len__(self) -> int:
        return len(self.samples)

    def extra(self, index: int) -> dict[str, str]:
        """The extra source columns of sample `index` ({} when there are none)."""
        return self.extras[index] if index < len(self.extras) else {}

    def prompts(self, start: int, stop: int) -> list[Sample]:
        """Samples `start:stop` as the model is asked them."""
        return (self.asked or self.samples)[start:stop]


def missing(config: BenchmarkConfig) -> str | None:
    """Why the files of `config` are not there (where it looked), or None when they are."""
    if config.type == "hf" and config.dataset:
        cache = Path(hub_cache()) / f"datasets--{config.dataset.replace('/', '--')}"
        return (
            None
            if cache.is_dir()
            else f"dataset {config.dataset!r} is not in the local HF cache {cache.parent}"
        )
    path = config.path
    if config.type == "hf" and glob.has_magic(path):
        return None if glob.glob(path) else f"no file matches {path}"
    return None if Path(path).exists() else f"{path} does not exist"


def load_benchmark(config: BenchmarkConfig) -> Benchmark:
    """Load one configured benchmark (the first `max_samples` samples) and resolve its metric."""
    metric = resolve_metric(config.metric, config.name, config.path or config.dataset)
    if config.type == "dataset":
        data = GroundedDataset.load(config.path, config.split, config.max_samples)
        samples, images = data.batch(list(range(len(data))))
        bench = Benchmark(config.name, samples, images, metric)
    else:
        preset = PRESETS[config.preset] if config.preset else None
        bench = _read(_import(config, preset), config, metric, preset)
    check_samples(metric, bench.samples, config.name)
    return bench


_UNUSED = "\x00"  # a column name no dataset has: the importer leaves that field alone


def _import(config: BenchmarkConfig, preset: Preset | None) -> Iterator[Candidate | Problem | Dropped]:
    """The rows of a tsv or hf benchmark, read by the `data` stage's importers.

    With a preset, the preset's columns must exist and the importer reads no options, answer
    type or boxes of its own: the preset rebuilds the answer and options from the raw columns
    (AI2D's answer is an option *index*, which the importer would read as an option's text).
    """
    if config.type == "tsv":
        source = SourceConfig(type="tsv", path=config.path, name=config.name)
        return import_tsv(source, DataConfig(sources=[source]))
    source = SourceConfig(
        type="hf", path="" if config.dataset else config.path, dataset=config.dataset, name=config.name,
        split=config.split or "train", subset=config.subset, images=config.images,
        columns={} if preset else dict(config.columns), bbox_format=config.bbox_format,
    )  # fmt: skip
    if preset is None:
        return import_hf(source, DataConfig(sources=[source]))
    mapping = {**column_map(source), "options": _UNUSED, "answer_type": _UNUSED, "bbox": _UNUSED}
    mapping.update({k: v for k, v in preset.columns.items() if k != "options"})
    return import_mapped(source, mapping, explicit=tuple(k for k in preset.columns if k != "options"))


def _read(
    items: Iterable[Candidate | Problem | Dropped],
    config: BenchmarkConfig,
    metric: str,
    preset: Preset | None,
) -> Benchmark:
    """Validate the imported rows (all problems reported together) into a benchmark."""
    bench = Benchmark(config.name, [], [], metric)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for item in items:
        if config.type == "hf" and len(bench.samples) == (config.max_samples or -1) and not problems:
            break  # a stream: read no further
        if isinstance(item, Dropped):
            continue  # a documented exclusion of the data stage (no tsv or hf row is dropped)
        if isinstance(item, Candidate) and preset is not None:
            item = _with_preset(item, preset)
        checked = item if isinstance(item, Problem) else check_candidate(item)
        if isinstance(checked, (Problem, list)):
            problems += [checked] if isinstance(checked, Problem) else checked
            continue
        assert isinstance(item, Candidate)
        sample, stored = checked
        if sample.id in seen:
            message = f"duplicate id {sample.id!r} (first at {item.file}:{seen[sample.id]})"
            problems.append(Problem(item.file, item.line, "id", message))
            continue
        seen[sample.id] = item.line
        if sample.answer_type is AnswerType.EXACT and parse_number(sample.answer) is not None:
            sample = sample.model_copy(update={"answer_type": AnswerType.NUMBER})
        bench.samples.append(sample)
        bench.extras.append(item.extra)
        if preset is not None:
            bench.asked.append(sample.model_copy(update={"answer_type": AnswerType.EXACT, "choices": None}))
        with Image.open(io.BytesIO(stored.data)) as image:
            bench.images.append(image.convert("RGB"))
    if problems:
        raise DataValidationError(problems)
    if not bench.samples:
        raise ValueError(f"benchmark {config.name!r}: {config.path} has no samples")
    cut = config.max_samples or len(bench.samples)
    bench.samples, bench.images, bench.extras = bench.samples[:cut], bench.images[:cut], bench.extras[:cut]
    bench.asked = bench.asked[:cut]
    return bench


def _with_preset(item: Candidate, preset: Preset) -> Candidate | Problem:
    """The candidate asked and answered as the paper's authors built it (`sayo.evaluate.presets`),
    or the problem of an answer that names none of the row's options."""
    fields = dict(item.fields)
    options_column = preset.columns.get("options")
    options = listed(item.extra.get(options_column, "")) if options_column else None
    asked = preset.build(str(fields.get("question", "")), str(fields.get("answer", "")), options, item.extra)
    if asked.choices and asked.answer not in LETTERS[: len(asked.choices)]:
        message = (
            f"answer {fields.get('answer')!r} names none of the {len(asked.choices)} options {asked.choices}"
        )
        return Problem(item.file, item.line, preset.columns["answer"], message)
    fields.update(question=asked.prompt, answer=asked.answer, choices=asked.choices)
    for name, column in preset.columns.items():  # a metric column the importer consumed
        if column in preset.meta and column not in item.extra and fields.get(name) is not None:
            item.extra[column] = str(fields[name])
    fields["answer_type"] = (
        AnswerType.CHOICE.value if asked.choices else _typed(asked.answer, fields.get("answer_type"))
    )
    return dataclasses.replace(item, fields=fields)


def _typed(answer: str, given: object) -> str:
    """A preset's non-choice answer type: the importer's, unless it said choice; else number or exact."""
    if isinstance(given, str) and given not in ("", AnswerType.CHOICE.value, AnswerType.NUMBER.value):
        return given
    try:
        float(answer)
    except ValueError:
        return AnswerType.EXACT.value
    return AnswerType.NUMBER.value
