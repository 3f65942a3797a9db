"""The multi-node GRPO job's durable checkpoints: every node's shards in the mirror, a retry resumes.

The slow test runs the job's real node script (`sayo.kubeflow.trainjob.node_script`) as two
"nodes" of one CPU rank each (torchrun + DeepSpeed ZeRO-2 over gloo on loopback), each with its
own scratch directory in place of the pod's `/workspace`, against a moto S3 server: one job runs
uninterrupted; another is killed once step 2 is in the mirror and run again from empty scratch
directories, as a retried pipeline step's new pods are; it must resume at step 3 and end with
the uninterrupted job's metrics (up to float32 rounding: README, "Train").
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import assert_same_metrics, build_tiny_dataset
from moto_s3 import moto_server

from sayo.kubeflow.trainjob import WORKDIR, JobRequest, node_script
from sayo.models import resolve_model_path
from sayo.storage import make_client, upload_dir
from sayo.train.checkpoint import mirrored_steps

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sayo-jobs"
STAGE = f"s3://{BUCKET}/trainjobs/run-1"
OVERRIDES = ["device=cpu", "grpo.probe_every=0", "grpo.prompts_per_step=2", "grpo.group_size=2",
             "grpo.micro_batch_size=4", "grpo.max_new_tokens=6", "grpo.max_steps=3", "checkpoint.every=1",
             "checkpoint.keep_last=1", "deepspeed.config=zero2"]  # fmt: skip
TIMING = ("step_time_s", "generation_time_s", "tokens_per_s")


def request(**changes: Any) -> JobRequest:
    base: dict[str, Any] = {"name": "run-1-job", "namespace": "kubeflow", "image": "sayo:gpu", "config": "tiny",
                            "overrides": list(OVERRIDES), "staging_uri": STAGE, "nodes": 2, "gpus_per_node": 1}  # fmt: skip
    return JobRequest(**{**base, **changes})


def test_the_node_script_mirrors_and_resumes_only_with_a_mirror() -> None:
    mirror = "s3://ckpt/checkpoints/job-1"
    argv = shlex.split(node_script(request(checkpoint_mirror=mirror)).splitlines()[2])
    assert argv[-2:] == [f"checkpoint.mirror={mirror}", "checkpoint.resume=true"]
    assert argv[argv.index("checkpoint.dir=/workspace/checkpoints") + 1] == f"checkpoint.mirror={mirror}"
    plain = node_script(request())
    assert "checkpoint.mirror" not in plain and "checkpoint.resume" not in plain
    with pytest.raises(ValueError, match="checkpoint_mirror"):
        request(checkpoint_mirror="/scratch/ckpt")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_server(monkeypatch) as endpoint:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield make_client()


def keys(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_job(
    tmp_path: Path, name: str, mirror: str = "", experiment: str = ""
) -> list[tuple[subprocess.Popen, Path]]:
    """Both nodes' scripts, each in its own process group with its own empty `/workspace`."""
    knobs = [*OVERRIDES, f"tracking.experiment={experiment or name}"]
    script = node_script(request(checkpoint_mirror=mirror, overrides=knobs))
    port, venv_bin = str(_port()), str(Path(sys.executable).parent)
    nodes = []
    for rank in range(2):
        workdir = tmp_path / name / f"node-{rank}"
        workdir.mkdir(parents=True)
        env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
               "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": port,
               "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}  # fmt: skip
        log = (workdir.parent / f"node-{rank}.log").open("w")
        proc = subprocess.Popen(["bash", "-c", script.replace(WORKDIR, str(workdir))], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)  # fmt: skip
        nodes.append((proc, workdir))
    return nodes


def finish(nodes: list[tuple[subprocess.Popen, Path]]) -> dict[str, float]:
    """Wait for both nodes; the last step's metrics (rank 0's trainer state, rank-averaged)."""
    for proc, workdir in nodes:
        log = workdir.parent / f"{workdir.name}.log"
        assert proc.wait(timeout=1200) == 0, log.read_text()[-4000:]
    (step,) = (nodes[0][1] / "checkpoints" / "grpo").glob("step-*")  # keep_last=1
    assert step.name == "step-00000003"
    metrics = json.loads((step / "trainer_state.json").read_text())["metrics"]
    return {k: float(v) for k, v in metrics.items() if k not in TIMING}


def kill(nodes: list[tuple[subprocess.Popen, Path]]) -> None:
    """Preempt both pods: SIGKILL every process of each node (torchrun's workers have sessions of
    their own, so the process group is not enough)."""
    import psutil

    for proc, _ in nodes:
        tree = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    for proc, _ in nodes:
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_a_retried_two_node_job_resumes_from_every_nodes_shards(s3: Any, tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    upload_dir(build_tiny_dataset(tmp_path / "data", 40), f"{STAGE}/data")
    upload_dir(resolve_model_path("tiny"), f"{STAGE}/sft")
    full = finish(start_job(tmp_path, "full"))

    mirror = f"s3://{BUCKET}/checkpoints/job-1"
    job = start_job(tmp_path, "preempted", mirror)
    marker = "checkpoints/job-1/grpo/step-00000002/COMPLETE"
    while marker not in keys(s3, "checkpoints/"):
        assert all(p.poll() is None for p, _ in job), (tmp_path / "preempted" / "node-0.log").read_text()[
            -4000:
        ]
        time.sleep(0.2)
    kill(job)
    step2 = [k.rsplit("/step-00000002/", 1)[1] for k in keys(s3, "checkpoints/job-1/grpo/step-00000002/")]
    assert {"COMPLETE", "trainer_state.json", "rng.pt", "rng-rank1.pt"} <= set(step2)  # node 1's RNG
    assert len([k for k in step2 if k.endswith("optim_states.pt")]) == 2, step2  # each node's ZeRO shard

    retried = finish(  # the step's retry: the same pipeline run and knobs, new pods
        start_job(tmp_path, "retried", mirror, experiment="preempted")
    )  # new pods: empty scratch directories
    for rank in range(2):
        log = (tmp_path / "retried" / f"node-{rank}.log").read_text()
        assert "downloaded checkpoint step-00000002" in log, log[-4000:]  # both nodes: resumed after step 2
    assert_same_metrics(retried, full, msg="retried two-node job vs uninterrupted")
    print("step 3, uninterrupted vs killed and retried:", {k: (full[k], retried[k]) for k in ("loss", "kl")})
    assert mirrored_steps(f"{mirror}/grpo") == [3]  # keep_last=1
