"""Recipes: one YAML file for every stage; built-in ones from any directory; numbers as users write
them; moved keys refused with the new key named; `base:` chains; the generated field reference."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sayo.cli import app
from sayo.recipe import MOVED_KEYS, builtin_recipes, load_recipe, read_recipe
from sayo.recipe_docs import configuration_markdown, missing_help

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_builtin_recipe_loads_from_any_directory(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no checkout around: the recipe ships with the package
    recipe = load_recipe(name)
    assert recipe.description and recipe.model.name_or_path


def test_the_7b_recipe_is_the_3b_recipe_with_its_differences() -> None:
    three, seven = load_recipe("qwen2_5_vl_3b"), load_recipe("qwen2_5_vl_7b")
    assert seven.model.name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and seven.deepspeed.config == "zero3"
    assert seven.grpo.micro_batch_size == 4 and three.grpo.micro_batch_size == 8
    assert seven.grpo.group_size == three.grpo.group_size == 8  # inherited through `base:`
    assert seven.evaluate.benchmarks == three.evaluate.benchmarks  # lists are inherited whole


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("grpo: {optim: {lr: 5e-6}}", "grpo.optim.lr", 5e-6),  # YAML 1.1 reads this as a string
        ("grpo: {optim: {lr: 1E-4}}", "grpo.optim.lr", 1e-4),
        ("grpo: {optim: {lr: 0.0005}}", "grpo.optim.lr", 5e-4),
        ("grpo: {optim: {lr: 1}}", "grpo.optim.lr", 1.0),  # an int where a float is expected
        ("grpo: {max_steps: 1e3}", "grpo.max_steps", 1000),  # an integral float where an int is
        ("grpo: {beta: .5}", "grpo.beta", 0.5),
    ],
)
def test_numbers_are_read_as_written(tmp_path: Path, text: str, field: str, expected: float) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"base: tiny\n{text}\n")
    section, *keys = field.split(".")
    value = getattr(load_recipe(path), section)
    for key in keys:
        value = getattr(value, key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("override", "expected"),
    [("grpo.optim.lr=5e-4", 5e-4), ("grpo.optim.lr=1e-6", 1e-6), ("grpo.optim.lr=2.5E+1", 25.0)],
)
def test_numeric_overrides(override: str, expected: float) -> None:
    assert load_recipe("tiny", [override]).grpo.optim.lr == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grpo.optim.lr=fast", "grpo.optim.lr = 'fast' (command line): must be a number"),
        ("grpo.max_steps=1.5", "grpo.max_steps = 1.5 (command line): must be an integer"),
        ("grpo.pack_groups=maybe", "grpo.pack_groups = 'maybe' (command line): must be true or false"),
        ("grpo.loss_type=ppo", "grpo.loss_type = 'ppo' (command line): must be one of"),
        ("rewards.attention.form=cosine", "rewards.attention.form = 'cosine' (command line): must be one of"),
        ("rewards.attention.ratio=0", "rewards.attention.ratio = 0.0 (command line): must be in (0, 1]"),
        ("rewards.weights.accuracy=-1", "rewards.weights.accuracy = -1.0 (command line): must be"),
        ("grpo.group_sise=4", "unknown key(s) ['group_sise'] in grpo (command line); allowed:"),
        ("device=gpu", "device = 'gpu' (command line): must be"),
        ("model.dtype=fp8", "model.dtype = 'fp8' (command line): must be one of"),
        # checks a section shares (sft and grpo both have `optim`) or that name the field their own way
        ("grpo.optim.lr=-1.0", "grpo.optim.lr = -1.0 (command line): must be > 0"),
        ("sft.optim.lr=0", "sft.optim.lr = 0.0 (command line): must be > 0"),
        ("data.synthetic.num_samples=0", "data.synthetic.num_samples = 0 (command line): must be in [1"),
        ("data.splits.train=1.5", "data.splits.train = 1.5 (command line): must be a number in [0, 1]"),
        (
            "data.sources.0.weight=0",
            "data.sources.0.weight = 0.0 (command line): must be a finite number > 0",
        ),
        ("data.sources.0.type=csv", "data.sources.0.type = 'csv' (command line): must be one of"),
        (
            "evaluate.benchmarks.0.metric=f1",
            "evaluate.benchmarks.0.metric = 'f1' (command line): must be one of",
        ),
    ],
)
def test_bad_values_name_the_full_key_and_the_command_line(override: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_recipe("tiny", [override])
    assert message in str(info.value)


def test_bad_values_in_a_file_name_the_file_and_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("base: tiny\ngrpo:\n  optim:\n    lr: -1.0\n")
    (tmp_path / "mine.yaml").write_text("base: base.yaml\n# fractions\ndata:\n  splits:\n    train: 1.5\n")
    with pytest.raises(
        ValueError, match=re.escape("data.splits.train = 1.5 (mine.yaml:5): must be a number")
    ):
        load_recipe("mine.yaml")
    fixed = ["data.splits.train=0.8"]  # the override wins over the file; the base file's value is next
    with pytest.raises(ValueError, match=re.escape("grpo.optim.lr = -1.0 (base.yaml:4): must be > 0")):
        load_recipe("mine.yaml", fixed)
    (tmp_path / "mine.yaml").write_text("base: tiny\ngrpo:\n  group_sise: 4\n")
    with pytest.raises(ValueError, match=re.escape("unknown key(s) ['group_sise'] in grpo (mine.yaml:3)")):
        load_recipe("mine.yaml")
    with pytest.raises(ValueError, match=re.escape("grpo.optim.lr = -1.0 (command line)")):
        load_recipe("mine.yaml", ["grpo={optim: {lr: -1.0}}"])  # a section replaced: none of the file left


def test_a_section_wide_check_names_where_its_values_came_from(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("base: tiny\ndata:\n  splits: {train: 0.5, val: 0.3, test: 0.1}\n")
    with pytest.raises(ValueError) as info:
        load_recipe("mine.yaml", ["data.splits.test=0.3"])
    message = str(info.value)
    assert message.startswith(
        "data.splits = {'train': 0.5, 'val': 0.3, 'test': 0.3} (mine.yaml:3, command line)"
    )
    assert "fractions must sum to 1" in message


@pytest.mark.parametrize("old", sorted(MOVED_KEYS))
def test_moved_keys_are_refused_with_the_new_key(tmp_path: Path, old: str) -> None:
    raw: dict = {}
    node = raw
    *parents, leaf = old.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = 1 if leaf != "train" else {"seed": 0}
    path = _write(tmp_path / "old.yaml", raw)
    with pytest.raises(ValueError, match=rf"{re.escape(old)} = .* \(.*old\.yaml:\d+\): moved to"):
        load_recipe(path)
    with pytest.raises(
        ValueError, match=rf"{re.escape(old)} = 1 \(command line\): moved to"
    ):  # as an override
        load_recipe("tiny", [f"{old}=1"])


def test_base_chains_merge_and_cycles_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"base": "tiny", "grpo": {"group_size": 8}})
    _write(tmp_path / "b.yaml", {"base": "a.yaml", "grpo": {"beta": 0.0}})  # relative to b.yaml's folder
    recipe = load_recipe(tmp_path / "b.yaml")
    assert (recipe.grpo.group_size, recipe.grpo.beta, recipe.grpo.max_steps) == (8, 0.0, 30)
    _write(tmp_path / "a.yaml", {"base": "b.yaml"})
    with pytest.raises(ValueError, match="form a cycle"):
        load_recipe(tmp_path / "b.yaml")
    assert "base" not in read_recipe("qwen2_5_vl_7b")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sft", "--config", "missing/recipe.yaml"], "recipe file missing/recipe.yaml does not exist"),
        (["sft", "--config", "tinyy"], "no recipe named 'tinyy': built-in recipes are"),
        (["data", "build", "grpo.optim.lr=fast"], "grpo.optim.lr = 'fast'"),
        (
            ["data", "build", "synthetic.num_samples=3"],
            "unknown key(s) ['synthetic']",
        ),  # keys are recipe keys now
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "sayo", *args], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and message in cli.stderr, cli.stderr


def test_one_recipe_drives_the_cli_and_the_kubeflow_steps(tmp_path: Path, monkeypatch) -> None:
    """A knob changed in one recipe file reaches `sayo sft` and the pipeline's `sft` step alike
    (`dvc repro` reads the same file: tests/test_dvc.py::test_repro_is_incremental changes a knob in it)."""
    import sayo.cli.train as cli_train
    import sayo.kubeflow.steps as steps

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: tiny\nsft: {max_steps: 7}\n")
    seen: dict[str, int] = {}

    def fake_sft(name: str):
        def run(r):
            seen[name] = r.sft.max_steps
            raise RuntimeError("stop before training")

        return run

    monkeypatch.setattr(cli_train, "train_sft", fake_sft("cli"))
    CliRunner().invoke(app, ["sft", "--config", str(recipe)])
    monkeypatch.setattr(steps, "train_sft", fake_sft("kubeflow"))
    with pytest.raises(RuntimeError, match="stop before"):
        steps.run_sft(str(recipe), [], str(tmp_path / "data"), str(tmp_path / "model"))
    assert seen == {"cli": 7, "kubeflow": 7}


def test_configuration_reference_is_generated_and_complete() -> None:
    assert missing_help() == []  # every field says what it is for
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == configuration_markdown(), (
        "docs/configuration.md is stale: run `sayo recipes docs --out docs/configuration.md`"
    )


def test_recipes_command_lists_and_shows(tmp_path: Path) -> None:
    listed = CliRunner().invoke(app, ["recipes"])
    assert listed.exit_code == 0 and "tiny" in listed.output and "qwen2_5_vl_7b" in listed.output
    shown = CliRunner().invoke(app, ["recipes", "show", "qwen2_5_vl_7b", "grpo.group_size=16"])
    assert shown.exit_code == 0
    resolved = yaml.safe_load(shown.output)
    assert resolved["grpo"]["group_size"] == 16 and resolved["deepspeed"]["config"] == "zero3"
