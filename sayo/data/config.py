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

SourceType = Literal["jsonl", "coco", "refcoco", "tsv", "synthetic"]
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


@dataclass
class SourceConfig:
    """One input of the dataset; relative file paths resolve where they were written (docs/configuration.md)."""

    type: str = "synthetic"  # jsonl | coco | refcoco | tsv | synthetic
    path: str = ""  # jsonl/tsv file, COCO instances JSON; unused for synthetic
    name: str = ""  # label in `Sample.source` and stats; defaults to the type
    weight: float = 1.0  # 1 = all samples, <1 subsample, >1 repeat (see module docstring)
    images: str = ""  # image directory for jsonl/coco/refcoco (default: the file's directory)
    refs: str = ""  # refcoco: the referring-expressions JSON (list of refs)
    bbox_format: str = "xyxy"  # tsv bbox column: xyxy | xywh

    def __post_init__(self) -> None:
        if self.type not in SOURCE_TYPES:
            fail("source.type", self.type, f"must be one of {list(SOURCE_TYPES)}")
        if self.type != "synthetic" and not self.path:
            fail("source.path", self.path, f"a {self.type!r} source needs a path")
        if self.type == "refcoco" and not self.refs:
            fail("source.refs", self.refs, "a 'refcoco' source needs the refs JSON file")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            fail(f"source[{self.label}].weight", w, "must be a finite number > 0")
        self.weight = float(w)
        if self.bbox_format not in ("xyxy", "xywh"):
            fail("source.bbox_format", self.bbox_format, "must be 'xyxy' or 'xywh'")

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
        for name in ("path", "images", "refs"):
            value = getattr(source, name)
            if value and not Path(value).is_absolute():
                root = base(i, name) if callable(base) else Path(base)
                setattr(source, name, str(root.resolve() / value))
    return config
