"""The whole pipeline end to end with `kfp.local` (subprocess runner, no Docker) on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("kfp")
from typer.testing import CliRunner

from sayo.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_local_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the configs are read relative to the repository, as in the image
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.delenv("SAYO_IMAGE", raising=False)
    root = tmp_path / "kfp"
    args = ["pipeline", "run-local", "--pipeline-root", str(root), "-a", "mlflow_experiment=sayo-kfp-test"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = root.glob("sayo-*")
    assert (run_dir / "data" / "dataset" / "manifest.jsonl").is_file()
    for stage in ("sft", "grpo"):
        assert (run_dir / stage / "model" / "config.json").is_file(), stage
    assert not (run_dir / "grpo-trainjob").exists()  # grpo_nodes = 1: the single-pod branch ran
    assert (run_dir / "evaluate-2" / "report").read_text().lstrip().lower().startswith("<!doctype html")
    metrics = json.loads((run_dir / "evaluate-2" / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"base", "sft", "grpo"}

    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("sayo-kfp-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags.get("sayo.stage") for r in runs} >= {"sft", "grpo", "evaluate", "register"}
    # the pipeline ends in a registered model: the first version is challenger and (no champion yet) champion
    assert str(client.get_model_version_by_alias("sayo-tiny", "challenger").version) == "1"
    assert str(client.get_model_version_by_alias("sayo-tiny", "champion").version) == "1"
