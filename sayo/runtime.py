"""Run-time plumbing shared by the stages: device, seeding, and stopping on non-finite values."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch


class NonFiniteError(RuntimeError):
    """A loss or reward became NaN/inf: training stops at that step, naming what to look at."""


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; anything else is checked and returned.

    Under torchrun/deepspeed (`LOCAL_RANK` set), `auto`/`cuda` mean this process's own GPU.
    """
    local_rank = os.environ.get("LOCAL_RANK")
    if device in ("auto", "cuda") and local_rank is not None and torch.cuda.is_available():
        torch.cuda.set_device(int(local_rank))
        return f"cuda:{int(local_rank)}"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device={device!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_finite(
    values: Mapping[str, float], *, step: int, sample_ids: Sequence[str], last_checkpoint: Path | None
) -> None:
    """Raise `NonFiniteError` naming the step, the batch's samples and the last good checkpoint."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        ids = ", ".join(sample_ids[:16]) + (" …" if len(sample_ids) > 16 else "")
        where = str(last_checkpoint) if last_checkpoint else "none yet (resume is not possible)"
        raise NonFiniteError(
            f"non-finite {sorted(bad)} at step {step} (values {bad}); batch samples: {ids}; "
            f"last good checkpoint: {where}"
        )
