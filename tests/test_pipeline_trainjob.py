"""The multi-node GRPO job spec (a pure function), its state machine and create-and-wait, no cluster."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from sayo.kubeflow.trainjob import JobRequest, create_and_wait, job_manifest, job_state, node_script


def request(**changes: Any) -> JobRequest:
    base: dict[str, Any] = {
        "name": "sayo-grpo-abc-job",
        "namespace": "ml",
        "image": "ghcr.io/sayo-ml/sayo:0.1.0-cuda",
        "config": "qwen2_5_vl_7b",
        "overrides": ["grpo.group_size=8", "deepspeed.config=zero3"],
        "staging_uri": "s3://sayo-artifacts/trainjobs/run-1",
        "nodes": 4,
        "gpus_per_node": 8,
    }
    return JobRequest(**{**base, **changes})


SECRET_ENV = {
    "MLFLOW_TRACKING_URI": "sayo-mlflow",
    "MLFLOW_TRACKING_USERNAME": "sayo-mlflow",
    "MLFLOW_TRACKING_PASSWORD": "sayo-mlflow",
    "AWS_ACCESS_KEY_ID": "sayo-s3",
    "AWS_SECRET_ACCESS_KEY": "sayo-s3",
    "AWS_ENDPOINT_URL": "sayo-s3",
    "MLFLOW_S3_ENDPOINT_URL": "sayo-s3",
}


def _pod_patch(spec: dict[str, Any], trainer_api: str) -> dict[str, Any]:
    """The pod fields patched into the runtime's `node` job, from either TrainJob form."""
    if trainer_api == "v2.1":
        [override] = spec["podTemplateOverrides"]
        assert override["targetJobs"] == [{"name": "node"}] and "runtimePatches" not in spec
        return dict(override["spec"])
    [patch] = spec["runtimePatches"]
    assert patch["manager"] == "sayo.dev/pipeline" and "podTemplateOverrides" not in spec
    [job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return dict(job["template"]["spec"]["template"]["spec"])


@pytest.mark.parametrize("trainer_api", ["v2.2", "v2.1"])
def test_trainjob_manifest(trainer_api: str) -> None:
    job = job_manifest(request(trainer_api=trainer_api, service_account="sayo-pipeline"))
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["metadata"]["namespace"] == "ml"
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    # credentials: through the trainer's env (a patch may not set the node container's env)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in trainer["env"]}
    assert {name: ref["name"] for name, ref in refs.items()} == SECRET_ENV
    assert all(ref["key"] == name and ref["optional"] for name, ref in refs.items())
    pod = _pod_patch(job["spec"], trainer_api)
    assert pod["nodeSelector"] == {"sayo.dev/node-pool": "gpu"}
    assert pod["serviceAccountName"] == "sayo-pipeline"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    [container] = pod["containers"]
    assert container["name"] == "node" and set(container) == {"name", "volumeMounts"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/dev/shm", "/workspace"}  # shared memory and a writable scratch for a non-root image


def test_default_trainjob_form_is_the_current_trainer() -> None:
    assert request().trainer_api == "v2.2"
    assert "runtimePatches" in job_manifest(request())["spec"]


def test_pytorchjob_manifest_has_master_and_workers() -> None:
    job = job_manifest(request(kind="pytorchjob", nodes=3))
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == SECRET_ENV
    assert "Worker" not in job_manifest(request(kind="pytorchjob", nodes=1))["spec"]["pytorchReplicaSpecs"]


@pytest.mark.parametrize(
    ("kind", "rank", "addr"),
    [("trainjob", "${PET_NODE_RANK}", "${PET_MASTER_ADDR}"), ("pytorchjob", "${RANK}", "${MASTER_ADDR}")],
)
def test_node_script_runs_torchrun_over_sayo_grpo(kind: str, rank: str, addr: str) -> None:
    script = node_script(request(kind=kind))
    lines = script.splitlines()
    assert lines[0] == "set -euo pipefail"
    assert 'download_dir("s3://sayo-artifacts/trainjobs/run-1/data", "/workspace/data")' in lines[1]
    torchrun = lines[2]
    assert torchrun.startswith("torchrun --nnodes=4 --nproc-per-node=8 ")
    assert f"--node-rank={rank}" in torchrun and f"--master-addr={addr}" in torchrun
    argv = shlex.split(torchrun.split(" -m ", 1)[1])
    assert argv[:4] == ["sayo", "grpo", "--config", "qwen2_5_vl_7b"]
    assert argv[4:] == [
        "grpo.group_size=8",
        "deepspeed.config=zero3",
        "data.path=/workspace/data",
        "grpo.init_from=/workspace/sft",
        "checkpoint.dir=/workspace/checkpoints",
    ]
    assert lines[3].startswith(f'if [ "{rank}" = "0" ]') and "upload_dir(" in lines[3]


def test_overrides_are_shell_quoted() -> None:
    script = node_script(request(overrides=["rewards.weights={accuracy: 1, format: 0.5}"]))
    assert "'rewards.weights={accuracy: 1, format: 0.5}'" in script


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "mpijob"}, "kind"),  # unknown job kind
        ({"trainer_api": "v2.0"}, "trainer_api"),  # podSpecOverrides is not generated
        ({"nodes": 0}, "nodes"),  # at least one node
        ({"staging_uri": "/tmp/x"}, "staging_uri"),  # nodes share data through S3 only
        ({"name": "x" * 64}, "name"),  # Kubernetes name limit
    ],
)
def test_request_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        request(**changes)


@pytest.mark.parametrize(
    ("kind", "conditions", "state"),
    [
        ("trainjob", [], "running"),  # no status yet
        ("trainjob", [{"type": "Created", "status": "True"}], "running"),
        ("trainjob", [{"type": "Complete", "status": "True"}], "succeeded"),
        ("trainjob", [{"type": "Complete", "status": "False"}], "running"),  # False conditions do not count
        ("trainjob", [{"type": "Failed", "status": "True"}], "failed"),
        ("pytorchjob", [{"type": "Running", "status": "True"}], "running"),
        ("pytorchjob", [{"type": "Succeeded", "status": "True"}], "succeeded"),
        (
            "pytorchjob",
            [{"type": "Running", "status": "False"}, {"type": "Failed", "status": "True"}],
            "failed",
        ),
    ],
)
def test_job_state(kind: str, conditions: list[dict[str, str]], state: str) -> None:
    assert job_state({"status": {"conditions": conditions}}, kind) == state


class FakeApi:
    """A CustomObjectsApi that reports the given states one poll after another."""

    def __init__(self, states: list[list[dict[str, str]]]) -> None:
        self.states, self.created, self.options = states, [], []

    def create_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, body: dict, **options: Any
    ) -> None:
        self.created.append((group, version, ns, plural, body))
        self.options.append(options)

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> dict:
        return {"metadata": {"name": name}, "status": {"conditions": self.states.pop(0)}}


def test_create_and_wait_until_complete() -> None:
    api = FakeApi([[], [{"type": "Created", "status": "True"}], [{"type": "Complete", "status": "True"}]])
    sleeps: list[float] = []
    create_and_wait(job_manifest(request()), api, poll_s=5, sleep=sleeps.append)
    assert api.created[0][:4] == ("trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs")
    assert api.options == [{"field_validation": "Strict"}]  # an unknown field fails, not silently dropped
    assert sleeps == [5, 5]


def test_create_and_wait_raises_on_failure() -> None:
    api = FakeApi(
        [[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "oom"}]]
    )
    with pytest.raises(RuntimeError, match="BackoffLimitExceeded oom"):
        create_and_wait(job_manifest(request(kind="pytorchjob")), api, sleep=lambda s: None)


def test_create_and_wait_times_out() -> None:
    api = FakeApi([[]] * 5)
    with pytest.raises(TimeoutError):
        create_and_wait(job_manifest(request()), api, poll_s=10, timeout_s=20, sleep=lambda s: None)


def test_the_kubernetes_client_sends_strict_field_validation() -> None:
    """Through the real `CustomObjectsApi`: the create carries the API server's `fieldValidation=Strict`."""
    client = pytest.importorskip("kubernetes.client")

    class Recorder(client.ApiClient):
        def call_api(
            self, path: str, method: str, path_params: Any, query_params: Any, *a: Any, **k: Any
        ) -> Any:
            self.sent.append((method, dict(query_params)))
            return {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}

    recorder = Recorder()
    recorder.sent = []
    create_and_wait(job_manifest(request()), client.CustomObjectsApi(recorder), sleep=lambda s: None)
    assert recorder.sent == [("POST", {"fieldValidation": "Strict"}), ("GET", {})]
