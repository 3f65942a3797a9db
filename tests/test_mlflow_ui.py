"""The evaluate stage logged to a real `mlflow server`, then checked in the MLflow UI with headless Chromium.

The UI is a JavaScript app, so the page is rendered by Chromium (`--dump-dom` after a virtual-time
budget) and the run-comparison page must list the per-checkpoint runs; a screenshot is kept under
`outputs/test-artifacts/` for humans. Skipped where Chromium is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_evaluate_run import eval_dataset, other_policy  # noqa: F401  (module fixtures)

from sayo.evaluate.run import evaluate
from sayo.recipe import load_recipe
from sayo.tracking import StageRun, TrackingConfig

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "outputs" / "test-artifacts"
EXPERIMENT = "evaluate-ui-test"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--virtual-time-budget=15000"]  # fmt: skip
pytestmark = pytest.mark.slow


def _fake_training_runs(uri: str) -> None:
    """sft and grpo runs with a few logged steps, for the report's training curves."""
    for stage in ("sft", "grpo"):
        with StageRun(TrackingConfig(tracking_uri=uri, experiment=EXPERIMENT), stage=stage) as run:
            for step in range(1, 6):
                run.log_metrics(
                    {"reward/total_mean": 0.1 * step, "response_length_mean": 20.0 - step}, step=step
                )


@pytest.fixture(scope="module")
def evaluated(mlflow_server: str, eval_dataset: Path, other_policy: Path, tmp_path_factory) -> dict:  # noqa: F811
    _fake_training_runs(mlflow_server)
    out = tmp_path_factory.mktemp("eval_ui") / "eval"
    cfg = load_recipe("tiny", [
        f"evaluate.benchmarks=[{{name: synthetic, path: {eval_dataset}, split: null, max_samples: 4}}]",
        f"evaluate.out_dir={out}", "evaluate.max_new_tokens=6", "evaluate.bootstrap_samples=50",
        "evaluate.gallery_samples=2", f"tracking.tracking_uri={mlflow_server}", f"tracking.experiment={EXPERIMENT}",
        "device=cpu",
    ])  # fmt: skip
    result = evaluate(cfg, ["base=tiny", f"grpo={other_policy}"], progress=False)
    return {"uri": mlflow_server, "result": result, "out": out}


def test_evaluate_logs_metrics_figures_and_nested_runs(evaluated: dict) -> None:
    client, result = MlflowClient(evaluated["uri"]), evaluated["result"]
    parent = client.get_run(result.run_id)
    assert parent.data.tags["sayo.stage"] == "evaluate"
    assert "grpo/synthetic/accuracy" in parent.data.metrics and "answers_per_s" in parent.data.metrics
    logged = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"report.html", "report.md", "metrics.json", "per_sample.jsonl", "figures"} <= logged
    figures = {Path(a.path).name for a in client.list_artifacts(result.run_id, "figures")}
    assert {
        "accuracy.png",
        "region_attention.png",
        "heatmaps.png",
        "training_curves.png",
    } <= figures  # curves from the runs
    for name, run_id in result.checkpoint_run_ids.items():
        child = client.get_run(run_id)
        assert child.info.run_name == f"evaluate-{name}"
        assert child.data.tags["mlflow.parentRunId"] == result.run_id
        assert child.data.metrics["synthetic/accuracy"] == result.metrics[name]["synthetic"]["accuracy"]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_mlflow_ui_compares_the_evaluated_runs(evaluated: dict, tmp_path: Path) -> None:
    result = evaluated["result"]
    client = MlflowClient(evaluated["uri"])
    experiment = client.get_run(result.run_id).info.experiment_id
    ids = json.dumps(list(result.checkpoint_run_ids.values()))
    url = f"{evaluated['uri']}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(json.dumps([experiment]))}"
    dom = _chromium(["--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for name in result.checkpoint_run_ids:
        assert f"evaluate-{name}" in dom.stdout, f"run evaluate-{name} not on the comparison page"
    assert "synthetic/accuracy" in dom.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mlflow_compare_runs.png"
    done = _chromium(["--window-size=1400,1000", f"--screenshot={shot}", url], tmp_path / "profile-shot")
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
