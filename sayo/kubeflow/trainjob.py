"""Multi-node GRPO as a Kubeflow Trainer job: the job spec (pure), its state, and create-and-wait.

Why a separate job instead of a bigger pipeline pod: a KFP task is one pod, and GRPO at 7B
needs several GPU nodes under torchrun + DeepSpeed. The `grpo_trainjob` component creates a
`TrainJob` (Kubeflow Trainer v2, `trainer.kubeflow.org/v1alpha1`, runtime `torch-distributed`)
or, for clusters still on the Training Operator, a `PyTorchJob` (`kubeflow.org/v1`), waits for
it and fails the pipeline step when it fails.

The TrainJob's pod settings (node pool, toleration, volumes) are patches of the runtime's `node`
job, whose form depends on the Trainer release (`trainer_api`):

    v2.2  (default; Trainer 2.2 and later) `spec.runtimePatches`, keyed by a manager
          (`sayo.dev/pipeline`): trainingRuntimeSpec.template.spec.replicatedJobs[node].template
          .spec.template.spec
    v2.1  (Trainer 2.1) `spec.podTemplateOverrides` with `targetJobs: [node]`; 2.2 removed it.

(Trainer 2.0's `podSpecOverrides` is not generated.) Both forms validate against the CRD schema
of their release (tests/data/crds/). Neither form may set environment variables of the `node`
container through the patch, so the credentials arrive through `trainer.env`, one
`secretKeyRef` per key of `sayo.kubeflow.secrets.SECRET_ENV` (optional, like a missing key under
`envFrom`). The job is created with `fieldValidation=Strict`, so an API server rejects a field
its CRD does not know instead of silently dropping it.

Every node runs the same script: fetch the dataset and the SFT checkpoint from the S3 staging
prefix (`sayo.storage`), then the argv of `sayo.train.launch.launch_command` (the one torchrun
command line the docs and GPU VMs use too) with the rendezvous taken from the variables the
operator injects (`PET_*` for TrainJob, `RANK`/`MASTER_*` for PyTorchJob), then node 0 uploads
`grpo/final` back to the prefix, where the component picks it up as its `Model` artifact.

Durable checkpoints: the checkpoint directory is each pod's own scratch volume, gone with the pod,
and the pipeline retries the step. With a `checkpoint_mirror` (`<checkpoint_uri>/<pipeline job
id>`, the single-pod steps' prefix: `sayo.kubeflow.steps.checkpoint_mirror`) every node uploads
its ranks' part of each step checkpoint there and rank 0 the `COMPLETE` marker last; a retried job
(the same pipeline job id) resumes from the newest complete one (sayo/train/checkpoint.py).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sayo.kubeflow.secrets import SECRET_ENV
from sayo.train.launch import launch_command

JOB_KINDS = ("trainjob", "pytorchjob")
TRAINER_APIS = ("v2.2", "v2.1")  # the TrainJob form: runtimePatches (2.2+) or podTemplateOverrides (2.1)
RUNTIME_PATCH_MANAGER = "sayo.dev/pipeline"  # owner of our runtimePatches entry (a domain-prefixed path)
TRAINER_JOB = "node"  # the torch-distributed runtime's replicated job and container
WORKDIR = "/workspace"
# (group, version, plural) of each kind's custom resource
RESOURCES = {
    "trainjob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    "pytorchjob": ("kubeflow.org", "v1", "pytorchjobs"),
}
# rendezvous variables each operator sets on every node: (node rank, master address, master port)
RENDEZVOUS = {
    "trainjob": ("PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"),
    "pytorchjob": ("RANK", "MASTER_ADDR", "MASTER_PORT"),
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass
class JobRequest:
    """Everything the job spec needs; the component fills it from pipeline parameters."""

    name: str  # Kubernetes name of the job (DNS-1123, ≤ 63 characters)
    namespace: str
    image: str
    config: str  # the recipe: a built-in name (e.g. qwen2_5_vl_7b) or a YAML file in the image
    overrides: list[str]  # `key=value` overrides (the data/init/checkpoint paths are added here)
    staging_uri: str  # s3://bucket/prefix holding data/ and sft/ in, final/ out
    nodes: int = 2
    gpus_per_node: int = 8
    kind: str = "trainjob"  # JOB_KINDS (a pipeline parameter: checked below, not by the type)
    trainer_api: str = "v2.2"  # TRAINER_APIS: Kubeflow Trainer 2.2+ (runtimePatches) or 2.1
    runtime: str = "torch-distributed"  # TrainJob's ClusterTrainingRuntime
    cpu: str = "16"
    memory: str = "128Gi"
    shm_size: str = "32Gi"
    node_selector: dict[str, str] = field(default_factory=lambda: {"sayo.dev/node-pool": "gpu"})
    # secret -> {key: environment variable}, as every pipeline step gets them
    secret_env: dict[str, dict[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in SECRET_ENV.items()}
    )
    service_account: str = ""
    # s3://bucket/prefix/<pipeline job id> for every node's step checkpoints; "" = scratch only
    checkpoint_mirror: str = ""

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"kind = {self.kind!r} is invalid: must be one of {JOB_KINDS}")
        if self.trainer_api not in TRAINER_APIS:
            raise ValueError(
                f"trainer_api = {self.trainer_api!r} is invalid: must be one of {TRAINER_APIS} "
                "(v2.2 for Kubeflow Trainer 2.2 and later, v2.1 for Trainer 2.1)"
            )
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError(
                f"need nodes >= 1 and gpus_per_node >= 1, got {self.nodes}, {self.gpus_per_node}"
            )
        if not re.fullmatch(r"s3://[A-Za-z0-9._/-]+", self.staging_uri):
            raise ValueError(f"staging_uri = {self.staging_uri!r} is invalid: must be s3://bucket/prefix")
        if self.checkpoint_mirror and not re.fullmatch(r"s3://[A-Za-z0-9._/-]+", self.checkpoint_mirror):
            raise ValueError(
                f"checkpoint_mirror = {self.checkpoint_mirror!r} is invalid: must be s3://bucket/prefix or empty"
            )
        if not self.name or len(self.name) > 63:
            raise ValueError(f"name = {self.name!r} is invalid: a DNS-1123 name of 1 to 63 characters")


def _rendezvous_from_env(argv: list[str], kind: str) -> list[str]:
    """Replace launch_command's static node rank and master with the operator's variables."""
    rank, addr, port = RENDEZVOUS[kind]
    env = {"--node-rank": rank, "--master-addr": addr, "--master-port": port}
    out = []
    for arg in argv:
        flag = arg.split("=", 1)[0]
        out.append(f"{flag}=${{{env[flag]}}}" if flag in env else shlex.quote(arg))
    return out


def node_script(request: JobRequest) -> str:
    """The shell script every node runs: fetch inputs, torchrun `sayo grpo`, node 0 uploads."""
    overrides = [
        *request.overrides,
        f"data.path={WORKDIR}/data",
        f"grpo.init_from={WORKDIR}/sft",
        f"checkpoint.dir={WORKDIR}/checkpoints",
    ]
    if request.checkpoint_mirror:  # a retried job (same pipeline run, same prefix) resumes
        overrides += [f"checkpoint.mirror={request.checkpoint_mirror}", "checkpoint.resume=true"]
    argv = launch_command(
        "grpo", request.config, overrides, nproc_per_node=request.gpus_per_node, nnodes=request.nodes
    )
    rank = RENDEZVOUS[request.kind][0]
    stage = request.staging_uri.rstrip("/")
    fetch = (
        "from sayo.storage import download_dir; "
        f'download_dir("{stage}/data", "{WORKDIR}/data"); download_dir("{stage}/sft", "{WORKDIR}/sft")'
    )
    upload = f'from sayo.storage import upload_dir; upload_dir("{WORKDIR}/checkpoints/grpo/final", "{stage}/final")'
    return "\n".join(
        [
            "set -euo pipefail",
            f"python -c {shlex.quote(fetch)}",
            " ".join(_rendezvous_from_env(argv, request.kind)),
            f'if [ "${{{rank}}}" = "0" ]; then python -c {shlex.quote(upload)}; fi',
        ]
    )


def _secret_env(request: JobRequest) -> list[dict[str, Any]]:
    """One `secretKeyRef` per key; optional, so a secret without e.g. a password still starts the pod."""
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for secret, keys in request.secret_env.items()
        for key, env in keys.items()
    ]


def _pod_parts(request: JobRequest) -> dict[str, Any]:
    """Container and pod settings shared by both kinds."""
    return {
        "env": _secret_env(request),
        "resources": {
            "requests": {"cpu": request.cpu, "memory": request.memory},
            "limits": {"nvidia.com/gpu": str(request.gpus_per_node)},
        },
        # /dev/shm for NCCL and loaders; a scratch volume for data, checkpoints (the image runs as non-root)
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": request.shm_size}},
            {"name": "workspace", "emptyDir": {}},
        ],
        "mounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "workspace", "mountPath": WORKDIR}],
    }


def _trainjob(request: JobRequest, parts: dict[str, Any]) -> dict[str, Any]:
    # the patchable pod fields: the same in both forms, only where they go differs
    pod_spec: dict[str, Any] = {
        "nodeSelector": dict(request.node_selector),
        "tolerations": [dict(GPU_TOLERATION)],
        "volumes": parts["volumes"],
        "containers": [{"name": TRAINER_JOB, "volumeMounts": parts["mounts"]}],
    }
    if request.service_account:
        pod_spec["serviceAccountName"] = request.service_account
    spec: dict[str, Any] = {
        "runtimeRef": {"name": request.runtime},
        "trainer": {
            "image": request.image,
            "command": ["bash", "-c", node_script(request)],
            "env": parts["env"],
            "numNodes": request.nodes,
            "numProcPerNode": request.gpus_per_node,
            "resourcesPerNode": parts["resources"],
        },
    }
    if request.trainer_api == "v2.1":
        spec["podTemplateOverrides"] = [{"targetJobs": [{"name": TRAINER_JOB}], "spec": pod_spec}]
        return spec
    node_patch = {"name": TRAINER_JOB, "template": {"spec": {"template": {"spec": pod_spec}}}}
    spec["runtimePatches"] = [
        {
            "manager": RUNTIME_PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_patch]}}},
        }
    ]
    return spec


def _pytorchjob(request: JobRequest, parts: dict[str, Any]) -> dict[str, Any]:
    container = {
        "name": "pytorch",
        "image": request.image,
        "command": ["bash", "-c", node_script(request)],
        "env": parts["env"],
        "resources": parts["resources"],
        "volumeMounts": parts["mounts"],
    }
    pod_spec: dict[str, Any] = {
        "nodeSelector": dict(request.node_selector),
        "tolerations": [dict(GPU_TOLERATION)],
        "volumes": parts["volumes"],
        "containers": [container],
    }
    if request.service_account:
        pod_spec["serviceAccountName"] = request.service_account
    replica = {"restartPolicy": "OnFailure", "template": {"spec": pod_spec}}
    replicas = {"Master": {**replica, "replicas": 1}}
    if request.nodes > 1:
        replicas["Worker"] = {**replica, "replicas": request.nodes - 1}
    return {"nprocPerNode": str(request.gpus_per_node), "pytorchReplicaSpecs": replicas}


def job_manifest(request: JobRequest) -> dict[str, Any]:
    """The custom object to create (a pure function of the request)."""
    group, version, _ = RESOURCES[request.kind]
    parts = _pod_parts(request)
    spec = _trainjob(request, parts) if request.kind == "trainjob" else _pytorchjob(request, parts)
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "TrainJob" if request.kind == "trainjob" else "PyTorchJob",
        "metadata": {
            "name": request.name,
            "namespace": request.namespace,
            "labels": {"app.kubernetes.io/part-of": "sayo", "sayo.dev/stage": "grpo"},
        },
        "spec": spec,
    }


def job_state(job: dict[str, Any], kind: str) -> Literal["running", "succeeded", "failed"]:
    """Running, succeeded or failed, from the job's status conditions (True ones only)."""
    done, failed = ("Complete", "Failed") if kind == "trainjob" else ("Succeeded", "Failed")
    conditions = (job.get("status") or {}).get("conditions") or []
    active = {c.get("type") for c in conditions if str(c.get("status")) == "True"}
    if failed in active:
        return "failed"
    return "succeeded" if done in active else "running"


def failure_message(job: dict[str, Any]) -> str:
    """The reason and message of the job's True conditions, for the step's error."""
    conditions = (job.get("status") or {}).get("conditions") or []
    parts = [f"{c.get('type')}: {c.get('reason', '')} {c.get('message', '')}".strip() for c in conditions]
    return "; ".join(parts) or "no status conditions"


def create_and_wait(
    manifest: dict[str, Any],
    api: Any,
    *,
    poll_s: float = 30.0,
    timeout_s: float = 7 * 24 * 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Create the job with a `CustomObjectsApi`, poll until it ends; raise if it failed or timed out.

    Strict field validation: a field the cluster's CRD does not know (a Trainer older or newer
    than `trainer_api` says) fails the creation with the field's name instead of being dropped.
    """
    kind = "trainjob" if manifest["kind"] == "TrainJob" else "pytorchjob"
    group, version, plural = RESOURCES[kind]
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    api.create_namespaced_custom_object(
        group, version, namespace, plural, manifest, field_validation="Strict"
    )
    waited = 0.0
    while True:
        job = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        state = job_state(job, kind)
        if state == "succeeded":
            return dict(job)
        if state == "failed":
            raise RuntimeError(f"{manifest['kind']} {namespace}/{name} failed: {failure_message(job)}")
        if waited >= timeout_s:
            raise TimeoutError(f"{manifest['kind']} {namespace}/{name} still running after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (the service account's), else `default`."""
    path = Path(SERVICE_ACCOUNT_NAMESPACE)
    return path.read_text().strip() if path.is_file() else default


def run_grpo_job(request: JobRequest, dataset_dir: str, sft_dir: str, model_out: str) -> None:
    """Stage the inputs on S3, run the job to completion, fetch `final/` into `model_out`."""
    from kubernetes import client
    from kubernetes import config as kube_config

    from sayo.storage import download_dir, upload_dir

    stage = request.staging_uri.rstrip("/")
    upload_dir(dataset_dir, f"{stage}/data")
    upload_dir(sft_dir, f"{stage}/sft")
    kube_config.load_incluster_config()
    create_and_wait(job_manifest(request), client.CustomObjectsApi())
    download_dir(f"{stage}/final", model_out)
