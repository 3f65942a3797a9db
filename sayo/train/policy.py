"""Load the policy a stage trains: model (+ LoRA) + processor + optimisation engine, on its device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayo.models import load_policy
from sayo.runtime import resolve_device
from sayo.tracking import notice
from sayo.train import distributed
from sayo.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    mirrored_steps,
    pull_checkpoint,
    pull_step,
    push_checkpoint,
    push_shards,
    save_checkpoint,
    stage_mirror,
    step_dir,
)
from sayo.train.config import OptimConfig, TrainRecipe
from sayo.train.engine import Engine, build_engine
from sayo.train.lora import apply_lora, frozen_copy


@dataclass
class StageResult:
    """Where a training stage left its model, and its last metrics."""

    final_dir: Path
    run_id: str | None
    metrics: dict[str, float]


@dataclass
class TrainablePolicy:
    """What a trainer holds: the engine (which owns the model), the processor and the device.

    `reference` is a frozen copy of the starting weights when one was asked for (GRPO with β > 0
    and no LoRA), made before the engine wraps the policy and prepared by it (ZeRO-3: sharded).
    """

    engine: Engine
    processor: Any
    device: str
    reference: Any = None

    @property
    def model(self) -> Any:
        """The HF (or peft) model, for generation, hooks and saving."""
        return self.engine.unwrap()


def load_trainable_policy(
    cfg: TrainRecipe,
    optim: OptimConfig,
    max_steps: int,
    micro_batch_size: int,
    grad_accum: int,
    start_from: str | None = None,
    frozen_reference: bool = False,
) -> TrainablePolicy:
    """Load `start_from` (default `cfg.model.name_or_path`), add LoRA adapters if enabled, and wrap
    it in a plain or DeepSpeed engine; with `frozen_reference`, also a frozen copy of the starting
    weights (taken before any engine shards the policy)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and not cfg.deepspeed.config:
        raise ValueError(
            f"launched as {processes} processes (WORLD_SIZE) but deepspeed.config is empty: several "
            "processes train data-parallel through DeepSpeed only; set "
            "deepspeed.config=zero2 (or zero3), or run one process"
        )
    device = resolve_device(cfg.device)
    model: Any
    model, processor = load_policy(
        start_from or cfg.model.name_or_path,
        dtype=cfg.model.dtype,
        device=device,
        attn_implementation=cfg.model.attn_implementation,
    )
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.model.lora.enabled:
        model = apply_lora(model, cfg.model.lora)
    model.train()
    reference = frozen_copy(model) if frozen_reference else None
    engine = build_engine(
        model,
        optim,
        max_steps,
        deepspeed_config=cfg.deepspeed.config,
        micro_batch_size=micro_batch_size,
        grad_accum=grad_accum,
    )
    if reference is not None:
        reference = engine.prepare_reference(reference)
    return TrainablePolicy(engine, processor, device, reference)


def save_training_checkpoint(
    policy: TrainablePolicy, stage_dir: Path, step: int, trainer_state: dict[str, Any], cfg: TrainRecipe
) -> Path:
    """Checkpoint weights, processor, engine state (optimizer/scheduler, sharded under ZeRO), RNG, position;
    with `checkpoint.mirror`, it is then uploaded there (by rank 0, or by every node whose own disk
    holds its ranks' part: `push_shards`)."""
    engine = policy.engine
    path = save_checkpoint(
        stage_dir,
        step,
        model=engine.unwrap(),
        processor=policy.processor,
        optimizer=None,
        scheduler=None,
        trainer_state=trainer_state,
        config=cfg,
        keep_last=cfg.checkpoint.keep_last,
        engine_save=engine.save_state,
        weights_context=engine.generation_context,  # ZeRO-3: the whole weights, gathered
    )
    if cfg.checkpoint.mirror:
        url = stage_mirror(cfg.checkpoint.mirror, stage_dir)
        if not distributed.shares_directory(stage_dir):  # each node holds its ranks' files
            push_shards(path, url, cfg.checkpoint.keep_last)
        elif distributed.is_main():
            push_checkpoint(path, url, cfg.checkpoint.keep_last)
    return path


def _resume_point(stage_dir: Path, mirror: str | None) -> Path | None:
    """The checkpoint every rank resumes from, downloaded from `mirror` where needed (or None).

    One filesystem: rank 0 downloads the newest mirrored checkpoint if it is newer than the local
    ones, then every rank takes the newest local one. Node-local scratch (several nodes): the
    newest mirrored step, chosen by rank 0, downloaded by every node's writer (module docstring
    of sayo/train/checkpoint.py); without a mirror no node holds a whole checkpoint.
    """
    if distributed.shares_directory(stage_dir):
        if mirror and distributed.is_main():
            pulled = pull_checkpoint(mirror, stage_dir)
            if pulled is not None:
                notice(f"downloaded checkpoint {pulled.name} from {mirror}")
        distributed.barrier()
        return latest_checkpoint(stage_dir)
    if not mirror:
        raise ValueError(
            f"checkpoint.resume with checkpoint.dir {Path(stage_dir).parent} on each node's own disk: "
            "no node holds a whole checkpoint; set checkpoint.mirror (s3://...) to resume several nodes"
        )
    held = mirrored_steps(mirror) if distributed.is_main() else []
    step = distributed.first_of_rank_0(held[-1] if held else None)
    if step is None:
        return None
    if distributed.is_writer(stage_dir):
        pulled = pull_step(mirror, stage_dir, step)
        notice(f"downloaded checkpoint {pulled.name} from {mirror}")
    distributed.barrier()
    return step_dir(stage_dir, step)


def resume_training(
    policy: TrainablePolicy, stage_dir: Path, cfg: TrainRecipe
) -> tuple[dict[str, Any], Path | None]:
    """With `checkpoint.resume`, restore the newest complete checkpoint; returns (trainer_state, its path).

    With `checkpoint.mirror`, the newest complete mirrored checkpoint is downloaded first when it is
    newer than the local ones (`_resume_point`); without resume, a mirror that already holds
    checkpoints is refused (they are an earlier run's).
    """
    mirror = stage_mirror(cfg.checkpoint.mirror, stage_dir) if cfg.checkpoint.mirror else None
    if mirror and not cfg.checkpoint.resume:
        held = mirrored_steps(mirror)
        if held:
            raise FileExistsError(
                f"checkpoint.mirror = {cfg.checkpoint.mirror!r} already holds {Path(stage_dir).name} "
                f"checkpoints (steps {held}) of an earlier run: continue it with checkpoint.resume=true "
                "(--resume), or point checkpoint.mirror at an empty prefix"
            )
    path = _resume_point(stage_dir, mirror) if cfg.checkpoint.resume else None
    if path is None:
        return {"step": 0}, None
    engine = policy.engine
    state = load_checkpoint(
        path,
        model=engine.unwrap(),
        optimizer=None,
        scheduler=None,
        engine_load=engine.load_state,
        weights_from_engine=engine.partitions_weights,
    )
    return state, path
