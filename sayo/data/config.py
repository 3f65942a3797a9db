"""Configuration of the `data` stage: which sources, how they are mixed and split, where it goes.

Why nested dataclasses: the YAML sections (`configs/data/*.yaml`, the `data:` section of
`params.yaml`) map one to one onto these classes, so `dvc exp run -S data.synthetic.num_samples=64`
and `sayo data build synthetic.num_samples=64` name the same field that the code reads. Every
field is checked in `__post_init__`; an error names the field and what is allowed.

Mixing *[ours]*: a source's `weight` w scales how many of its samples enter the dataset. Each
valid sample is kept floor(w) times plus once more with probability frac(w), decided by a hash of
(seed, source, id, copy) so it is deterministic and stable when samples are added: w = 1 takes
everything, w = 0.25 a quarter, w = 2.5 two and a half copies (repeats get ids `<id>~r<k>` and
share the original's split, so a repeat never leaks into another split).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

from sayo.config import apply_overrides as shared_overrides
from sayo.config import from_dict, read_yaml
from sayo.data.synthetic import SyntheticConfig

SourceType = Literal["jsonl", "coco", "refcoco", "tsv", "synthetic"]
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
DEFAULT_CONFIG = Path("configs/data/tiny.yaml")


def _fail(name: str, value: object, why: str) -> NoReturn:
    raise ValueError(f"{name} = {value!r} is invalid: {why}")


@dataclass
class SourceConfig:
    """One input of the dataset; `path` is resolved against the config file's directory."""

    type: str = "synthetic"  # jsonl | coco | refcoco | tsv | synthetic
    path: str = ""  # jsonl/tsv file, COCO instances JSON; unused for synthetic
    name: str = ""  # label in `Sample.source` and stats; defaults to the type
    weight: float = 1.0  # 1 = all samples, <1 subsample, >1 repeat (see module docstring)
    images: str = ""  # image directory for jsonl/coco/refcoco (default: the file's directory)
    refs: str = ""  # refcoco: the referring-expressions JSON (list of refs)
    bbox_format: str = "xyxy"  # tsv bbox column: xyxy | xywh

    def __post_init__(self) -> None:
        if self.type not in SOURCE_TYPES:
            _fail("source.type", self.type, f"must be one of {list(SOURCE_TYPES)}")
        if self.type != "synthetic" and not self.path:
            _fail("source.path", self.path, f"a {self.type!r} source needs a path")
        if self.type == "refcoco" and not self.refs:
            _fail("source.refs", self.refs, "a 'refcoco' source needs the refs JSON file")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            _fail(f"source[{self.label}].weight", w, "must be a finite number > 0")
        self.weight = float(w)
        if self.bbox_format not in ("xyxy", "xywh"):
            _fail("source.bbox_format", self.bbox_format, "must be 'xyxy' or 'xywh'")

    @property
    def label(self) -> str:
        """The name this source has in `Sample.source` and in the stats."""
        return self.name or self.type


@dataclass
class SplitConfig:
    """Fractions of the train/val/test splits; each >= 0, summing to 1."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                _fail(f"splits.{name}", value, "must be a number in [0, 1]")
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            _fail("splits", asdict(self), f"fractions must sum to 1 (they sum to {total:g})")


@dataclass
class DataConfig:
    """The `data` stage: sources → validated, mixed, split dataset directory at `output`."""

    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # knobs of synthetic sources
    splits: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0  # seeds the split hash and the weighted mixing
    output: str = "data/processed"  # dataset directory (replaced atomically)
    max_problems: int = 50  # how many validation problems are printed before "... and N more"
    preview_samples: int = 12  # tiles in preview.png

    def __post_init__(self) -> None:
        if not isinstance(self.sources, list) or not self.sources:
            _fail("sources", self.sources, "must be a non-empty list of sources")
        labels = [source.label for source in self.sources]
        if len(set(labels)) != len(labels):
            _fail("sources", labels, "source names must be unique (set `name` to tell them apart)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            _fail("seed", self.seed, "must be an integer >= 0")
        if not self.output:
            _fail("output", self.output, "must be a directory path")
        for name in ("max_problems", "preview_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, value, "must be an integer >= 1")


def config_from_dict(raw: dict[str, Any]) -> DataConfig:
    """A `DataConfig` from a plain mapping (a YAML section); unknown keys are errors."""
    return from_dict(DataConfig, raw, "data")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key=value` overrides on a copy of a config mapping (dotted keys descend, list items by index)."""
    return shared_overrides(copy.deepcopy(raw), overrides)


def load_config(path: str | Path = DEFAULT_CONFIG, overrides: list[str] | None = None) -> DataConfig:
    """Load a data config from YAML: the whole file, or its `data:` section (params.yaml).

    Relative source paths are resolved against the YAML file's directory; `output` stays
    relative to the working directory (where `dvc repro` runs).
    """
    path = Path(path)
    raw = read_yaml(path)
    if "data" in raw and isinstance(raw["data"], dict):
        raw = raw["data"]
    raw = apply_overrides(raw, overrides or [])
    config = config_from_dict(raw)
    base = path.resolve().parent
    for source in config.sources:
        for name in ("path", "images", "refs"):
            value = getattr(source, name)
            if value and not Path(value).is_absolute():
                setattr(source, name, str(base / value))
    return config
