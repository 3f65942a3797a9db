"""Data-parallel training: two ranks under torchrun + DeepSpeed ZeRO-2 (gloo on this CPU).

Checks what a multi-GPU user relies on: each rank takes its own prompts, one MLflow run (rank 0's)
gets the rank-averaged metrics, a step checkpoint holds every rank's RNG state and DeepSpeed
shards, and resuming two ranks from it gives the step an uninterrupted two-rank run takes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_tiny_dataset

from sayo.train import distributed

ROOT = Path(__file__).resolve().parents[1]


def test_shard_gives_each_rank_its_block(monkeypatch):
    drawn = list(range(12))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    blocks = []
    for r in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        blocks.append(distributed.shard(drawn, 4))
    assert blocks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(ValueError, match="12 indices for 3 ranks × 5"):
        distributed.shard(drawn, 5)


def test_batch_scaled_advantages_use_every_ranks_rewards(monkeypatch):
    import torch

    from sayo.loss import group_advantages
    from sayo.train import grpo
    from sayo.train.config import GRPOConfig
    from sayo.train.grpo_step import Rewards

    def rank_advantages(values, group_size, scale):
        config = GRPOConfig(group_size=group_size, advantage_scale=scale)
        return grpo.rank_advantages(Rewards(values, {"accuracy": values}), {"accuracy": 1.0}, config)

    everyone = torch.tensor([1.0, 0.0, 0.5, 0.5, 3.0, 1.0, 2.0, 2.0])  # 2 ranks × 2 groups of 2
    want = group_advantages(everyone, 2, scale="batch")
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "gather_lists", lambda items: everyone.tolist())
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        local = everyone[4 * r : 4 * r + 4]
        torch.testing.assert_close(rank_advantages(local, 2, "batch"), want[4 * r : 4 * r + 4])
        torch.testing.assert_close(rank_advantages(local, 2, "group"), group_advantages(local, 2))  # local
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    local_std = group_advantages(everyone[:4], 2, "batch")
    assert not torch.allclose(rank_advantages(everyone[:4], 2, "batch"), local_std)  # not the local std


def test_one_rank_needs_no_process_group():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.mean_over_ranks({"a": 1.5}) == {"a": 1.5}
    assert distributed.sum_over_ranks(3) == 3.0
    assert distributed.gather_lists(["x"]) == ["x"]


def test_several_processes_without_deepspeed_is_an_error(tmp_path, monkeypatch):
    from sayo.recipe import load_recipe
    from sayo.train.policy import load_trainable_policy

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load_recipe("tiny", [f"checkpoint.dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"2 processes .* deepspeed.config is empty"):
        load_trainable_policy(cfg, cfg.grpo.optim, 1, 1, 1)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _grpo(tmp_path: Path, data: Path, out: str, *overrides: str) -> None:
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_port()}",
        "-m", "sayo", "grpo", "--config", "tiny",
        f"data.path={data}", f"checkpoint.dir={tmp_path / out}", "device=cpu", "grpo.init_from=model",
        "grpo.prompts_per_step=2", "grpo.group_size=2", "grpo.micro_batch_size=4", "grpo.max_new_tokens=6",
        "grpo.probe_every=0", "checkpoint.every=1", "checkpoint.keep_last=0", f"tracking.experiment={out}",
        "grpo.loss_type=dapo", "grpo.advantage_scale=batch",  # the two cross-rank reductions
        "deepspeed.config=zero2", *overrides,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.mark.slow
def test_two_ranks_train_resume_and_log_once(tmp_path):
    pytest.importorskip("deepspeed")
    import mlflow

    data = tmp_path / "data"
    build_tiny_dataset(data, 40)
    curve = ("grpo.eval_every=2", "grpo.eval_samples=5")  # 5 samples: 2 per rank, one left out
    _grpo(tmp_path, data, "straight", "grpo.max_steps=3", *curve)
    _grpo(tmp_path, data, "resumed", "grpo.max_steps=2", *curve)
    _grpo(tmp_path, data, "resumed", "grpo.max_steps=3", "checkpoint.resume=true", *curve)

    step2 = tmp_path / "straight" / "grpo" / "step-00000002"
    names = {p.name for p in step2.iterdir()}
    assert {"COMPLETE", "rng.pt", "rng-rank1.pt", "config.json", "trainer_state.json"} <= names
    shards = [p.name for p in step2.rglob("*optim_states.pt")]
    assert len(shards) == 2, shards  # ZeRO-2: one optimizer shard per rank
    state = json.loads((step2 / "trainer_state.json").read_text())
    assert state["sampler"]["offset"] == 2 * 2 * 2  # 2 steps × 2 prompts × 2 ranks drawn

    def last(run_dir: str) -> dict:
        path = tmp_path / run_dir / "grpo" / "step-00000003" / "trainer_state.json"
        return json.loads(path.read_text())["metrics"]

    straight, resumed = last("straight"), last("resumed")
    # close, not bitwise: see tests/test_deepspeed.py::test_grpo_trainer_runs_under_zero
    for key in ("loss", "reward/total_mean", "kl", "response_length_mean", "grad_norm"):
        assert resumed[key] == pytest.approx(straight[key], rel=0.05, abs=1e-6), key

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")  # no global URI
    experiment = client.get_experiment_by_name("straight")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # rank 0's run only
    history = client.get_metric_history(runs[0].info.run_id, "reward/total_mean")
    assert sorted(m.step for m in history) == [1, 2, 3]
    curve = client.get_metric_history(runs[0].info.run_id, "eval/accuracy")
    assert sorted(m.step for m in curve) == [0, 2, 3]  # the warm start, every 2 steps, the last
    assert all(m.value * 4 == round(m.value * 4) for m in curve)  # the mean of 2 + 2 answers


def test_each_rank_gets_its_own_gpu_and_only_rank_0_tracks(monkeypatch):
    import torch

    from sayo.runtime import resolve_device
    from sayo.tracking import TrackingConfig

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == "cuda:3" and resolve_device("cuda") == "cuda:3" and chosen == [3, 3]
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"  # explicit choices stay
    tracking = TrackingConfig(experiment="x")
    assert distributed.tracking_for_rank(tracking) is tracking
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.tracking_for_rank(tracking).enabled is False and tracking.enabled
