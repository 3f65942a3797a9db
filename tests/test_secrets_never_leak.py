"""Credentials in the environment never end up in what sayo writes or logs.

Pods get the MLflow, S3 and KFP credentials as environment variables (infra/k8s/secrets/,
`sayo.kubeflow.secrets`). A tracked SFT stage runs here with distinctive random fake values of
all of them set, against a real MLflow server (so the client sends them over HTTP), and then
every place an operator or a reader of the run could see is searched for each value: the run's
params, tags and metric names, every artifact (downloaded), everything the server stored (its
sqlite database, artifact store and log), the captured stdout/stderr and log records, the
checkpoint directories byte for byte, and the compiled pipeline YAML.
"""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path

import pytest
from conftest import build_tiny_dataset

from sayo.recipe import load_recipe
from sayo.train.sft import train_sft

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "KFP_TOKEN",
)


def fake_credentials() -> dict[str, str]:
    """A distinctive random value per variable (no value is a substring of ordinary output)."""
    alphabet = string.ascii_letters + string.digits
    return {
        name: f"{name.lower().replace('_', '')}-{''.join(secrets.choice(alphabet) for _ in range(24))}"
        for name in CREDENTIALS
    }


def leaks(values: dict[str, str], where: dict[str, bytes | str]) -> list[str]:
    """`name in place` for every value found in a place (text or bytes)."""
    found = []
    for place, content in where.items():
        data = content.encode() if isinstance(content, str) else content
        found += [f"{name} in {place}" for name, value in values.items() if value.encode() in data]
    return found


def files_under(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_leaks_finds_a_planted_value(tmp_path: Path) -> None:
    """The search itself can fail: a value in a nested binary file or a log line is reported."""
    values = fake_credentials()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "model.safetensors").write_bytes(
        b"\x00\x01" + values["KFP_TOKEN"].encode() + b"\xff"
    )
    found = leaks(values, {**files_under(tmp_path), "log": f"token={values['AWS_SECRET_ACCESS_KEY']}"})
    assert found == [f"KFP_TOKEN in {tmp_path / 'a/b/model.safetensors'}", "AWS_SECRET_ACCESS_KEY in log"]
    assert leaks(values, {"clean": "nothing here"}) == []


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("data") / "processed", 24)


@pytest.mark.slow
def test_tracked_sft_and_compiled_pipeline_hold_no_credential(
    tmp_path: Path,
    small_dataset: Path,
    mlflow_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient
    from mlflow_fixtures import SERVER_ROOTS

    values = fake_credentials()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)  # every library's debug records too
    cfg = load_recipe(
        "tiny",
        [
            f"data.path={small_dataset}",
            f"checkpoint.dir={tmp_path / 'ckpt'}",
            "device=cpu",
            "sft.max_steps=3",
            "sft.batch_size=4",
            "sft.log_every=1",
            "sft.eval_every=3",
            "sft.eval_samples=4",
            "checkpoint.every=2",  # a step checkpoint (optimizer, RNG, data position) and the final one
            "tracking.enabled=true",
            f"tracking.tracking_uri={mlflow_server}",
            "tracking.experiment=secrets-never-leak",
        ],
    )
    result = train_sft(cfg)

    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and "loss" in run.data.metrics  # the run really logged
    downloaded = Path(client.download_artifacts(result.run_id, "", str(tmp_path / "artifacts")))
    from sayo.kubeflow.compile import compiled_text

    pipeline_yaml = compiled_text(ROOT)
    out, err = capfd.readouterr()
    places: dict[str, bytes | str] = {
        "params": repr(run.data.params),
        "tags": repr(run.data.tags),
        "metric names": repr(sorted(run.data.metrics)),
        "stdout": out,
        "stderr": err,
        "log records": "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records),
        "compiled pipeline": pipeline_yaml,
        **files_under(downloaded, tmp_path / "ckpt", SERVER_ROOTS[mlflow_server]),
    }
    assert any(Path(p).name == "config.yaml" for p in places)  # artifacts and checkpoints were searched
    assert (tmp_path / "ckpt" / "sft" / "step-00000002").is_dir() and result.final_dir.is_dir()
    assert leaks(values, places) == []
