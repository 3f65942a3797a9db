"""The repo's dvc pipeline in a throwaway git repo: repro is incremental, the recipe drives it, code edits
re-run the stages that import the code, S3 round trip.

Each test copies the real `dvc.yaml`, `.dvcignore` and the whole `sayo/` package (whose
`sayo/recipes/tiny.yaml` is the pipeline's params file) into a temporary git repository and runs
the `dvc` command line, so what is tested is what `dvc repro` does in this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto_s3 import moto_server

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "sayo/recipes/tiny.yaml"
OTHER_STAGE = {
    "cmd": "python -c \"open('other.txt', 'w').write('x')\"",
    "params": ["other"],
    "outs": ["other.txt"],
}

pytestmark = pytest.mark.slow


def _run(repo: Path, *args: str, timeout: int = 300, **extra_env: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        **extra_env,
    }
    command = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _set_param(repo: Path, section: str, key: str, value: object) -> None:
    recipe = yaml.safe_load((repo / RECIPE).read_text())
    recipe.setdefault(section, {})[key] = value
    (repo / RECIPE).write_text(yaml.safe_dump(recipe, sort_keys=False))


def _copy_project(repo: Path) -> None:
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "sayo", repo / "sayo", ignore=shutil.ignore_patterns("__pycache__"))
    _set_param(repo, "data", "synthetic", {**_recipe(repo)["data"]["synthetic"], "num_samples": 16})


def _recipe(repo: Path) -> dict:
    return dict(yaml.safe_load((repo / RECIPE).read_text()))


def _commit_all(repo: Path) -> None:
    _run(repo, "git", "init", "-q")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "pipeline")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed git+dvc repo holding this project's data pipeline (16 synthetic samples)."""
    repo = tmp_path / "repo"
    _copy_project(repo)
    (repo / "params.yaml").write_text("other: {x: 1}\n")  # the independent stage's own params
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    # the data stage only (the training stages take minutes of CPU), plus an independent stage
    # that must not re-run for data params
    pipeline["stages"] = {"data": pipeline["stages"]["data"], "other": OTHER_STAGE}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "pipeline")
    return repo


def _num_samples(repo: Path) -> int:
    return int(json.loads((repo / "data/processed/stats.json").read_text())["num_samples"])


def test_repro_is_incremental(repo: Path) -> None:
    first = _run(repo, "dvc", "repro")
    assert "Running stage 'data'" in first and "Running stage 'other'" in first
    assert _num_samples(repo) == 16
    second = _run(repo, "dvc", "repro")
    assert "Running stage" not in second, second  # nothing changed: a no-op
    _set_param(repo, "data", "seed", 1)
    third = _run(repo, "dvc", "repro")
    assert "Running stage 'data'" in third and "Running stage 'other'" not in third, third


def test_exp_run_set_param(repo: Path) -> None:
    _run(repo, "dvc", "repro")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "baseline")
    _run(repo, "dvc", "exp", "run", "-S", f"{RECIPE}:data.synthetic.num_samples=24")
    assert _num_samples(repo) == 24
    assert _recipe(repo)["data"]["synthetic"]["num_samples"] == 24


def test_editing_a_core_module_reruns_the_stages_that_import_it(tmp_path: Path) -> None:
    """The whole pipeline, its state recorded without training (`dvc commit`): an edit of
    `sayo/packing.py` marks changed exactly the stages that list it."""
    repo = tmp_path / "repo"
    _copy_project(repo)
    _commit_all(repo)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    stages = list(pipeline)  # the five pipeline stages (the ablation's are in experiments/dvc.yaml)
    for stage in (pipeline[name] for name in stages):  # stand-in outputs (untracked by git)
        for out in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = repo / (out if isinstance(out, str) else next(iter(out)))
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "x").write_text("x")
    _run(repo, "dvc", "commit", "-f", "-q", *stages)  # the five pipeline stages (not the ablation's)
    assert "up to date" in _run(repo, "dvc", "status", *stages)
    packing = repo / "sayo" / "packing.py"
    packing.write_text(packing.read_text() + "\n# an edit\n")
    changed = json.loads(_run(repo, "dvc", "status", "--json", *stages))
    # the stages whose deps list the file or a folder above it (tests/test_dvc_stages.py checks
    # those deps against what each stage's command imports), and only those
    listing = {n for n in stages if any(d == "sayo/packing.py" or d == "sayo" for d in pipeline[n]["deps"])}
    assert {"sft", "grpo", "evaluate"} <= listing and set(changed) == listing, changed
    assert "sayo/packing.py" in json.dumps(changed["grpo"])


# the tiny recipe at a size that runs every stage in seconds (the fresh clone's copy is edited)
FRESH_CLONE_SIZE = {
    "data": {"synthetic": {"num_samples": 40}},
    "sft": {"max_steps": 2, "eval_every": 1, "eval_samples": 2},
    "grpo": {
        "max_steps": 1,
        "prompts_per_step": 2,
        "probe_every": 1,
        "probe_samples": 2,
        "max_new_tokens": 8,
    },
    "checkpoint": {"every": 1},
    "evaluate": {"max_new_tokens": 8, "bootstrap_samples": 20},
}


def _shrink(repo: Path) -> None:
    recipe = _recipe(repo)
    for section, values in FRESH_CLONE_SIZE.items():
        for key, value in values.items():
            if isinstance(value, dict):
                recipe[section][key] = {**recipe[section][key], **value}
            else:
                recipe[section][key] = value
    (repo / RECIPE).write_text(yaml.safe_dump(recipe, sort_keys=False))


@pytest.mark.timeout(1800)
def test_plain_repro_on_a_fresh_clone(tmp_path: Path) -> None:
    """`git clone` of this repository (its HEAD), then a plain `dvc repro`: every pipeline stage
    runs for real (the tiny recipe, made smaller in the clone), with the CLI on PATH as after
    `source .venv/bin/activate`; the ablation (experiments/dvc.yaml) is not part of it."""
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(ROOT), str(clone))
    _shrink(clone)
    env = {"PYTHONPATH": str(clone), "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlruns.db'}"}
    out = _run(clone, "dvc", "repro", timeout=1500, **env)
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")]
    assert ran == ["data", "sft", "grpo", "evaluate", "register"], out
    decision = json.loads((clone / "outputs" / "register" / "decision.json").read_text())
    assert decision["version"], decision
    assert "up to date" in _run(clone, "dvc", "status", "dvc.yaml", **env)
    assert "Running stage" not in _run(clone, "dvc", "repro", **env)  # a second repro: nothing to do


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server(monkeypatch) as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="sayo-dvc")
        yield endpoint


def test_push_then_pull_into_fresh_clone(repo: Path, s3: str, tmp_path: Path) -> None:
    _run(repo, "dvc", "repro")
    _run(repo, "dvc", "remote", "add", "-d", "store", "s3://sayo-dvc/cache")
    _run(repo, "dvc", "remote", "modify", "store", "endpointurl", s3)
    assert "secret" not in (repo / ".dvc" / "config").read_text()  # credentials only from the environment
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "data v1")
    _run(repo, "dvc", "push")
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data" / "processed").exists()
    _run(clone, "dvc", "pull")
    assert _tree(clone / "data" / "processed") == _tree(repo / "data" / "processed")
    assert _run(clone, "dvc", "status").strip().endswith("Data and pipelines are up to date.")
