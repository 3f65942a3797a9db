"""The optimisation engine the SFT and GRPO loops call: backward, step, learning rate, unwrap.

Why a separate engine: the training loops (`sayo.train.sft`, `sayo.train.grpo`) must read the
same on one CPU process and on a DeepSpeed ZeRO-2/3 job over many GPUs (docs/architecture.md,
"Training"). They only see the `Engine` protocol; `build_engine` picks the implementation:

- `PlainEngine`: torch AdamW over the trainable parameters, `LambdaLR`, gradient clipping.
- `DeepSpeedEngineAdapter` (when a DeepSpeed JSON is given): the same optimizer and schedule,
  handed to `deepspeed.initialize`, which shards them (ZeRO) and clips inside `engine.step()`.

Conventions: the caller accumulates gradients itself (several `backward` calls on a loss already
divided by the number of micro-batches, then one `step`); `step` returns the pre-clip global
gradient norm for logging. Weight decay skips biases and norm weights (the usual AdamW practice,
e.g. nanoGPT/TRL), and the warm-up starts at lr 0 like `transformers`' schedules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from sayo.train.config import SCHEDULES, OptimConfig
from sayo.train.launch import load_deepspeed_config

ENGINE_STATE = "engine.pt"  # PlainEngine.save_state: optimizer + scheduler state dicts
DEEPSPEED_TAG = "engine"  # DeepSpeedEngineAdapter.save_state: DeepSpeed's checkpoint tag directory


def lr_lambda(schedule: str, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each optimizer step, for `torch.optim.lr_scheduler.LambdaLR`.

    Linear warm-up from 0 to 1 over `warmup_steps`, then `constant` (1), `linear` (to 0 at
    `max_steps`) or `cosine` (half a cosine, 0.5 at the midpoint of the decay, 0 at `max_steps`).
    Steps past `max_steps` keep the final value.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule = {schedule!r} is invalid: must be one of {SCHEDULES}")
    if warmup_steps < 0 or max_steps < 1:
        raise ValueError(f"need warmup_steps >= 0 and max_steps >= 1, got {warmup_steps}, {max_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: decayed matrices, undecayed biases and norms.

    A parameter is undecayed if it is 1-D (biases, RMSNorm/LayerNorm weights) or its name says
    bias/norm. Frozen parameters (`requires_grad=False`, e.g. the base under LoRA) are left out.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or name.endswith("bias") or "norm" in name.lower()
        (no_decay if plain else decay).append(param)
    if not decay and not no_decay:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all requires_grad=False)")
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module, optim: OptimConfig, max_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters and its warm-up + decay schedule."""
    optimizer = torch.optim.AdamW(param_groups(model, optim.weight_decay), lr=optim.lr, betas=optim.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optim.schedule, optim.warmup_steps, max_steps)
    )
    return optimizer, scheduler


@runtime_checkable
class Engine(Protocol):
    """What a training loop needs from the optimisation side, plain or DeepSpeed."""

    model: nn.Module  # the module to call forward on (a DeepSpeed engine under DeepSpeed)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    partitions_weights: bool  # ZeRO-3: no rank holds whole parameters outside `generation_context`

    def backward(self, loss: Tensor) -> None:
        """Accumulate gradients of a scalar loss (already divided by the accumulation count)."""

    def step(self) -> float:
        """Clip, optimizer step, scheduler step, zero grads; returns the pre-clip gradient norm."""

    def zero_grad(self) -> None:
        """Drop accumulated gradients without stepping."""

    @property
    def lr(self) -> float:
        """The current learning rate (first parameter group)."""

    def generation_context(self) -> AbstractContextManager[Any]:
        """Context in which `unwrap()` has its full parameters (generation, saving weights)."""

    def prepare_reference(self, model: nn.Module) -> nn.Module:
        """A frozen reference policy placed like the trained one (ZeRO-3: sharded the same way)."""

    def unwrap(self) -> nn.Module:
        """The HF (or peft) model, for `save_pretrained` and `generate`."""

    def full_state_dict(self) -> dict[str, Tensor] | None:
        """`unwrap()`'s full weights for `save_pretrained(state_dict=...)`; None on ranks that must not write."""

    def save_state(self, directory: str | Path) -> None:
        """Write optimizer and scheduler state for an exact resume (every rank calls it)."""

    def load_state(self, directory: str | Path) -> None:
        """Restore what `save_state` wrote (every rank calls it)."""


class PlainEngine:
    """Single-process engine: `loss.backward()`, clip, AdamW, `LambdaLR`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        max_grad_norm: float,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm  # <= 0: report the norm but do not clip

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.max_grad_norm if self.max_grad_norm > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.zero_grad()
        return float(norm)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    partitions_weights = False

    def generation_context(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def prepare_reference(self, model: nn.Module) -> nn.Module:
        return model

    def unwrap(self) -> nn.Module:
        return self.model

    def full_state_dict(self) -> dict[str, Tensor] | None:
        return self.model.state_dict()

    def save_state(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        torch.save(state, Path(directory) / ENGINE_STATE)

    def load_state(self, directory: str | Path) -> None:
        state = torch.load(Path(directory) / ENGINE_STATE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def build_engine(
    model: nn.Module,
    optim: OptimConfig,
    max_steps: int,
    *,
    deepspeed_config: str | None = None,
    micro_batch_size: int = 1,
    grad_accum: int = 1,
) -> Engine:
    """The engine for this run: DeepSpeed if `deepspeed_config` names a ZeRO JSON, else plain.

    Args:
        model: the policy (HF or peft); its `requires_grad` flags decide what is trained.
        optim: learning rate, betas, weight decay, schedule, clipping.
        max_steps: optimizer steps of the run (the schedule decays to 0 there).
        deepspeed_config: a DeepSpeed JSON: `zero2`, `zero3` (shipped) or a path.
        micro_batch_size: samples per forward/backward per process (DeepSpeed bookkeeping only).
        grad_accum: micro-batches per optimizer step (DeepSpeed bookkeeping only).
    """
    optimizer, scheduler = build_optimizer(model, optim, max_steps)
    if not deepspeed_config:
        return PlainEngine(model, optimizer, scheduler, optim.max_grad_norm)
    dtype = next(model.parameters()).dtype
    settings = load_deepspeed_config(
        deepspeed_config, optim, micro_batch_size=micro_batch_size, grad_accum=grad_accum, dtype=dtype
    )
    return DeepSpeedEngineAdapter(model, optimizer, scheduler, settings)


class DeepSpeedEngineAdapter:
    """The `Engine` protocol over `deepspeed.initialize` (ZeRO-2/3, multi-GPU, multi-node).

    DeepSpeed counts micro-batches itself and expects `engine.backward(loss); engine.step()` on
    each of them, updating only at the accumulation boundary. Our loops call `backward` once per
    micro-batch and `step` once per update, so `backward` does both DeepSpeed calls (without
    DeepSpeed's own loss division: the caller already divided) and `step` checks that exactly
    `gradient_accumulation_steps` micro-batches went in, then reports the pre-clip norm.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        settings: dict[str, Any],
    ) -> None:
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=settings
        )
        self.model = engine
        self.optimizer = ds_optimizer  # DeepSpeed's (ZeRO) wrapper around our AdamW
        self.scheduler = scheduler  # stepped by DeepSpeed at each update
        self.zero_stage = int(settings.get("zero_optimization", {}).get("stage", 0))
        self.partitions_weights = self.zero_stage == 3  # no rank holds whole parameters
        self.settings = settings
        self.grad_accum = int(settings["gradient_accumulation_steps"])
        self._micro_batches = 0

    def backward(self, loss: Tensor) -> None:
        self.model.backward(loss, scale_wrt_gas=False)
        self.model.step()  # a no-op until the accumulation boundary, where it clips, updates and zeroes
        self._micro_batches += 1

    def step(self) -> float:
        if self._micro_batches != self.grad_accum:
            raise RuntimeError(
                f"DeepSpeed engine: step() after {self._micro_batches} backward() calls, but the config has "
                f"gradient_accumulation_steps = {self.grad_accum}; pass the loop's grad_accum to build_engine"
            )
        self._micro_batches = 0
        norm = self.model.get_global_grad_norm()
        return math.nan if norm is None else float(norm)

    def zero_grad(self) -> None:
        if self._micro_batches:
            raise RuntimeError(
                "DeepSpeed engine: cannot drop a partly accumulated step (its counter has moved)"
            )
        self.model.zero_grad()

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def generation_context(self) -> AbstractContextManager[Any]:
        """ZeRO-3: gather the full weights on every rank for the whole `generate` call.

        Trade-off: each rank holds the whole model while generating (a 7B bf16 policy: ~15 GB more
        per GPU), but decoding runs at single-GPU speed; without it, ZeRO-3 all-gathers every layer
        for every generated token. ZeRO-0/1/2 keep full weights anyway: nothing to do.
        """
        if self.zero_stage != 3:
            return nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.unwrap().parameters()), modifier_rank=None)

    def prepare_reference(self, model: nn.Module) -> nn.Module:
        """ZeRO-3: the frozen reference goes through `deepspeed.initialize` too (no optimizer), so
        it is partitioned over the ranks like the policy instead of a whole copy on every GPU
        (as TRL prepares its reference). ZeRO-0/1/2 keep whole weights: it is only moved."""
        if self.zero_stage != 3:
            return model.to(self.model.device)
        import deepspeed

        settings = copy.deepcopy(self.settings)
        settings.pop("optimizer", None)
        settings.pop("scheduler", None)
        engine, *_ = deepspeed.initialize(model=model, config=settings)
        reference: nn.Module = engine.module.eval()
        return reference

    def unwrap(self) -> nn.Module:
        module: nn.Module = self.model.module
        return module

    def full_state_dict(self) -> dict[str, Tensor] | None:
        """Rank 0 gets the weights; under ZeRO-3 a collective gather (stage3_gather_16bit_weights_on_model_save)."""
        if self.zero_stage == 3:
            state: dict[str, Tensor] | None = self.model._zero3_consolidated_16bit_state_dict()
            return state  # None on ranks > 0
        return self.unwrap().state_dict() if self.model.global_rank == 0 else None

    def save_state(self, directory: str | Path) -> None:
        self.model.save_checkpoint(str(directory), tag=DEEPSPEED_TAG)  # sharded optimizer + our scheduler

    def load_state(self, directory: str | Path) -> None:
        self.model.load_checkpoint(str(directory), tag=DEEPSPEED_TAG, load_lr_scheduler_states=True)
