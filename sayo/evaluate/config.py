"""Config of the `evaluate` stage: which benchmarks, how to answer them, how to summarise.

Why benchmarks are data, not code (issue 6): a benchmark is a dataset directory written by
`sayo data build` (our grounded synthetic test split, or anything imported) or a VLMEvalKit-style
TSV read directly. Its `metric` decides how answers are scored: `auto` takes the benchmark's own
official metric from its name (ChartQA relaxed accuracy, VLMEvalKit multiple-choice matching, ...;
`sayo.evaluate.scorers`, docs/evaluation.md). The section mirrors the `evaluate:` YAML section one
to one (style.md, "Config").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

BenchmarkType = Literal["dataset", "tsv"]
BENCHMARK_TYPES = ("dataset", "tsv")
METRICS = (
    "auto",
    "chartqa_relaxed",
    "mc_vlmeval",
    "mc_vlmeval_circular",
    "mc_mme_realworld",
    "wemath",
    "math_equal",
    "exact",
    "by_answer_type",
    "lenient",
)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name} = {value!r} is invalid: {allowed}")


@dataclass
class BenchmarkConfig:
    """One benchmark set."""

    name: str = "synthetic"  # used in metric names: <checkpoint>/<name>/accuracy
    type: BenchmarkType = "dataset"  # dataset: a `sayo data build` directory | tsv: a VLMEvalKit TSV
    path: str = "data/processed"  # dataset directory, or the .tsv file
    split: str | None = "test"  # dataset split (train | val | test | None = all); ignored for tsv
    max_samples: int | None = None  # first N samples only (None = all)
    # how answers are scored: auto (the benchmark's official metric, from its name) | chartqa_relaxed |
    # mc_vlmeval | mc_vlmeval_circular | mc_mme_realworld | wemath | math_equal | exact | by_answer_type |
    # lenient (the training reward's matching)
    metric: str = "auto"

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name, "evaluate.benchmarks[].name", self.name,
               "must be non-empty without '/'")  # fmt: skip
        _check(
            self.type in BENCHMARK_TYPES, "evaluate.benchmarks[].type", self.type, f"one of {BENCHMARK_TYPES}"
        )
        _check(self.max_samples is None or self.max_samples >= 1, "evaluate.benchmarks[].max_samples",
               self.max_samples, "must be >= 1 or null")  # fmt: skip
        _check(self.metric in METRICS, "evaluate.benchmarks[].metric", self.metric, f"one of {METRICS}")


@dataclass
class EvalConfig:
    """Everything the `evaluate` stage reads besides the model/device/tracking sections."""

    benchmarks: list[BenchmarkConfig] = field(default_factory=lambda: [BenchmarkConfig()])
    checkpoints: list[str] = field(default_factory=list)  # "name=path" or "path"; --checkpoint overrides
    batch_size: int = 8  # prompts per generation batch
    max_new_tokens: int = 32
    do_sample: bool = False  # greedy by default; sampling answers each prompt `n` times
    n: int = 1  # completions per prompt (needs do_sample when > 1); accuracy is the mean over them
    temperature: float = 1.0
    top_p: float = 1.0
    entropy_ratio: float = 0.2  # ρ: top-entropy share of response tokens for attention-on-region
    layers: Any = "last_half"  # decoder layers captured: last_half | all | k | [indices]
    head_reduce: str = "mean"  # mean | max over heads
    numeric_tolerance: float = 0.05  # relative tolerance of chartqa_relaxed / lenient (official: 0.05)
    bootstrap_samples: int = 1000  # resamples for the accuracy confidence interval
    bootstrap_seed: int = 0
    confidence: float = 0.95
    gallery_samples: int = 4  # grounded samples shown as heatmaps per checkpoint (0 = none)
    out_dir: str = "outputs/eval"  # metrics.json, per_sample.jsonl, report.html/.md, figures/

    def __post_init__(self) -> None:
        _check(bool(self.benchmarks), "evaluate.benchmarks", self.benchmarks, "needs at least one benchmark")
        names = [b.name for b in self.benchmarks]
        _check(len(set(names)) == len(names), "evaluate.benchmarks", names, "names must be unique")
        for name in ("batch_size", "max_new_tokens", "n", "bootstrap_samples"):
            _check(getattr(self, name) >= 1, f"evaluate.{name}", getattr(self, name), "must be >= 1")
        _check(self.n == 1 or self.do_sample, "evaluate.n", self.n, "n > 1 needs evaluate.do_sample=true")
        _check(self.temperature > 0, "evaluate.temperature", self.temperature, "must be > 0")
        _check(0 < self.entropy_ratio <= 1, "evaluate.entropy_ratio", self.entropy_ratio, "must be in (0, 1]")
        _check(self.head_reduce in ("mean", "max"), "evaluate.head_reduce", self.head_reduce, "mean or max")
        _check(0 < self.confidence < 1, "evaluate.confidence", self.confidence, "must be in (0, 1)")
        _check(
            self.numeric_tolerance >= 0, "evaluate.numeric_tolerance", self.numeric_tolerance, "must be >= 0"
        )
        _check(self.gallery_samples >= 0, "evaluate.gallery_samples", self.gallery_samples, "must be >= 0")
