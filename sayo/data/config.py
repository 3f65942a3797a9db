"""The recipe's `data:` section: which sources, how they are mixed and split, where the dataset lives.

One section for both sides of the dataset: the `data` stage builds it at `path` from `sources`,
and the training stages read its `train_split`/`eval_split` from the same `path`, so the dataset
a recipe trains on is the one it builds. Every field is checked in `__post_init__`; an error names
the field and what is allowed.

Mixing *[ours]*: a source's `weight` w scales how many of its samples enter the dataset. Each
valid sample is kept floor(w) times plus once more with probability frac(w), decided by a hash of
(seed, source, id, copy) so it is deterministic and stable when samples are added: w = 1 takes
everything, w = 0.25 a quarter, w = 2.5 two and a half copies (repeats get ids `<id>~r<k>` and
share the original's split, so a repeat never leaks into another split).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

from sayo.config import fail
from sayo.data.synthetic import SyntheticConfig

SourceType = Literal["jsonl", "coco", "refcoco", "tsv", "synthetic", "hf", "gqa", "refocus", "paper_parquet"]
HF_TYPES: tuple[str, ...] = ("hf", "refocus", "paper_parquet")  # read through `datasets` (path or dataset)
WRITERS: tuple[str, ...] = ("pre_processor", "multiple_processor")  # the authors' parquet writers
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
BBOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "xyxy_norm", "xywh_norm")  # _norm: fractions of w/h
HF_FIELDS: tuple[str, ...] = (
    "id",
    "image",
    "question",
    "answer",
    "bbox",
    "options",
    "category",
    "answer_type",
)


@dataclass
class SourceConfig:
    """One input of the dataset; relative file paths resolve where they were written (docs/configuration.md)."""

    type: str = "synthetic"  # jsonl | coco | refcoco | tsv | synthetic | hf | gqa | refocus | paper_parquet
    path: str = ""  # jsonl/tsv file, COCO JSON; hf: a dataset directory, parquet/arrow/jsonl file or glob
    name: str = ""  # label in `Sample.source` and stats; defaults to the type
    weight: float = 1.0  # 1 = all samples, <1 subsample, >1 repeat (see module docstring)
    images: str = ""  # image directory for jsonl/coco/refcoco (default: the file's directory)
    refs: str = ""  # refcoco: the referring-expressions JSON (list of refs)
    bbox_format: str = "xyxy"  # tsv/hf bbox column: xyxy | xywh (hf also xyxy_norm | xywh_norm, in [0, 1])
    dataset: str = ""  # hf: a dataset name in the local HF cache (e.g. "lmms-lab/ChartQA"), instead of path
    subset: str = ""  # hf: the dataset's configuration (subset) name, if it has several
    split: str = "train"  # hf: which split to read (files without splits have only "train")
    columns: dict[str, str] = field(default_factory=dict)  # hf: sayo field -> column (docs/data.md)
    fill_to: int | None = None  # stop this source once the dataset holds this many samples (null = all)
    scene_graphs: str = ""  # gqa: the scene-graph JSON (questions JSON in `path`, images in `images`)
    areas: str = "all"  # refocus: every focus area is a region ("all"), or only the "first" (the authors')
    select_fraction: float | None = None  # hf/refocus: keep the test part of train_test_split(this, seed)
    select_seed: int = 42  # hf/refocus: the seed of that split (the authors': 42)
    writer: str = ""  # paper_parquet: which authors' script wrote it: pre_processor | multiple_processor

    def __post_init__(self) -> None:
        if self.type not in SOURCE_TYPES:
            fail("source.type", self.type, f"must be one of {list(SOURCE_TYPES)}")
        if self.type in HF_TYPES and bool(self.path) == bool(self.dataset):
            fail("source.path", self.path, f"a {self.type!r} source needs exactly one of path and dataset")
        if self.type not in ("synthetic", *HF_TYPES) and not self.path:
            fail("source.path", self.path, f"a {self.type!r} source needs a path")
        if self.type == "refcoco" and not self.refs:
            fail("source.refs", self.refs, "a 'refcoco' source needs the refs JSON file")
        self._check_paper_fields()
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            fail(f"source[{self.label}].weight", w, "must be a finite number > 0")
        self.weight = float(w)
        formats = BBOX_FORMATS if self.type == "hf" else BBOX_FORMATS[:2]
        if self.bbox_format not in formats:
            fail("source.bbox_format", self.bbox_format, f"must be one of {list(formats)}")
        unknown = sorted(set(self.columns) - set(HF_FIELDS))
        if unknown:
            fail("source.columns", self.columns, f"unknown field(s) {unknown}; allowed: {list(HF_FIELDS)}")
        if self.fill_to is not None and (isinstance(self.fill_to, bool) or self.fill_to < 1):
            fail(f"source[{self.label}].fill_to", self.fill_to, "must be an integer >= 1 or null")
        if not self.split:
            fail("source.split", self.split, "must name a split (e.g. 'train')")

    def _check_paper_fields(self) -> None:
        if self.type == "gqa" and not self.scene_graphs:
            fail("source.scene_graphs", self.scene_graphs, "a 'gqa' source needs the scene-graph JSON")
        if self.type == "paper_parquet" and self.writer not in WRITERS:
            fail(
                "source.writer", self.writer, f"a 'paper_parquet' source must declare one of {list(WRITERS)}"
            )
        if self.areas not in ("all", "first"):
            fail("source.areas", self.areas, "must be 'all' or 'first'")
        fraction = self.select_fraction
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
            fail("source.select_fraction", fraction, "must be a number in (0, 1) or null")

    @property
    def label(self) -> str:
        """The name this source has in `Sample.source` and in the stats."""
        return self.name or self.type


@dataclass
class SplitConfig:
    """Fractions of the train/val/test splits; each >= 0, summing to 1."""

    train: float = 0.8  # share of samples in the training split
    val: float = 0.1  # share in the validation split (SFT eval loss, GRPO probes)
    test: float = 0.1  # share in the held-out test split (evaluation)

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                fail(f"splits.{name}", value, "must be a number in [0, 1]")
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            fail("splits", asdict(self), f"fractions must sum to 1 (they sum to {total:g})")


@dataclass
class DataConfig:
    """The dataset: built from `sources` into `path` by the `data` stage, read from `path` by the others."""

    path: str = "data/processed"  # dataset directory: written by `sayo data build`, read by training
    train_split: str = "train"  # split the training stages learn from
    eval_split: str = "val"  # split of SFT's eval loss and GRPO's probes
    max_samples: int | None = None  # cap on training samples (null = all)
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])  # inputs, mixed by weight
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # knobs of synthetic sources
    splits: SplitConfig = field(default_factory=SplitConfig)  # train/val/test fractions
    seed: int = 0  # seeds the split hash and the weighted mixing
    max_problems: int = 50  # how many validation problems are printed before "... and N more"
    preview_samples: int = 12  # tiles in preview.png

    def __post_init__(self) -> None:
        if not isinstance(self.sources, list) or not self.sources:
            fail("sources", self.sources, "must be a non-empty list of sources")
        labels = [source.label for source in self.sources]
        if len(set(labels)) != len(labels):
            fail("sources", labels, "source names must be unique (set `name` to tell them apart)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            fail("seed", self.seed, "must be an integer >= 0")
        if not self.path:
            fail("data.path", self.path, "must be a directory path")
        if self.max_samples is not None and self.max_samples < 1:
            fail("data.max_samples", self.max_samples, "must be >= 1 or null")
        for name in ("max_problems", "preview_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, value, "must be an integer >= 1")


def resolve_source_paths(config: DataConfig, base: str | Path | Callable[[int, str], Path]) -> DataConfig:
    """Make the sources' relative file paths absolute, in place: relative to `base`, or for field
    `name` of source `i` to `base(i, name)` (the recipe passes where each path was written:
    docs/configuration.md, "Relative paths").

    `path` (the dataset directory) stays relative to the working directory, where the stages run.
    """
    for i, source in enumerate(config.sources):
        for name in ("path", "images", "refs", "scene_graphs"):
            value = getattr(source, name)
            if value and not Path(value).is_absolute():
                root = base(i, name) if callable(base) else Path(base)
                setattr(source, name, str(root.resolve() / value))
    return config
