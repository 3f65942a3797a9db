"""Every dvc stage runs a command that exists, a plain `dvc repro` runs the pipeline only, and each
stage's `deps` and `params` are what its command uses, so `dvc repro` never skips a stage whose
code or knobs changed.

The stages are read by dvc itself (`dvc.repo.Repo(...).index.stages`), so `vars` are substituted
and every `matrix` item is expanded exactly as `dvc repro` would run it. What a command uses is
recorded by tests/dvc_probe.py: the pipeline stages run for real at a tiny size, one after the
other, and record the sayo modules they imported and the recipe fields they read; the ablation's
stages (dozens of GRPO runs) record the modules their command imports (`--help`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sayo.cli import app

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = {"data", "sft", "grpo", "evaluate", "register"}  # what `dvc repro` (dvc.yaml) runs


PROBE = Path(__file__).with_name("dvc_probe.py")
# recipe sections no stage lists as params: where and how it runs, not what it computes
NOT_PARAMS = {
    "device": "where the stage runs (the computation is the same)",
    "tracking": "where MLflow logs the run",
    "checkpoint": "where and how often checkpoints are written (the stage's outs fix the final one)",
    "deepspeed": "how the work is sharded over GPUs",
}
# small enough to run every pipeline stage in seconds, every code path of the stage still taken
TINY = [
    "data.synthetic.num_samples=40",
    "sft.max_steps=2",
    "sft.batch_size=2",
    "sft.eval_every=1",
    "sft.eval_samples=2",
    "sft.attention_loss=0.5",  # the warm start's attention term (it reads rewards.attention)
    "grpo.max_steps=1",
    "grpo.prompts_per_step=2",
    "grpo.probe_every=1",
    "grpo.probe_samples=2",
    "grpo.max_new_tokens=8",
    "checkpoint.every=1",
    "evaluate.max_new_tokens=8",
    "evaluate.bootstrap_samples=20",
]


def dvc_stages() -> dict[str, tuple[str, str]]:
    """Every stage of every dvc.yaml in the repository: its address -> (its dvc.yaml, its command)."""
    return {address: (stage["file"], stage["cmd"]) for address, stage in _stages().items()}


def _stages() -> dict[str, dict[str, Any]]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            params = [p for d in stage.deps if isinstance(d, ParamsDependency) for p in d.params]
            deps = [d.fs_path for d in stage.deps if not isinstance(d, ParamsDependency)]
            file = Path(stage.path).relative_to(ROOT).as_posix()
            out[stage.addressing] = {"file": file, "cmd": stage.cmd, "params": params, "deps": deps}
    return out


STAGES = dvc_stages()


@pytest.mark.parametrize("address", sorted(STAGES))
def test_each_stage_command_parses(address: str) -> None:
    """The command with `--help` appended: click parses every option first, so an option the CLI
    lacks ("No such option: --arm") fails here, as it would under `dvc repro`."""
    command = shlex.split(STAGES[address][1])
    assert command[0] == "sayo", f"{address}: the stage runs {command[0]!r}, not the sayo CLI"
    done = CliRunner().invoke(app, [*command[1:], "--help"])
    assert done.exit_code == 0, f"{address}: `{STAGES[address][1]}` does not parse:\n{done.output}"


def test_plain_repro_runs_the_pipeline_and_the_ablation_is_its_own_target() -> None:
    """`dvc repro` reads ./dvc.yaml only: the five pipeline stages; the ablation's dozens of GRPO
    runs live in experiments/dvc.yaml (`dvc repro experiments/dvc.yaml`)."""
    by_file: dict[str, set[str]] = {}
    for address, (dvcfile, _) in STAGES.items():
        by_file.setdefault(dvcfile, set()).add(address)
    assert by_file["dvc.yaml"] == PIPELINE
    ablation = by_file["experiments/dvc.yaml"]
    assert "experiments/dvc.yaml:ablation" in ablation and len(ablation) > 10


def _probe(cwd: Path, name: str, command: str, extra: list[str]) -> dict[str, Any]:
    record = cwd / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlruns.db'}"}
    args = [sys.executable, str(PROBE), str(record), *shlex.split(command), *extra]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"{name}: {command} {extra} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return dict(json.loads(record.read_text()))


@pytest.fixture(scope="module")
def used(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Stage address -> what its command used: the pipeline in order at a tiny size, the ablation's
    commands as far as `--help` (their imports)."""
    cwd = tmp_path_factory.mktemp("stages")
    shutil.copytree(ROOT / "sayo" / "recipes", cwd / "sayo" / "recipes")
    stages = _stages()
    out = {}
    for name in ("data", "sft", "grpo", "evaluate", "register"):  # each reads the one before's outs
        out[name] = _probe(cwd, name, stages[name]["cmd"], TINY)
    for address in ("experiments/dvc.yaml:ablation-grpo@ws-d0-s0-sayo-0", "experiments/dvc.yaml:ablation"):
        out[address] = {**_probe(cwd, "ablation", stages[address]["cmd"], ["--help"]), "read": None}
    return out


def _code(path: Path) -> bool:
    return path.suffix == ".py" or (path.is_dir() and any(path.rglob("*.py")))


@pytest.mark.slow
@pytest.mark.parametrize("stage", [*sorted(PIPELINE), "experiments/dvc.yaml:ablation-grpo@ws-d0-s0-sayo-0",
                                   "experiments/dvc.yaml:ablation"])  # fmt: skip
def test_stage_deps_are_the_code_its_command_imports(stage: str, used: dict[str, dict[str, Any]]) -> None:
    """Every sayo module the command imported is a dep (its file or a folder above it), so an edit
    re-runs the stage; and every code dep holds a module it imported (no stale entry)."""
    deps = [Path(d) for d in _stages()[stage]["deps"]]
    modules = [Path(m) for m in used[stage]["modules"]]
    missing = sorted(
        m.relative_to(ROOT).as_posix() for m in modules if not any(m == d or d in m.parents for d in deps)
    )
    assert not missing, f"add to the deps of `{stage}`: {missing}"
    stale = sorted(
        d.relative_to(ROOT).as_posix()
        for d in deps
        if ROOT / "sayo" in d.parents and _code(d) and not any(m == d or d in m.parents for m in modules)
    )
    assert not stale, f"`{stage}` imports nothing from these deps: {stale}"


def _covers(param: str, field: str) -> bool:
    return field == param or field.startswith(param + ".")


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_stage_params_are_the_recipe_fields_it_reads(stage: str, used: dict[str, dict[str, Any]]) -> None:
    """Every recipe field the stage read is under one of its params (or a section of NOT_PARAMS), so
    changing it re-runs the stage; and every param is read (no re-run for a knob it ignores)."""
    params = _stages()[stage]["params"]
    read = set(used[stage]["read"])
    leaves = {f for f in read if not any(other.startswith(f + ".") for other in read)}
    unlisted = sorted(
        f for f in leaves if f.split(".")[0] not in NOT_PARAMS and not any(_covers(p, f) for p in params)
    )
    assert not unlisted, f"`{stage}` reads these recipe fields; add them to its params: {unlisted}"
    unread = sorted(p for p in params if not any(_covers(p, f) for f in read))
    assert not unread, f"`{stage}` never reads these params: {unread}"
    recipe = yaml.safe_load((ROOT / "sayo" / "recipes" / "tiny.yaml").read_text())
    absent = [p for p in params if not _in(recipe, p.split("."))]
    assert not absent, f"dvc needs every param in the recipe file; name their section instead: {absent}"


def _in(mapping: Any, keys: list[str]) -> bool:
    return not keys or (isinstance(mapping, dict) and keys[0] in mapping and _in(mapping[keys[0]], keys[1:]))
