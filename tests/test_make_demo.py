"""`make demo` reports each step's elapsed time (issue 22, item 18): the README states how long the
demo takes, and a user watching it sees which step the time goes to."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["rewards", "data", "sft", "grpo", "evaluate", "register"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_prints_each_steps_elapsed_time(tmp_path: Path) -> None:
    """The Makefile's demo recipe with a stand-in `sayo` (records its arguments, does nothing)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt"):  # the install stamp's prerequisites, older
        (tmp_path / name).write_text("")
    os.utime(tmp_path / "pyproject.toml", (0, 0))
    os.utime(tmp_path / "constraints.txt", (0, 0))
    (venv / ".sayo-installed-dev").write_text("")
    sayo = venv / "bin" / "sayo"
    sayo.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\n')
    sayo.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "demo", f"VENV={venv}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["demo", "data", "sft", "grpo", "evaluate", "register"]
    for step in STEPS:
        line = re.search(
            rf"^== demo {step}: done in (\d+) s \((\d+) s since the demo started\)$", done.stdout, re.M
        )
        assert line, f"no elapsed-time line for {step}:\n{done.stdout}"
        assert int(line.group(1)) <= int(line.group(2))


def test_readme_states_the_demos_measured_time() -> None:
    text = (ROOT / "README.md").read_text()
    assert "runs the main job on a laptop CPU in a few minutes" not in text
    assert re.search(r"It takes about \d+ minutes on 2 CPU cores: \d+ min \d+ s measured", text)
