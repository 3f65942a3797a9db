"""Synthetic region-grounded data: questions answerable only by looking at one annotated region.

The tiny CPU recipe trains on these (docs/method.md, "Defaults for the paper-scale recipe": "synthetic grounded data"): each
picture holds a target among distractors, the question names the target uniquely, and the
sample's region is the target's tight box. Everything is a pure function of (config, task, index),
so the same config gives byte-identical images. One module per concern:

- `config`: `SyntheticConfig` and what each difficulty changes;
- `canvas`: drawing primitives whose boxes are measured from drawn pixels;
- `shapes`: the `shapes` and `choice` tasks; `bars`: the `bars` task;
- `dataset`: `generate` and `write_dataset` (content-addressed, atomic); `sayo.data.manifest` reads
  what it writes.
"""

from sayo.data.synthetic.config import DIFFICULTIES, TASK_NAMES, DifficultyParams, SyntheticConfig
from sayo.data.synthetic.dataset import (
    encode_png,
    generate,
    generate_sample,
    task_schedule,
    write_dataset,
)

__all__ = [
    "DIFFICULTIES",
    "TASK_NAMES",
    "DifficultyParams",
    "SyntheticConfig",
    "encode_png",
    "generate",
    "generate_sample",
    "task_schedule",
    "write_dataset",
]
