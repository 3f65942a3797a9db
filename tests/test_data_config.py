"""Tests of the recipe's `data:` section: overrides, relative source paths, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sayo import recipe
from sayo.cli import app
from sayo.config import apply_overrides, from_dict
from sayo.data.config import DataConfig, SourceConfig, SplitConfig
from sayo.kubeflow.steps import data_overrides
from sayo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def config_from_dict(raw: dict) -> DataConfig:
    return from_dict(DataConfig, raw, "data")


def test_default_recipe_builds_the_synthetic_set_where_training_reads() -> None:
    tiny = load_recipe("tiny").data
    assert tiny.path == "data/processed" and tiny.sources[0].type == "synthetic"
    assert (tiny.train_split, tiny.eval_split) == ("train", "val")


def test_overrides_reach_nested_fields(tmp_path: Path) -> None:
    overrides = [
        "data.synthetic.num_samples=64",
        "data.splits.train=0.7",
        "data.splits.val=0.2",
        "data.seed=3",
    ]
    config = load_recipe("tiny", overrides).data
    assert config.synthetic.num_samples == 64
    assert (config.splits.train, config.splits.val, config.seed) == (0.7, 0.2, 3)


def test_override_list_item_by_index() -> None:
    raw = apply_overrides({"sources": [{"type": "synthetic"}]}, ["sources.0.weight=2.5"])
    assert config_from_dict(raw).sources[0].weight == 2.5


def test_relative_source_paths_follow_the_recipe_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("data:\n  sources:\n    - {type: jsonl, path: sub/a.jsonl}\n")
    assert load_recipe(tmp_path / "c.yaml").data.sources[0].path == str(tmp_path / "sub" / "a.jsonl")


JSONL_SOURCES = "data.sources=[{type: jsonl, name: m, path: mine.jsonl, images: img}]"


@pytest.fixture
def folders(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """A working directory and, elsewhere, recipe files (`cfg/mine.yaml` on `cfg/shared/base.yaml`)."""
    work, cfg = tmp_path / "work", tmp_path / "cfg"
    work.mkdir(), (cfg / "shared").mkdir(parents=True)
    base = "base: tiny\ndata:\n  sources:\n    - {type: jsonl, name: b, path: b.jsonl}\n"
    (cfg / "shared" / "base.yaml").write_text(base)
    (cfg / "mine.yaml").write_text("base: shared/base.yaml\ngrpo: {max_steps: 2}\n")
    monkeypatch.chdir(work)
    return {"work": work.resolve(), "shared": (cfg / "shared").resolve()}


@pytest.mark.parametrize(
    ("config", "overrides", "where", "path"),
    [
        ("tiny", [JSONL_SOURCES], "work", "mine.jsonl"),  # typed on the command line, built-in recipe
        ("../cfg/mine.yaml", [JSONL_SOURCES], "work", "mine.jsonl"),  # typed, over a file of the user's
        ("../cfg/mine.yaml", ["data.sources.0.path=x/b.jsonl"], "work", "x/b.jsonl"),  # one field typed
        ("../cfg/mine.yaml", [], "shared", "b.jsonl"),  # written in a base file: that file's folder
    ],
)
def test_relative_source_paths_resolve_where_they_were_written(
    folders: dict[str, Path], config: str, overrides: list[str], where: str, path: str
) -> None:
    source = load_recipe(config, overrides).data.sources[0]
    assert source.path == str(folders[where] / path)
    if overrides == [JSONL_SOURCES]:
        assert source.images == str(folders[where] / "img")


def test_a_builtin_recipes_source_paths_resolve_in_the_working_directory(
    folders: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    packaged = tmp_path / "packaged"
    packaged.mkdir()
    (packaged / "shipped.yaml").write_text("data:\n  sources:\n    - {type: jsonl, path: s.jsonl}\n")
    monkeypatch.setattr(recipe, "PACKAGED_RECIPES", packaged)
    assert load_recipe("shipped").data.sources[0].path == str(folders["work"] / "s.jsonl")


def test_the_cli_and_the_kubeflow_overrides_resolve_typed_paths_in_the_working_directory(
    folders: dict[str, Path],
) -> None:
    shown = CliRunner().invoke(app, ["recipes", "show", "tiny", JSONL_SOURCES])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output)["data"]["sources"][0]["path"] == str(folders["work"] / "mine.jsonl")
    sources = [{"type": "jsonl", "name": "k", "path": "k.jsonl"}]  # the pipeline's `data_sources`
    for overrides in (data_overrides([], sources, "out"), data_overrides([JSONL_SOURCES], [], "out")):
        (source,) = load_recipe("../cfg/mine.yaml", overrides).data.sources
        assert source.path == str(folders["work"] / {"k": "k.jsonl", "m": "mine.jsonl"}[source.name])


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
        (lambda: DataConfig(max_samples=0), "data.max_samples = 0"),
        (lambda: config_from_dict({"sourcez": []}), "unknown key(s)"),
        (lambda: config_from_dict({"synthetic": {"num_samples": 0}}), "data.synthetic.num_samples = 0"),
        (lambda: apply_overrides({}, ["no_equals_sign"]), "key=value"),
    ],
)
def test_invalid_config_names_the_field(make, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)
