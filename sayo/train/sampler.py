"""A resumable sampler over a training split.

The sampler is a pure function of (seed, epoch, offset), so a checkpoint stores two integers and
a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpochSampler:
    """Shuffled epochs over `size` items; `next(k)` crosses epoch boundaries seamlessly.

    With `lengths` and `window`, each epoch's shuffled order is cut into windows of `window` items
    and each window sorted by length, longest first (transformers' length-grouped sampling): the
    consecutive items a batch takes have similar lengths, so little of a batch is padding, while
    which items share a window stays random. The order is still a pure function of (seed, epoch).
    """

    size: int
    seed: int
    epoch: int = 0
    offset: int = 0
    lengths: Sequence[int] | None = field(default=None, repr=False)
    window: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"EpochSampler needs at least one item, got size={self.size}")
        if self.lengths is not None and len(self.lengths) != self.size:
            raise ValueError(f"{len(self.lengths)} lengths for {self.size} items")

    def _order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        if self.lengths is None or self.window <= 1:
            return order
        lengths = np.asarray(self.lengths)
        windows = [order[i : i + self.window] for i in range(0, self.size, self.window)]
        return np.concatenate([w[np.argsort(-lengths[w], kind="stable")] for w in windows])

    def next(self, k: int) -> list[int]:
        """The next `k` indices."""
        out: list[int] = []
        while len(out) < k:
            order = self._order(self.epoch)
            take = order[self.offset : self.offset + k - len(out)]
            out.extend(int(i) for i in take)
            self.offset += len(take)
            if self.offset >= self.size:
                self.epoch, self.offset = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "size": self.size, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != self.size or state["seed"] != self.seed:
            raise ValueError(
                f"checkpoint sampler was over {state['size']} items with seed {state['seed']}, "
                f"this run has {self.size} items with seed {self.seed}: the dataset or seed changed"
            )
        self.epoch, self.offset = state["epoch"], state["offset"]
