"""`make gpu-check`: on a machine with one CUDA GPU, check the CUDA paths and record the GPU numbers.

Three steps, each in its own process group with its own time budget (the whole check ≤ 8 minutes
by default), each writing `benchmarks/results/<name>_gpu.md` (machine, versions, date, command,
status, numbers) whatever its outcome, plus a summary `gpu_check_gpu.md`:

  tests              `pytest -m gpu tests/test_gpu.py` (capture = eager attention on CUDA in
                     fp32/bf16, SFT and GRPO steps on the device): only the GPU test files
                     (`GPU_TESTS`), so the check runs where the pipeline stack (mlflow, kfp,
                     dvc, boto3, moto) is not installed, as on a bare GPU machine
  grpo               benchmarks/grpo_gpu.py: GRPO under DeepSpeed ZeRO-2, Qwen2.5-VL-3B shape
  attention_capture  benchmarks/attention_capture.py --full-depth: capture cost at full 3B depth

A step that runs past its budget is killed (with its children) and recorded as timed out with
the output it had printed; the script exits 1 if any step failed or timed out.

    python benchmarks/gpu_check.py                      # the check (needs the CUDA build of torch)
    python benchmarks/gpu_check.py --budget-s 600       # more time in all
    python benchmarks/gpu_check.py --smoke --out /tmp/r # the same on the CPU with the benchmarks'
                                                        # smoke shapes (tests the script, measures nothing)

Without a CUDA device (and without --smoke) it says so and exits 0: nothing to check.

What it needs: torch (the CUDA build), transformers, pydantic, pyyaml, pillow, numpy, pytest and,
for the grpo step, deepspeed; the sayo checkout on PYTHONPATH (installing it is not required).
Nothing of the pipeline stack is imported (tests/test_gpu_check.py runs the steps with it hidden).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TOTAL_BUDGET_S = 480.0  # the 8 minutes
NO_GPU = "no CUDA GPU on this machine: nothing to check (make gpu-check runs on a machine with one)"
# The test files with tests marked `gpu`: collected by name, not by walking tests/, whose other
# modules import the pipeline stack at the top (tests/test_gpu_check.py checks the list is complete)
GPU_TESTS = ("tests/test_gpu.py",)
_PYTEST = f"-m pytest -m gpu -q -rs -p no:cacheprovider {' '.join(GPU_TESTS)}"


@dataclass
class Step:
    name: str  # results file stem: <name>_gpu.md
    title: str
    budget_s: float
    gpu_args: str  # after `python`, shell-quoted
    smoke_args: str  # the CPU smoke form (--smoke)
    json_out: bool = False  # the script takes --json <file> (rows rendered as a table)


@dataclass
class StepResult:
    step: Step
    command: list[str]
    status: str  # passed | failed (exit N) | timed out after N s
    seconds: float
    budget_s: float
    output: str
    rows: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


STEPS = [
    Step(
        "tests",
        "Tests marked `gpu` (CUDA paths)",
        80,
        _PYTEST,
        _PYTEST,
    ),
    Step(
        "grpo",
        "GRPO under DeepSpeed ZeRO-2, Qwen2.5-VL-3B shape, one GPU",
        240,
        "benchmarks/grpo_gpu.py --shape 3b --zero 2 --steps 3 --max-new-tokens 128",
        "benchmarks/grpo_gpu.py --shape tiny --steps 1 --max-new-tokens 6 --image-size 112 --group-size 2",
    ),
    Step(
        "attention_capture",
        "Attention capture at full 3B depth: sayo hooks vs plain SDPA vs eager",
        150,
        "benchmarks/attention_capture.py --full-depth --only qwen --repeats 3",
        "benchmarks/attention_capture.py --only tiny --repeats 1 --device cpu",
        json_out=True,
    ),
]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _sayo_version() -> str:
    """The installed sayo's version, else the checkout's (a GPU machine may run it from PYTHONPATH)."""
    installed = _version("sayo")
    if installed != "not installed":
        return installed
    found = re.search(r'^__version__ = "([^"]+)"', (ROOT / "sayo" / "__init__.py").read_text(), re.M)
    return f"{found.group(1)} (checkout, not installed)" if found else "unknown"


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' (uncommitted changes)' if dirty else ''}" if commit else "unknown"


def _driver() -> str:
    if not shutil.which("nvidia-smi"):
        return "unknown"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def machine_info() -> dict[str, str]:
    """What the numbers were measured on: GPU, driver, CUDA, CPU, versions, commit, date."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} × {torch.cuda.device_count()} ({props.total_memory / 2**30:.0f} GiB each)"
    else:
        gpu = "none (CPU smoke run)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu": gpu,
        "driver": _driver(),
        "cuda": f"{torch.version.cuda or 'none'}, cuDNN {torch.backends.cudnn.version() or 'none'}",
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "deepspeed": _version("deepspeed"),
        "sayo": f"{_sayo_version()}, commit {_git_commit()}",
    }


def run_step(step: Step, smoke: bool, budget_s: float, python: str = sys.executable) -> StepResult:
    """Run one step in its own process group; kill the group when the budget is spent."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        command = [python, *shlex.split(step.smoke_args if smoke else step.gpu_args)]
        if step.json_out:
            command += ["--json", str(rows_file)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        if smoke:
            env.update({"DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""})
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)  # each benchmark is a single-process launch of its own
        start = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=budget_s)
            status = "passed" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            status = f"timed out after {budget_s:.0f} s"
        seconds = time.monotonic() - start
        rows = json.loads(rows_file.read_text()) if rows_file.is_file() else []
    command = [c if c != str(rows_file) else "<rows.json>" for c in command]
    return StepResult(step, command, status, seconds, budget_s, output or "", rows)


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row.get(k) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return ["", "Numbers (`--json`):", "", *lines]


def _shown(command: list[str]) -> str:
    return shlex.join(["python", *command[1:]])


def _header(title: str, info: dict[str, str], smoke: bool) -> list[str]:
    kind = "CPU smoke run of benchmarks/gpu_check.py: tiny shapes, not a measurement" if smoke else "GPU"
    return [
        f"# {title} ({kind})",
        "",
        f"- Date: {info['date']}. Written by `python benchmarks/gpu_check.py{' --smoke' if smoke else ''}`.",
        f"- Machine: GPU {info['gpu']}, driver {info['driver']}, CUDA {info['cuda']}; CPU {info['cpu']}.",
        f"- Versions: sayo {info['sayo']}; python {info['python']}, torch {info['torch']}, "
        f"transformers {info['transformers']}, deepspeed {info['deepspeed']}.",
    ]


def write_result(
    result: StepResult, info: dict[str, str], out_dir: Path, smoke: bool, tail: int = 200
) -> Path:
    """`<out_dir>/<step>_gpu.md`: machine, versions, date, command, status and the step's numbers."""
    lines = result.output.rstrip().splitlines()
    shown = lines[-tail:]
    text = [
        *_header(result.step.title, info, smoke),
        f"- Command: `{_shown(result.command)}` (budget {result.budget_s:.0f} s): "
        f"**{result.status}** in {result.seconds:.1f} s.",
        *_table(result.rows),
        "",
        f"Output{f' (last {tail} of {len(lines)} lines)' if len(lines) > tail else ''}:",
        "",
        "```",
        *shown,
        "```",
        "",
    ]
    path = out_dir / f"{result.step.name}_gpu.md"
    _write(path, "\n".join(text))
    return path


def write_summary(results: list[StepResult], info: dict[str, str], out_dir: Path, smoke: bool) -> Path:
    text = [
        *_header("make gpu-check", info, smoke),
        "",
        "| step | status | seconds | budget s | results |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r.step.name} | {r.status} | {r.seconds:.1f} | {r.budget_s:.0f} | {r.step.name}_gpu.md |"
            for r in results
        ),
        "",
    ]
    path = out_dir / "gpu_check_gpu.md"
    _write(path, "\n".join(text))
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def check(
    out_dir: Path,
    smoke: bool = False,
    total_budget_s: float = TOTAL_BUDGET_S,
    steps: list[Step] | None = None,
    cuda_available: Callable[[], bool] | None = None,
) -> int:
    """Run the steps (or say there is no GPU); write the results; 0 if all passed or nothing to do."""
    import torch

    if not smoke and not (cuda_available or torch.cuda.is_available)():
        print(NO_GPU)
        return 0
    steps = STEPS if steps is None else steps
    scale = total_budget_s / sum(s.budget_s for s in steps)  # the budgets share the total
    info = machine_info()
    results = []
    deadline = time.monotonic() + total_budget_s
    for step in steps:
        budget = max(min(step.budget_s * scale, deadline - time.monotonic()), 1.0)
        print(f"== {step.name}: {step.title} (budget {budget:.0f} s)", flush=True)
        result = run_step(step, smoke, budget)
        print(result.output[-3000:], end="", flush=True)
        results.append(result)
        print(
            f"-> {result.status} in {result.seconds:.1f} s; wrote {write_result(result, info, out_dir, smoke)}"
        )
    print(f"summary: {write_summary(results, info, out_dir, smoke)}")
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the *_gpu.md files go")
    parser.add_argument(
        "--budget-s", type=float, default=TOTAL_BUDGET_S, help="the whole check's time budget"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU smoke shapes (tests this script)")
    args = parser.parse_args(argv)
    return check(args.out, smoke=args.smoke, total_budget_s=args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
