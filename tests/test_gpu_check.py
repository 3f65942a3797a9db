"""`make gpu-check` (benchmarks/gpu_check.py) without a GPU: it says so and exits 0; the results it
writes (machine, versions, date, command, status, numbers) for passing, failing, timed-out and
JSON-reporting steps; and, slow, the real steps in their CPU smoke shapes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_check import NO_GPU, STEPS, Step, check  # noqa: E402


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
    assert commands["tests"].startswith("-m pytest -m gpu")
    assert "--zero 2" in commands["grpo"] and "--shape 3b" in commands["grpo"]
    assert "--full-depth" in commands["attention_capture"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_run_of_the_real_steps_writes_every_result(tmp_path: Path) -> None:
    """The real scripts in their CPU smoke shapes (tiny GRPO on DeepSpeed/gloo, tiny capture)."""
    pytest.importorskip("deepspeed")
    assert check(tmp_path, smoke=True, total_budget_s=900) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["attention_capture_gpu.md", "gpu_check_gpu.md", "grpo_gpu.md", "tests_gpu.md"]
    assert "update MFU" in (tmp_path / "grpo_gpu.md").read_text()
    assert "| tiny | cpu |" in (tmp_path / "attention_capture_gpu.md").read_text()
