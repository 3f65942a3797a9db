"""`make gpu-check` (benchmarks/gpu_check.py) without a GPU: it says so and exits 0; the results it
writes (machine, versions, date, command, status, numbers) for passing, failing, timed-out and
JSON-reporting steps; that it runs where the pipeline stack (mlflow, kfp, dvc, boto3, moto) is not
installed, as on a bare GPU machine (those packages hidden from the subprocesses); and, slow, the
real steps in their CPU smoke shapes, with that stack hidden."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_check import GPU_TESTS, NO_GPU, STEPS, Step, check  # noqa: E402
from hidden_modules import VARIABLE, hiding_env  # noqa: E402


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # also on a GPU machine: no device visible
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--out", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert NO_GPU in done.stdout and not (tmp_path / "r").exists()  # nothing written, nothing run


def test_the_hiding_helper_hides(tmp_path: Path) -> None:
    """The premise of the tests below: a hidden package (installed here) cannot be imported."""
    code = "import importlib.util as u, sys; print(u.find_spec('mlflow'), u.find_spec('yaml') is not None); import mlflow"
    done = subprocess.run([sys.executable, "-c", code], env=hiding_env(tmp_path), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["None", "True"] and "No module named 'mlflow'" in done.stderr


def test_gpu_tests_step_collects_without_the_pipeline_stack(tmp_path: Path) -> None:
    """The `tests` step's own pytest command, collect-only, with mlflow/kfp/dvc/boto3/moto hidden:
    it collects the GPU tests and nothing fails to import (walking all of tests/ fails here)."""
    step = next(s for s in STEPS if s.name == "tests")
    assert step.smoke_args == step.gpu_args
    env = {**hiding_env(tmp_path / "site"), "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, *shlex.split(step.gpu_args), "--collect-only"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", done.stdout)
    assert collected and int(collected.group(1)) >= 4, done.stdout[-2000:]
    assert "error" not in done.stdout.lower()


def test_every_test_file_with_gpu_tests_is_in_the_step() -> None:
    marked = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").glob("test_*.py")
        if re.search(r"pytest\.mark\.gpu\b", path.read_text())
    }
    assert marked == set(GPU_TESTS)
    step = next(s for s in STEPS if s.name == "tests")
    assert shlex.split(step.gpu_args)[-len(GPU_TESTS) :] == list(GPU_TESTS)  # files, not a directory


def test_step_scripts_import_without_the_pipeline_stack(tmp_path: Path) -> None:
    """The check and its benchmark scripts, and what their steps import, load with the stack hidden."""
    modules = ["gpu_check", "grpo_gpu", "attention_capture", "sayo.train.grpo", "sayo.train.sft", "sayo.train.distributed"]  # fmt: skip
    code = f"import importlib; [importlib.import_module(m) for m in {modules!r}]; print('imported')"
    env = hiding_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT), env["PYTHONPATH"]])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-3000:]


def test_makefile_gpu_check_installs_nothing() -> None:
    """A GPU machine has no package registry: `make gpu-check` runs the python at hand, never
    `make install` (which would pip-install the venv)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    done = subprocess.run(
        [make, "-n", "gpu-check", "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install" not in done.stdout and "-m venv" not in done.stdout, done.stdout
    assert re.search(r"\bpython3? benchmarks/gpu_check\.py$", done.stdout, re.M), done.stdout


def test_no_gpu_path_runs_no_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "run_step", lambda *a, **k: pytest.fail("a step ran without a GPU"))
    assert check(tmp_path, cuda_available=lambda: False) == 0


def _py(code: str) -> str:
    return f"-c {code!r}"


def test_results_of_every_outcome_are_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_rows = (
        "import json, sys; json.dump([{'shape': 'tiny', 'time_s': 0.123456}], open(sys.argv[2], 'w'))"
    )
    steps = [
        Step("good", "A passing step", 30, "", _py("print('step time 1.25 s')")),
        Step("bad", "A failing step", 30, "", _py("import sys; print('boom'); sys.exit(3)")),
        Step("slow", "A step past its budget", 2, "", _py("import time; print('started', flush=True); time.sleep(60)")),
        Step("rows", "A step with JSON rows", 30, "", _py(write_rows), json_out=True),
    ]  # fmt: skip
    start = time.monotonic()
    code = check(tmp_path, smoke=True, total_budget_s=sum(s.budget_s for s in steps), steps=steps)
    assert code == 1  # a step failed
    assert time.monotonic() - start < 45  # the sleeping step was killed at its budget
    files = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert sorted(files) == ["bad_gpu.md", "good_gpu.md", "gpu_check_gpu.md", "rows_gpu.md", "slow_gpu.md"]
    for name in ("good_gpu.md", "gpu_check_gpu.md"):
        text = files[name]
        for heading in (
            "- Date: ",
            "- Machine: GPU ",
            "- Versions: sayo ",
            "torch ",
            "transformers ",
            "CPU smoke run",
        ):
            assert heading in text, (name, heading)
    assert "**passed**" in files["good_gpu.md"] and "step time 1.25 s" in files["good_gpu.md"]
    assert "**failed (exit 3)**" in files["bad_gpu.md"] and "boom" in files["bad_gpu.md"]
    assert "**timed out after 2 s**" in files["slow_gpu.md"] and "started" in files["slow_gpu.md"]
    assert "| shape | time_s |" in files["rows_gpu.md"] and "| tiny | 0.1235 |" in files["rows_gpu.md"]
    assert "--json '<rows.json>'" in files["rows_gpu.md"]  # not a temporary path
    summary = files["gpu_check_gpu.md"]
    assert "| good | passed |" in summary and "| slow | timed out after 2 s |" in summary
    assert "rows_gpu.md" in capsys.readouterr().out


def test_gpu_steps_fit_in_eight_minutes_and_run_the_issue_s_benchmarks() -> None:
    assert sum(s.budget_s for s in STEPS) <= 480
    commands = {s.name: s.gpu_args for s in STEPS}
    assert commands["tests"].startswith("-m pytest -m gpu") and commands["tests"].endswith(
        "tests/test_gpu.py"
    )
    assert "--zero 2" in commands["grpo"] and "--shape 3b" in commands["grpo"]
    assert "--full-depth" in commands["attention_capture"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_run_of_the_real_steps_writes_every_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real scripts in their CPU smoke shapes (tiny GRPO on DeepSpeed/gloo, tiny capture), with
    the pipeline stack hidden from them as on a bare GPU machine."""
    pytest.importorskip("deepspeed")
    hidden = hiding_env(tmp_path / "site")  # the steps' subprocesses run without the pipeline stack
    monkeypatch.setenv("PYTHONPATH", hidden["PYTHONPATH"])
    monkeypatch.setenv(VARIABLE, hidden[VARIABLE])
    out = tmp_path / "results"
    assert check(out, smoke=True, total_budget_s=900) == 0, [p.read_text()[-2000:] for p in out.iterdir()]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["attention_capture_gpu.md", "gpu_check_gpu.md", "grpo_gpu.md", "tests_gpu.md"]
    assert "update MFU" in (out / "grpo_gpu.md").read_text()
    assert "| tiny | cpu |" in (out / "attention_capture_gpu.md").read_text()
    assert "4 skipped" in (out / "tests_gpu.md").read_text()  # the GPU tests, collected, no CUDA
