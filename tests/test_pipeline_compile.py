"""The compiled pipeline: GPU placement, secrets as env, nothing secret in clear, and not stale."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("kfp")
from sayo.kubeflow.compile import COMPILED, compiled_text, is_stale

ROOT = Path(__file__).resolve().parents[1]
GPU_STAGES = ("exec-sft", "exec-grpo", "exec-evaluate", "exec-evaluate-2")  # evaluate: one per GRPO branch
CPU_STAGES = (
    "exec-data",
    "exec-grpo-trainjob",
    "exec-register",
    "exec-register-2",
)  # the job's pods get GPUs
SECRET_ENV = {
    "sayo-mlflow": {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},
    "sayo-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"},
}


@pytest.fixture(scope="module")
def compiled() -> tuple[dict[str, Any], dict[str, Any], str]:
    text = compiled_text(ROOT)
    spec, platform = yaml.safe_load_all(text)
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


def test_checked_in_yaml_is_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAYO_IMAGE", raising=False)
    assert not is_stale(ROOT), "pipelines/sayo_pipeline.yaml is stale: run `sayo pipeline compile`"


def test_staleness_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / COMPILED).parent.mkdir()
    (tmp_path / COMPILED).write_text((ROOT / COMPILED).read_text())
    assert not is_stale(tmp_path)
    monkeypatch.setenv("SAYO_IMAGE", "registry.example/sayo:other")  # the sources now compile to other YAML
    assert is_stale(tmp_path)
    monkeypatch.delenv("SAYO_IMAGE")
    (tmp_path / COMPILED).unlink()  # a missing YAML is stale too
    assert is_stale(tmp_path)


@pytest.mark.parametrize("executor", GPU_STAGES)
def test_gpu_stages_are_placed_on_the_gpu_pool(compiled: tuple, executor: str) -> None:
    spec, platform, _ = compiled
    resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["resourceCpuRequest"] == "8" and resources["resourceMemoryRequest"] == "64Gi"
    placement = platform[executor]
    assert placement["nodeSelector"]["labels"] == {"sayo.dev/node-pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in placement["tolerations"]
    shm = placement["emptyDirMounts"][0]
    assert (shm["mountPath"], shm["medium"], shm["sizeLimit"]) == ("/dev/shm", "Memory", "16Gi")


@pytest.mark.parametrize("executor", [*CPU_STAGES, *GPU_STAGES])
def test_every_stage_gets_credentials_from_secrets(compiled: tuple, executor: str) -> None:
    _, platform, _ = compiled
    found = {e["secretName"]: {k["envVar"] for k in e["keyToEnv"]} for e in platform[executor]["secretAsEnv"]}
    assert found == SECRET_ENV


def test_cpu_stages_stay_off_the_gpu_pool(compiled: tuple) -> None:
    spec, platform, _ = compiled
    for executor in CPU_STAGES:
        assert "accelerator" not in spec["deploymentSpec"]["executors"][executor]["container"].get(
            "resources", {}
        )
        assert "nodeSelector" not in platform[executor]


def test_caching_and_retries(compiled: tuple) -> None:
    spec, _, _ = compiled
    tasks = dict(spec["root"]["dag"]["tasks"])
    for branch in ("condition-2", "condition-3"):
        tasks.update(spec["components"][f"comp-{branch}"]["dag"]["tasks"])
    assert tasks["data"]["cachingOptions"]["enableCache"] is True
    for name in ("sft", "grpo", "grpo-trainjob", "evaluate", "evaluate-2", "register", "register-2"):
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False, name
    for name in ("sft", "grpo", "grpo-trainjob"):  # training steps retry with exponential backoff
        retry = tasks[name]["retryPolicy"]
        assert retry["maxRetryCount"] == 2 and retry["backoffFactor"] == 2.0
        assert (retry["backoffDuration"], retry["backoffMaxDuration"]) == ("120s", "3600s")


def test_multi_node_grpo_runs_only_when_asked(compiled: tuple) -> None:
    spec, _, _ = compiled
    dags = [spec["root"], *spec["components"].values()]
    tasks = [t for d in dags for t in d.get("dag", {}).get("tasks", {}).values()]
    triggers = [t.get("triggerPolicy", {}).get("condition", "") for t in tasks]
    conditions = [" ".join(c.split()) for c in triggers if c]
    assert "int(inputs.parameter_values['pipelinechannel--grpo_nodes']) > 1" in conditions
    assert "!(int(inputs.parameter_values['pipelinechannel--grpo_nodes']) > 1)" in conditions


def test_nothing_secret_in_clear(compiled: tuple) -> None:
    _, _, text = compiled
    for pattern in (
        r"AKIA[0-9A-Z]{16}",  # AWS access key ids
        r"(?i)(password|secret_access_key|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}",
        r"(?i)bearer\s+[A-Za-z0-9._-]{8,}",
    ):
        assert not re.search(pattern, text), pattern
    spec, _, _ = compiled
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert not [n for n in defaults if re.search(r"(?i)password|secret|token|key_id", n)]


def test_compile_with_another_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sayo.cli import app

    monkeypatch.setenv("SAYO_IMAGE", "unset")  # the command sets it; monkeypatch removes it afterwards
    out = tmp_path / "p.yaml"
    args = [
        "pipeline",
        "compile",
        "--image",
        "registry.example/sayo:1.2",
        "--out",
        str(out),
        "--root",
        str(ROOT),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["image"]["defaultValue"] == "registry.example/sayo:1.2"
    assert defaults["gpu_image"]["defaultValue"] == "registry.example/sayo:1.2-cuda"


def test_trainer_api_is_a_pipeline_parameter_of_the_job_step(compiled: tuple) -> None:
    spec, _, _ = compiled
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["trainer_api"]["defaultValue"] == "v2.2"  # Kubeflow Trainer 2.2+ unless told otherwise
    job = spec["components"]["comp-condition-2"]["dag"]["tasks"]["grpo-trainjob"]
    wired = job["inputs"]["parameters"]["trainer_api"]["componentInputParameter"]
    assert wired == "pipelinechannel--trainer_api"
