"""Tests of the data-stage config: YAML sections, key=value overrides, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sayo.data.config import (
    DataConfig,
    SourceConfig,
    SplitConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_default_recipe_and_params_agree() -> None:
    tiny = load_config(ROOT / "configs/data/tiny.yaml")
    params = load_config(ROOT / "params.yaml")  # its `data:` section
    assert tiny == params
    assert tiny.output == "data/processed" and tiny.sources[0].type == "synthetic"


def test_overrides_reach_nested_fields(tmp_path: Path) -> None:
    config = load_config(
        ROOT / "params.yaml", ["synthetic.num_samples=64", "splits.train=0.7", "splits.val=0.2", "seed=3"]
    )
    assert config.synthetic.num_samples == 64
    assert (config.splits.train, config.splits.val, config.seed) == (0.7, 0.2, 3)


def test_override_list_item_by_index() -> None:
    raw = apply_overrides({"sources": [{"type": "synthetic"}]}, ["sources.0.weight=2.5"])
    assert config_from_dict(raw).sources[0].weight == 2.5


def test_relative_source_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("sources:\n  - {type: jsonl, path: sub/a.jsonl}\n")
    assert load_config(tmp_path / "c.yaml").sources[0].path == str(tmp_path / "sub" / "a.jsonl")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: SourceConfig(type="csv", path="x"), "source.type = 'csv'"),  # unknown source type
        (lambda: SourceConfig(type="jsonl"), "source.path"),  # a file source without a path
        (lambda: SourceConfig(weight=0), "weight = 0"),  # weights must be > 0
        (lambda: SourceConfig(type="refcoco", path="i.json"), "source.refs"),  # refcoco needs its refs
        (lambda: SourceConfig(type="tsv", path="x", bbox_format="cxcywh"), "bbox_format"),
        (lambda: SplitConfig(train=0.8, val=0.3, test=0.1), "must sum to 1"),
        (lambda: SplitConfig(train=-0.1, val=0.6, test=0.5), "splits.train"),
        (lambda: DataConfig(sources=[]), "sources"),
        (lambda: DataConfig(sources=[SourceConfig(), SourceConfig()]), "names must be unique"),
        (lambda: DataConfig(seed=-1), "seed = -1"),
        (lambda: config_from_dict({"sourcez": []}), "unknown key(s)"),
        (lambda: config_from_dict({"synthetic": {"num_samples": 0}}), "SyntheticConfig.num_samples"),
        (lambda: apply_overrides({}, ["no_equals_sign"]), "key=value"),
    ],
)
def test_invalid_config_names_the_field(make, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)
