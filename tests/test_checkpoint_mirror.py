"""Durable checkpoints (`checkpoint.mirror`) on a real moto S3 server: the marker goes up last, a
half-upload is never picked, the mirror is pruned, and a killed Kubeflow GRPO step run again
resumes from the mirror to the same final metrics as an uninterrupted run (slow)."""

from __future__ import annotations

import json
import os
import signal
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

from sayo.kubeflow.steps import checkpoint_mirror
from sayo.storage import make_client, upload_dir
from sayo.train.checkpoint import (
    COMPLETE,
    latest_checkpoint,
    mirrored_steps,
    pull_checkpoint,
    pull_step,
    push_checkpoint,
    push_shards,
    step_dir,
)
from sayo.train.config import CheckpointConfig

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sayo-ckpt"
MIRROR = f"s3://{BUCKET}/runs/job-1/grpo"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client of a fresh moto server (AWS_ENDPOINT_URL points at it) with an empty bucket."""
    with moto_server(monkeypatch) as endpoint:
        # moto's servers share one in-process store: forget what earlier tests left there
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield make_client()


def fake_checkpoint(stage_dir: Path, step: int, complete: bool = True) -> Path:
    """A step directory with a few files (one nested) and, if `complete`, its marker."""
    path = step_dir(stage_dir, step)
    (path / "adapter").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(os.urandom(1000) + bytes([step]))
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    (path / "adapter" / "weights.bin").write_bytes(bytes([step]) * 10)
    if complete:
        (path / COMPLETE).write_text("")
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def keys(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_push_then_pull_gives_the_same_checkpoint(s3: Any, tmp_path: Path) -> None:
    local = fake_checkpoint(tmp_path / "a" / "grpo", 2)
    assert push_checkpoint(local, MIRROR, keep_last=2) == f"{MIRROR}/step-00000002"
    assert mirrored_steps(MIRROR) == [2]
    pulled = pull_checkpoint(MIRROR, tmp_path / "b" / "grpo")
    assert pulled == step_dir(tmp_path / "b" / "grpo", 2)
    assert tree(pulled) == tree(local)
    assert latest_checkpoint(tmp_path / "b" / "grpo") == pulled
    assert [p.name for p in (tmp_path / "b" / "grpo").iterdir()] == ["step-00000002"]  # no temp left


def test_the_marker_is_uploaded_last(s3: Any, tmp_path: Path) -> None:
    uploaded: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
            uploaded.append(key.rsplit("/", 1)[-1])
            s3.upload_file(filename, bucket, key, **kwargs)

    push_checkpoint(fake_checkpoint(tmp_path, 7), MIRROR, keep_last=0, client=Recording())
    assert uploaded[-1] == COMPLETE and sorted(uploaded[:-1]) == ["model.safetensors", "trainer_state.json",
                                                                  "weights.bin"]  # fmt: skip


def test_a_half_uploaded_checkpoint_is_never_picked(s3: Any, tmp_path: Path) -> None:
    push_checkpoint(fake_checkpoint(tmp_path / "up", 2), MIRROR, keep_last=0)
    half = fake_checkpoint(tmp_path / "up", 4, complete=False)  # killed before its marker went up
    upload_dir(half, f"{MIRROR}/{half.name}")
    assert mirrored_steps(MIRROR) == [2]
    pulled = pull_checkpoint(MIRROR, tmp_path / "down")
    assert pulled is not None and pulled.name == "step-00000002"
    # the next push of a later step clears the abandoned half-upload
    push_checkpoint(fake_checkpoint(tmp_path / "up", 6), MIRROR, keep_last=0)
    assert not any("step-00000004" in k for k in keys(s3))
    assert mirrored_steps(MIRROR) == [2, 6]


def test_a_retried_step_replaces_the_leftover_of_the_same_step(s3: Any, tmp_path: Path) -> None:
    stale = fake_checkpoint(tmp_path / "first", 4, complete=False)
    (stale / "rng-rank1.pt").write_bytes(b"from a run with more ranks")
    upload_dir(stale, f"{MIRROR}/{stale.name}")
    again = fake_checkpoint(tmp_path / "second", 4)
    push_checkpoint(again, MIRROR, keep_last=0)
    pulled = pull_checkpoint(MIRROR, tmp_path / "down")
    assert pulled is not None and tree(pulled) == tree(again)


@pytest.mark.parametrize(("keep_last", "left"), [(0, [1, 2, 3, 4]), (1, [4]), (2, [3, 4])])
def test_the_mirror_is_pruned_like_the_local_directory(
    s3: Any, tmp_path: Path, keep_last: int, left: list[int]
) -> None:
    for step in (1, 2, 3, 4):
        push_checkpoint(fake_checkpoint(tmp_path, step), MIRROR, keep_last=keep_last)
    assert mirrored_steps(MIRROR) == left
    assert {k.split("/")[3] for k in keys(s3)} == {f"step-{s:08d}" for s in left}  # nothing else left


def test_a_newer_local_checkpoint_is_not_replaced(s3: Any, tmp_path: Path) -> None:
    push_checkpoint(fake_checkpoint(tmp_path / "up", 2), MIRROR, keep_last=0)
    local = fake_checkpoint(tmp_path / "grpo", 4)
    assert pull_checkpoint(MIRROR, tmp_path / "grpo") is None
    assert latest_checkpoint(tmp_path / "grpo") == local
    assert pull_checkpoint(f"s3://{BUCKET}/runs/empty", tmp_path / "grpo") is None  # nothing mirrored


def test_a_pushed_checkpoint_must_be_complete(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no COMPLETE marker"):
        push_checkpoint(fake_checkpoint(tmp_path, 3, complete=False), MIRROR, keep_last=0)
    assert keys(s3) == []


def test_a_fresh_run_refuses_a_mirror_that_holds_checkpoints(s3: Any, tmp_path: Path) -> None:
    from sayo.recipe import load_recipe
    from sayo.train.policy import resume_training

    push_checkpoint(fake_checkpoint(tmp_path / "up", 2), MIRROR, keep_last=0)
    mirror = MIRROR.rsplit("/", 1)[0]  # the recipe names the run's prefix; the stage adds /grpo
    recipe = load_recipe("tiny", [f"checkpoint.mirror={mirror}", f"checkpoint.dir={tmp_path / 'ckpt'}"])
    with pytest.raises(FileExistsError, match=r"\(steps \[2\]\) of an earlier run.*checkpoint\.resume=true"):
        resume_training(None, tmp_path / "ckpt" / "grpo", recipe)  # type: ignore[arg-type]
    recipe.checkpoint.mirror = f"s3://{BUCKET}/runs/job-2"  # an empty prefix: a fresh start
    assert resume_training(None, tmp_path / "ckpt" / "grpo", recipe) == ({"step": 0}, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "run", "expected"),
    [
        ("", "0f1e", ""),  # no checkpoint_uri: scratch checkpoints only
        ("s3://b/ckpt", "0f1e", "s3://b/ckpt/0f1e"),
        ("s3://b/ckpt/", "0f1e", "s3://b/ckpt/0f1e"),
        ("s3://b/ckpt", "{{$.pipeline_job_uuid}}", ValueError),  # an unresolved placeholder
        ("s3://b/ckpt", "", ValueError),
        ("s3://b/ckpt", "a/b", ValueError),
    ],
)
def test_checkpoint_mirror_of_a_pipeline_run(uri: str, run: str, expected: Any) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError, match="pipeline run id"):
            checkpoint_mirror(uri, run)
    else:
        assert checkpoint_mirror(uri, run) == expected


@pytest.mark.parametrize("mirror", ["/local/dir", "s3://", "s3:///prefix", "gs://b/p", "s3://b/p q"])
def test_mirror_must_be_an_s3_uri(mirror: str) -> None:
    with pytest.raises(ValueError, match=r"checkpoint\.mirror"):
        CheckpointConfig(mirror=mirror)


# the grpo component in its own process, as a KFP pod runs it
COMPONENT = """
import json, sys
from kfp.dsl import Dataset, Metrics, Model
from sayo.kubeflow.components import grpo

args = json.loads(sys.argv[1])
model, metrics = Model(name="model", uri=args["out"] + "/model"), Metrics(name="metrics", uri=args["out"] + "/m")
grpo.python_func(
    config="tiny", overrides=args["overrides"], experiment=args["experiment"], max_steps=3, group_size=0,
    reward_weights={}, attention_ratio=0.0, checkpoint_uri=args["checkpoint_uri"], pipeline_run="job-1",
    dataset=Dataset(name="dataset", uri=args["dataset"]), sft_model=Model(name="sft_model", uri="tiny"),
    model=model, metrics=metrics,
)
with open(args["out"] + "/result.json", "w") as out:
    json.dump({"metrics": metrics.metadata, "model": model.metadata}, out)
"""
OVERRIDES = ["device=cpu", "grpo.probe_every=0", "grpo.prompts_per_step=2", "grpo.group_size=4",
             "grpo.micro_batch_size=4", "grpo.max_new_tokens=12", "checkpoint.every=1",
             "checkpoint.keep_last=1"]  # fmt: skip
TIMING = ("step_time_s", "generation_time_s", "tokens_per_s")


def _component(
    tmp_path: Path, name: str, dataset: Path, checkpoint_uri: str
) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / name
    out.mkdir()
    args = {"out": str(out), "dataset": str(dataset), "checkpoint_uri": checkpoint_uri,
            "experiment": name.split("-")[0], "overrides": OVERRIDES}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    log = (out / "log.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-c", COMPONENT, json.dumps(args)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip
    return proc, out


def _finish(proc: subprocess.Popen, out: Path) -> dict[str, Any]:
    assert proc.wait(timeout=900) == 0, (out / "log.txt").read_text()[-3000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_killed_grpo_step_run_again_resumes_from_the_mirror(s3: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    dataset = build_tiny_dataset(tmp_path / "data", 48)
    full = _finish(*_component(tmp_path, "full", dataset, checkpoint_uri=""))

    uri = f"s3://{BUCKET}/checkpoints"
    proc, out = _component(tmp_path, "preempted-1", dataset, uri)
    marker = "checkpoints/job-1/grpo/step-00000002/COMPLETE"
    while marker not in keys(s3):  # the second checkpoint is durable: preempt the pod
        assert proc.poll() is None, (out / "log.txt").read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "result.json").exists()
    retried = _finish(*_component(tmp_path, "preempted-2", dataset, uri))  # the step's retry

    log = (tmp_path / "preempted-2" / "log.txt").read_text()
    assert "downloaded checkpoint step-00000002" in log  # killed during step 3: resumed after step 2
    assert "resuming MLflow run" in log and "at step 2" in log
    untimed = [{k: v for k, v in r["metrics"].items() if k not in TIMING} for r in (retried, full)]
    assert_same_metrics(*untimed, msg="retried vs uninterrupted")  # up to float32 rounding (README)
    print("final metrics, uninterrupted vs killed and retried:",
          {k: (full["metrics"][k], retried["metrics"][k]) for k in ("loss", "reward/total_mean", "kl")})  # fmt: skip
    assert mirrored_steps(f"{uri}/job-1/grpo") == [3]  # keep_last=1

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")  # the retry continued the killed run
    (run,) = client.search_runs([client.get_experiment_by_name("preempted").experiment_id])
    assert run.info.run_id == retried["model"]["mlflow_run_id"] and run.info.status == "FINISHED"
    for key in ("loss", "reward/total_mean"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2, 3], key


def test_push_shards_of_one_node_is_push_checkpoint(s3: Any, tmp_path: Path) -> None:
    """One node's shards (world size 1): every file, then the marker; the same tree comes back."""
    uploaded: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
            uploaded.append(key.rsplit("/", 1)[-1])
            s3.upload_file(filename, bucket, key, **kwargs)

    push_checkpoint(fake_checkpoint(tmp_path / "old", 1), MIRROR, keep_last=1)
    local = fake_checkpoint(tmp_path / "up", 2)
    assert push_shards(local, MIRROR, keep_last=1, client=Recording()) == f"{MIRROR}/step-00000002"
    assert uploaded[-1] == COMPLETE and len(uploaded) == 4
    assert mirrored_steps(MIRROR) == [2]  # pruned to keep_last
    pulled = pull_step(MIRROR, tmp_path / "down", 2)
    assert tree(pulled) == tree(local)
