"""Config of the `evaluate` stage: which benchmarks, how to answer them, how to summarise.

Why benchmarks are data, not code (issue 6): a benchmark is a dataset directory written by
`sayo data build` (our grounded synthetic test split, or anything imported) or a VLMEvalKit-style
TSV read directly. Its `metric` decides how answers are scored: `auto` takes the benchmark's own
official metric from its name (ChartQA relaxed accuracy, VLMEvalKit multiple-choice matching, ...;
`sayo.evaluate.scorers`, docs/evaluation.md). The section mirrors the `evaluate:` YAML section one
to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, get_args

from sayo.config import check
from sayo.evaluate.presets import PRESETS
from sayo.evaluate.suite import SUITES
from sayo.models.config import ModelConfig
from sayo.prompt_config import PromptConfig
from sayo.rewards.config import RewardConfig
from sayo.tracking import TrackingConfig

BenchmarkType = Literal["dataset", "tsv", "hf"]
BENCHMARK_TYPES = ("dataset", "tsv", "hf")
Metric = Literal[
    "auto",
    "chartqa_relaxed",
    "mc_vlmeval",
    "mc_vlmeval_circular",
    "mc_mme_realworld",
    "wemath",
    "hallusionbench",
    "mathvista",
    "wtq_denotation",
    "math_equal",
    "exact",
    "by_answer_type",
    "lenient",
]
METRICS: tuple[str, ...] = get_args(Metric)


@dataclass
class BenchmarkConfig:
    """One benchmark set."""

    name: str = "synthetic"  # used in metric names: <checkpoint>/<name>/accuracy
    type: BenchmarkType = "dataset"  # dataset (`sayo data build` dir), tsv (VLMEvalKit), hf (Hugging Face)
    path: str = "data/processed"  # dataset directory, the .tsv file, or the hf dataset (docs/evaluation.md)
    split: str | None = "test"  # dataset or hf split (None = all; an hf set needs one); ignored for tsv
    dataset: str = ""  # hf: a dataset name in the local HF cache (e.g. "lmms-lab/ChartQA"), instead of path
    subset: str = ""  # hf: the dataset's configuration name, if it has several
    columns: dict[str, str] = field(default_factory=dict)  # hf: sayo field -> column (docs/data.md)
    bbox_format: str = "xyxy"  # hf: xyxy, xywh, xyxy_norm or xywh_norm (declared, never guessed)
    images: str = ""  # hf: directory of relative image paths (default: the dataset's directory)
    preset: str = ""  # a paper set's layout and prompt (`sayo.evaluate.presets`: ai2d, ...); "" = none
    max_samples: int | None = None  # first N samples only (None = all)
    # auto picks the benchmark's official metric from its name (docs/evaluation.md); lenient is the
    # training reward's own matching
    metric: Metric = "auto"  # how answers are scored (docs/evaluation.md)

    def __post_init__(self) -> None:
        check(bool(self.name) and "/" not in self.name, "evaluate.benchmarks[].name", self.name,
               "must be non-empty without '/'")  # fmt: skip
        check(
            self.type in BENCHMARK_TYPES, "evaluate.benchmarks[].type", self.type, f"one of {BENCHMARK_TYPES}"
        )
        check(self.max_samples is None or self.max_samples >= 1, "evaluate.benchmarks[].max_samples",
               self.max_samples, "must be >= 1 or null")  # fmt: skip
        check(self.metric in METRICS, "evaluate.benchmarks[].metric", self.metric, f"one of {METRICS}")
        check(not self.preset or self.preset in PRESETS, "evaluate.benchmarks[].preset", self.preset,
              f"one of {sorted(PRESETS)} or empty")  # fmt: skip


@dataclass
class EvalConfig:
    """Everything the `evaluate` stage reads besides the model/device/tracking sections."""

    benchmarks: list[BenchmarkConfig] = field(
        default_factory=lambda: [BenchmarkConfig()]
    )  # the sets answered (before the suite's)
    suite: str | None = None  # built-in sets answered after `benchmarks` (sayo_paper; docs/evaluation.md)
    suite_root: str = "data/benchmarks"  # the directory the suite's sets are expected under
    suite_max_samples: int | None = None  # first N samples of each suite set (None = all)
    allow_missing: bool = False  # skip (and report "not run") sets whose files are missing; --allow-missing
    checkpoints: list[str] = field(default_factory=list)  # "name=path" or "path"; --checkpoint overrides
    batch_size: int = 8  # prompts per generation batch
    max_new_tokens: int = 32  # answer length limit (also the registered model's default)
    do_sample: bool = False  # greedy by default; sampling answers each prompt `n` times
    n: int = 1  # completions per prompt (needs do_sample when > 1); accuracy is the mean over them
    temperature: float = 1.0  # sampling temperature (with do_sample)
    top_p: float = 1.0  # nucleus sampling (with do_sample; 1.0 = off)
    numeric_tolerance: float = 0.05  # relative tolerance of chartqa_relaxed / lenient (official: 0.05)
    bootstrap_samples: int = 1000  # resamples for the accuracy confidence interval
    bootstrap_seed: int = 0  # seed of the bootstrap resampling (same records, same interval)
    confidence: float = 0.95  # level of the accuracy interval
    gallery_samples: int = 4  # grounded samples shown as heatmaps per checkpoint (0 = none)
    out_dir: str = "outputs/eval"  # metrics.json, per_sample.jsonl, report.html/.md, figures/

    def __post_init__(self) -> None:
        check(
            self.suite is None or self.suite in SUITES,
            "evaluate.suite",
            self.suite,
            f"one of {sorted(SUITES)} or null",
        )
        check(bool(self.benchmarks) or self.suite is not None, "evaluate.benchmarks", self.benchmarks,
              "needs at least one benchmark (or evaluate.suite)")  # fmt: skip
        check(self.suite_max_samples is None or self.suite_max_samples >= 1, "evaluate.suite_max_samples",
              self.suite_max_samples, "must be >= 1 or null")  # fmt: skip
        names = [b.name for b in self.all_benchmarks()]
        check(len(set(names)) == len(names), "evaluate.benchmarks", names, "names must be unique")
        for name in ("batch_size", "max_new_tokens", "n", "bootstrap_samples"):
            check(getattr(self, name) >= 1, f"evaluate.{name}", getattr(self, name), "must be >= 1")
        check(self.n == 1 or self.do_sample, "evaluate.n", self.n, "n > 1 needs evaluate.do_sample=true")
        check(self.temperature > 0, "evaluate.temperature", self.temperature, "must be > 0")
        check(
            self.numeric_tolerance >= 0, "evaluate.numeric_tolerance", self.numeric_tolerance, "must be >= 0"
        )
        check(0 < self.confidence < 1, "evaluate.confidence", self.confidence, "must be in (0, 1)")
        check(self.gallery_samples >= 0, "evaluate.gallery_samples", self.gallery_samples, "must be >= 0")

    def all_benchmarks(self) -> list[BenchmarkConfig]:
        """`benchmarks`, then the suite's sets (under `suite_root`, cut to `suite_max_samples`)."""
        extra = suite_benchmarks(self.suite, self.suite_root, self.suite_max_samples) if self.suite else []
        return [*self.benchmarks, *extra]


class EvaluateRecipe(Protocol):
    """The recipe sections the `evaluate` stage reads (`sayo.recipe.Recipe` has them all).

    Attention on the region is measured as `rewards.attention` defines it, the same definition the
    GRPO reward and the training probes use.
    """

    @property
    def seed(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def prompt(self) -> PromptConfig: ...
    @property
    def rewards(self) -> RewardConfig: ...
    @property
    def evaluate(self) -> EvalConfig: ...
    @property
    def tracking(self) -> TrackingConfig: ...


def suite_benchmarks(suite: str, root: str, max_samples: int | None = None) -> list[BenchmarkConfig]:
    """The benchmark configs of `suite`, each an `hf` set under `root`."""
    if suite not in SUITES:
        raise ValueError(f"evaluate.suite = {suite!r} is invalid: one of {sorted(SUITES)}")
    return [
        BenchmarkConfig(
            name=s.name,
            type="hf",
            path=str(Path(root) / s.directory / s.file),
            images=str(Path(root) / s.directory / s.images) if s.images else "",
            subset=s.config,
            split=PRESETS[s.preset].split,
            preset=s.preset,
            metric=s.metric,  # type: ignore[arg-type]  # one of METRICS (tested)
            max_samples=max_samples,
        )
        for s in SUITES[suite]
    ]
