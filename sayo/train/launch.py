"""Multi-process runs: the `torchrun` command line of a stage and the DeepSpeed JSON it runs with.

Why a helper: the Kubeflow Trainer job (multi-node GRPO), a GPU VM and the docs must start the
very same `python -m sayo <stage> --config ... key=value` entry point (docs/architecture.md,
"Orchestration"); building the argv in one place keeps them from drifting. torchrun sets
RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* for each process, which DeepSpeed reads on `initialize`.
Rendezvous is torchrun's static one (node 0 is the master), as Kubeflow's PyTorchJob sets it up.

The DeepSpeed JSON (`zero2`/`zero3`: sayo/recipes/deepspeed/, or a file) holds only the sharding knobs; batch size,
accumulation, clipping, precision, optimizer and schedule come from our config, so a ZeRO run
and a plain run of the same YAML train the same way. `sayo.train.engine` consumes the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sayo.config import PACKAGED_RECIPES
from sayo.train.config import OptimConfig

STAGES = ("sft", "grpo")


def launch_command(
    stage: str,
    config_path: str,
    overrides: list[str],
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
) -> list[str]:
    """The argv of `torchrun ... -m sayo <stage> --config <config_path> <overrides>`.

    Args:
        stage: `sft` or `grpo`.
        config_path: the recipe (e.g. qwen2_5_vl_7b); set `deepspeed.config`
            there or in `overrides` to use ZeRO.
        overrides: `key=value` config overrides, passed through unchanged and in order.
        nproc_per_node: processes (GPUs) on each node.
        nnodes, node_rank: number of nodes and this node's index (0 is the master).
        master_addr, master_port: the master node's address, reachable from every node.
    Returns:
        the argv list, for `subprocess.run` or a container's `command`.
    """
    if stage not in STAGES:
        raise ValueError(f"stage = {stage!r} is invalid: must be one of {STAGES}")
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"need nproc_per_node >= 1 and nnodes >= 1, got {nproc_per_node}, {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank = {node_rank} is invalid: must be in [0, {nnodes})")
    if not 0 < master_port < 65536:
        raise ValueError(f"master_port = {master_port} is invalid: must be in [1, 65535]")
    bad = [item for item in overrides if "=" not in item or item.startswith("=")]
    if bad:
        raise ValueError(f"overrides {bad} are invalid: each must be key=value (e.g. grpo.max_steps=200)")
    return [
        "torchrun",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        f"--node-rank={node_rank}",
        f"--master-addr={master_addr}",
        f"--master-port={master_port}",
        "-m",
        "sayo",
        stage,
        "--config",
        config_path,
        *overrides,
    ]


ZERO_STAGES = (0, 1, 2, 3)


def _fill(settings: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set an `"auto"` (or absent) field to our value; an explicit different value is a conflict."""
    current = settings.get(key, "auto")
    if current != "auto" and current != value:
        raise ValueError(
            f'{where}: {key} = {current!r} conflicts with the training config\'s {value!r}; set it to "auto"'
        )
    settings[key] = value


def _reject_auto(node: Any, where: str, path: str = "") -> None:
    if node == "auto":
        raise ValueError(f'{where}: {path} = "auto" is not filled by sayo; give a value')
    if isinstance(node, dict):
        for key, value in node.items():
            _reject_auto(value, where, f"{path}.{key}" if path else key)


def deepspeed_config_path(name_or_path: str | Path) -> Path:
    """A DeepSpeed JSON: an existing file, or a config shipped with sayo by name (`zero2`, `zero3`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = PACKAGED_RECIPES / "deepspeed" / f"{name_or_path}.json"
    if packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in (PACKAGED_RECIPES / "deepspeed").glob("*.json"))
    raise ValueError(
        f"deepspeed.config {name_or_path}: file does not exist (nor is it one of the shipped configs {shipped})"
    )


def load_deepspeed_config(
    path: str | Path, optim: OptimConfig, *, micro_batch_size: int, grad_accum: int, dtype: torch.dtype
) -> dict[str, Any]:
    """A DeepSpeed config dict: the JSON at `path` with its `"auto"` fields filled from ours.

    Filled: `train_micro_batch_size_per_gpu`, `gradient_accumulation_steps`, `gradient_clipping`
    (`optim.max_grad_norm`, 0 = off), `bf16.enabled`/`fp16.enabled` (from the model's dtype);
    `train_batch_size: "auto"` is dropped (DeepSpeed derives it). `optimizer`/`scheduler` sections
    are refused: the AdamW and schedule come from our `optim` section, one source of truth.
    Raises:
        ValueError naming the file and the field: missing file, bad JSON, unknown ZeRO stage,
        conflicting explicit values, an `"auto"` we do not fill.
    """
    path = deepspeed_config_path(path)
    where = f"deepspeed.config {path}"
    try:
        settings = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON: {err}") from err
    stage = settings.get("zero_optimization", {}).get("stage", 0)
    if stage not in ZERO_STAGES:
        raise ValueError(
            f"{where}: zero_optimization.stage = {stage!r} is invalid: must be one of {ZERO_STAGES}"
        )
    for section in ("optimizer", "scheduler"):
        if section in settings:
            raise ValueError(f"{where}: remove the {section!r} section; sayo passes its own (optim.*)")
    _fill(settings, "train_micro_batch_size_per_gpu", micro_batch_size, where)
    _fill(settings, "gradient_accumulation_steps", grad_accum, where)
    _fill(settings, "gradient_clipping", max(optim.max_grad_norm, 0.0), where)
    if settings.get("train_batch_size") == "auto":
        del settings["train_batch_size"]
    for key, half in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if settings.get(key, {}).get("enabled") == "auto":
            settings[key]["enabled"] = dtype == half
    _reject_auto(settings, where)
    return settings
