"""Data parallelism across the processes torchrun/deepspeed start (one per GPU).

Each rank trains on its own slice of every batch: all ranks walk the same seeded sample order
and rank r takes the r-th block of `n × world` indices, so the run sees world× more prompts per
step and a resumed run slices the same way. GRPO groups never straddle ranks (group advantages
stay local; `advantage_scale=batch` gathers every rank's rewards for its std, and the `dapo` loss
divides by the token count of all ranks, as TRL does); DeepSpeed averages the gradients. Metrics are averaged over ranks before they are checked
for NaN/inf (so every rank stops together, never one rank alone in a collective) and logged by
rank 0, which alone owns the MLflow run, the progress bar and the files every rank shares.
Without a process group everything degenerates to one rank.

Checkpoint directories are either one filesystem all ranks share (one machine, NFS) or each node's
own scratch (a Kubeflow job's pod-local volume). `shares_directory` tells which, by a probe file;
in the second case each node's local rank 0 is the `writer` of its node's copy, and only the
checkpoint mirror holds the whole checkpoint (sayo/train/checkpoint.py, `push_shards`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if _initialized() else 1


def is_main() -> bool:
    return rank() == 0


def shows_progress() -> bool:
    """Whether this process draws the training loop's progress bar: the main rank, unless
    `TQDM_DISABLE` is set (`sayo experiment ablation --jobs N` sets it for its job processes)."""
    return is_main() and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")


def local_rank() -> int:
    """This process's index on its node (torchrun's `LOCAL_RANK`), 0 without a process group."""
    return int(os.environ.get("LOCAL_RANK", "0")) if _initialized() else 0


_SHARED: dict[str, bool] = {}  # directory -> whether every rank sees it (asked once per directory)


def shares_directory(path: str | Path) -> bool:
    """Whether every rank sees the same directory at `path`: rank 0 drops a probe file there and
    every rank looks for it. A collective the first time for a path (every rank must ask)."""
    if world_size() == 1:
        return True
    key = str(path)
    if key not in _SHARED:
        Path(path).mkdir(parents=True, exist_ok=True)
        token = first_of_rank_0(uuid.uuid4().hex)
        probe = Path(path) / f".shared-probe-{token}"
        if is_main():
            probe.write_text("")
        barrier()
        seen = gather_lists([probe.exists()])
        barrier()
        if is_main():
            probe.unlink()
        _SHARED[key] = all(seen)
    return _SHARED[key]


def is_writer(path: str | Path) -> bool:
    """Whether this rank writes the files that one copy of the directory `path` gets once (the
    COMPLETE marker, renames, pruning): rank 0 on a shared filesystem, else each node's local rank 0."""
    return is_main() if shares_directory(path) else local_rank() == 0


def first_of_rank_0(value: Any) -> Any:
    """Rank 0's `value`, on every rank (e.g. the step every rank resumes from)."""
    return gather_lists([value])[0] if world_size() > 1 else value


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


def _device() -> torch.device:
    """Where collectives take tensors: the rank's GPU under NCCL, else the CPU (gloo)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(indices: Sequence[int], per_rank: int) -> list[int]:
    """This rank's block of `per_rank` indices out of `per_rank × world` drawn for all ranks."""
    if len(indices) != per_rank * world_size():
        raise ValueError(f"{len(indices)} indices for {world_size()} ranks × {per_rank}")
    start = rank() * per_rank
    return list(indices[start : start + per_rank])


def mean_over_ranks(metrics: Mapping[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks (every rank must pass the same keys)."""
    if world_size() == 1:
        return dict(metrics)
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_device())
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, keys)
    if any(g != keys for g in gathered):
        raise RuntimeError(f"ranks report different metrics: {gathered}")
    torch.distributed.all_reduce(values)  # sum
    return {k: float(v) / world_size() for k, v in zip(keys, values.tolist(), strict=True)}


def sum_over_ranks(value: float) -> float:
    """`value` summed over the ranks (e.g. a token count)."""
    if world_size() == 1:
        return float(value)
    total = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(total)
    return float(total.item())


def gather_lists(items: Sequence[Any]) -> list[Any]:
    """Every rank's `items`, concatenated in rank order (e.g. the sample ids of a step)."""
    if world_size() == 1:
        return list(items)
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


def tracking_for_rank(config: Any) -> Any:
    """The tracking config for this rank: rank 0's as given, the others' disabled (one MLflow run)."""
    return config if is_main() else replace(config, enabled=False)
