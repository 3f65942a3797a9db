"""Mixing and splitting, by hashes: how many copies of a sample enter the dataset, and its split.

Both are decided by a hash of the sample's identity (docs/data.md; `sayo.data.config` for the
weights), so they are deterministic across runs and machines, and adding samples never moves the
existing ones. The build and its checking workers share these functions.
"""

from __future__ import annotations

import hashlib
import math

from sayo.data.config import SplitConfig


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the sha256 of `parts` (deterministic across runs and machines)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def copies(weight: float, seed: int, source: str, sample_id: str) -> int:
    """How many times a sample enters the mix: floor(w), plus one with probability frac(w)."""
    whole = math.floor(weight)
    return whole + int(unit_hash("mix", seed, source, sample_id) < weight - whole)


def assign_split(group: str, seed: int, splits: SplitConfig) -> str:
    """The split of a sample, from a hash of its group key (its id unless the importer set one)."""
    u = unit_hash("split", seed, group)
    if u < splits.train:
        return "train"
    return "val" if u < splits.train + splits.val else "test"
