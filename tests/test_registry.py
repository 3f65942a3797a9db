"""The promotion gate by hand, and the `register` stage against a real `mlflow server` (slow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from sayo.cli import app
from sayo.registry import RegisterConfig, gate_decision, register_checkpoint
from sayo.registry.model import encode_image
from sayo.registry.register import checkpoint_metrics, data_version, git_commit
from sayo.tracking import TrackingConfig

ROOT = Path(__file__).resolve().parents[1]
GATE = ["synthetic/accuracy"]
CHAMPION = {"synthetic/accuracy": 0.50, "chart/accuracy": 0.40, "synthetic/format_rate": 1.0}


@pytest.mark.parametrize(
    ("challenger", "promote", "why"),
    [
        (
            {"synthetic/accuracy": 0.55, "chart/accuracy": 0.40},
            True,
            "beats",
        ),  # +0.05 >= margin, no regression
        ({"synthetic/accuracy": 0.505, "chart/accuracy": 0.40}, False, "margin"),  # +0.005 < margin 0.01
        ({"synthetic/accuracy": 0.45, "chart/accuracy": 0.60}, False, "margin"),  # worse on the gate metric
        (
            {"synthetic/accuracy": 0.60, "chart/accuracy": 0.37},
            False,
            "tolerance",
        ),  # other benchmark −0.03 > 0.02
        ({"synthetic/accuracy": 0.60, "chart/accuracy": 0.39}, True, "beats"),  # −0.01 is within tolerance
        (
            {"synthetic/accuracy": 0.60, "synthetic/format_rate": 0.0},
            True,
            "beats",
        ),  # only accuracies are guarded
    ],
)
def test_gate_decision_by_hand(challenger: dict[str, float], promote: bool, why: str) -> None:
    decision = gate_decision(challenger, CHAMPION, GATE, margin=0.01, tolerance=0.02)
    assert decision.promote is promote
    assert why in decision.reason
    assert decision.deltas["synthetic/accuracy"] == pytest.approx(challenger["synthetic/accuracy"] - 0.5)


def test_gate_first_version_and_missing_metric() -> None:
    assert gate_decision({"synthetic/accuracy": 0.1}, None, GATE, 0.01, 0.02).promote  # nothing to beat
    with pytest.raises(ValueError, match="not in the challenger"):
        gate_decision({"chart/accuracy": 0.1}, CHAMPION, GATE, 0.01, 0.02)


def test_checkpoint_metrics_and_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = {
        "base": {"synthetic": {"accuracy": 0.1}},
        "grpo": {"synthetic": {"accuracy": 0.3, "region_attention": None}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(nested))
    assert checkpoint_metrics(tmp_path / "metrics.json") == (
        "grpo",
        {"synthetic/accuracy": 0.3},
    )  # last, nulls dropped
    assert checkpoint_metrics(tmp_path / "metrics.json", "base")[1] == {"synthetic/accuracy": 0.1}
    with pytest.raises(ValueError, match="no checkpoint 'sft'"):
        checkpoint_metrics(tmp_path / "metrics.json", "sft")
    (tmp_path / "dvc.lock").write_text(
        "stages:\n  data:\n    outs:\n    - path: data/processed\n      md5: abc.dir\n"
    )
    assert data_version(tmp_path / "dvc.lock") == "abc.dir"
    assert data_version(tmp_path / "missing.lock") == "unknown"
    monkeypatch.chdir(tmp_path)  # not a git repository
    assert git_commit() == "unknown"


@pytest.fixture(scope="module")
def registrations(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three versions: the first becomes champion, a worse one is refused, a better one (via the CLI) promoted."""
    tracking = TrackingConfig(tracking_uri=mlflow_server, experiment="registry-test")
    cfg = RegisterConfig(model_name="sayo-registry-test", gate_metrics=GATE, margin=0.01, tolerance=0.02)
    first = register_checkpoint(
        "tiny", {"synthetic/accuracy": 0.30, "chart/accuracy": 0.40}, cfg, tracking, max_new_tokens=8
    )
    worse = register_checkpoint(
        "tiny", {"synthetic/accuracy": 0.25, "chart/accuracy": 0.40}, cfg, tracking, max_new_tokens=8
    )
    folder = tmp_path_factory.mktemp("register")
    metrics = {"grpo": {"synthetic": {"accuracy": 0.45}, "chart": {"accuracy": 0.39}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    args = ["register", "--checkpoint", "tiny", "--metrics", str(folder / "metrics.json"), "--out", str(folder / "decision.json"),
            "--config", "tiny", f"tracking.tracking_uri={mlflow_server}",
            "tracking.experiment=registry-test", "register.model_name=sayo-registry-test", "evaluate.max_new_tokens=8"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {"first": first, "worse": worse, "cli": result.output, "decision": json.loads((folder / "decision.json").read_text()),
            "uri": mlflow_server, "name": cfg.model_name}  # fmt: skip


@pytest.mark.slow
def test_versions_aliases_and_gate_tags(registrations: dict) -> None:
    client = MlflowClient(tracking_uri=registrations["uri"], registry_uri=registrations["uri"])
    name = registrations["name"]
    assert (
        registrations["first"].decision.promote
        and registrations["first"].decision.reason == "no champion yet"
    )
    assert not registrations["worse"].decision.promote and registrations["worse"].champion_version == "1"
    assert registrations["decision"]["promote"] is True and registrations["decision"]["version"] == "3"
    assert "promoted to champion" in registrations["cli"]
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert client.get_model_version_by_alias(name, "challenger").version == "3"
    refused = client.get_model_version(name, "2")
    assert refused.tags["sayo.gate.decision"] == "refused"
    assert refused.tags["sayo.gate.champion_version"] == "1"
    assert json.loads(refused.tags["sayo.gate.deltas"])["synthetic/accuracy"] == pytest.approx(-0.05)
    promoted = client.get_model_version(name, "3")
    assert promoted.tags["sayo.gate.decision"] == "promoted"
    assert float(promoted.tags["sayo.metric.synthetic/accuracy"]) == 0.45
    assert promoted.tags["sayo.data_version"] == data_version(ROOT / "dvc.lock")
    assert (
        promoted.tags["sayo.git_commit"]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    )
    assert json.loads(promoted.tags["sayo.config"])["register"]["model_name"] == name
    assert client.get_run(promoted.run_id).data.tags["sayo.stage"] == "register"


@pytest.mark.slow
def test_champion_loads_and_answers(registrations: dict) -> None:
    mlflow.set_tracking_uri(registrations["uri"])
    mlflow.set_registry_uri(registrations["uri"])
    try:
        uri = f"models:/{registrations['name']}@champion"
        info = mlflow.models.get_model_info(uri)
        assert info.signature.inputs.input_names() == ["image", "question"]
        model = mlflow.pyfunc.load_model(uri)
        request = pd.DataFrame({"image": [encode_image(Image.new("RGB", (84, 56), "blue"))] * 2,
                                "question": ["What colour is the image?", "How many squares?"]})  # fmt: skip
        answers = model.predict(request)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    assert list(answers.columns) == ["answer", "completion"] and len(answers) == 2
    assert all(
        isinstance(text, str) and text for text in answers["completion"]
    )  # the untrained policy babbles
