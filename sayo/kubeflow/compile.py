"""Compile the pipeline (`sayo.kubeflow.pipeline`) to the checked-in `pipelines/sayo_pipeline.yaml`, and check it.

Why a check: the YAML is what a cluster (and the CI retraining workflow) runs, so it must be the
compiled form of the Python at every commit; `is_stale` compiles to memory and compares, and a
test fails when someone edits the pipeline or a component without `sayo pipeline compile`.

The component images are read from `SAYO_IMAGE` when `sayo.kubeflow.components` is imported,
so `load_pipeline` imports the pipeline and its components afresh each time.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PIPELINE_MODULE = "sayo.kubeflow.pipeline"
COMPONENTS_MODULE = "sayo.kubeflow.components"
PIPELINE_FUNCTION = "sayo_pipeline"
COMPILED = Path("pipelines/sayo_pipeline.yaml")


def load_pipeline() -> Callable[..., Any]:
    """The pipeline function, its components imported afresh (so `SAYO_IMAGE` takes effect)."""
    for name in (PIPELINE_MODULE, COMPONENTS_MODULE):
        sys.modules.pop(name, None)
    module = importlib.import_module(PIPELINE_MODULE)
    pipeline: Callable[..., Any] = getattr(module, PIPELINE_FUNCTION)
    return pipeline


def compile_pipeline(out: str | Path | None = None, root: str | Path = ".") -> Path:
    """Compile the pipeline to `out` (default `<root>/pipelines/sayo_pipeline.yaml`); returns the path."""
    from kfp import compiler

    target = Path(out) if out is not None else Path(root) / COMPILED
    compiler.Compiler().compile(load_pipeline(), package_path=str(target))
    return target


def compiled_text(root: str | Path = ".") -> str:
    """The YAML the current sources compile to."""
    with tempfile.TemporaryDirectory() as tmp:
        return compile_pipeline(Path(tmp) / "pipeline.yaml", root).read_text()


def is_stale(root: str | Path = ".") -> bool:
    """Whether the checked-in YAML differs from what the sources compile to now."""
    checked_in = Path(root) / COMPILED
    return not checked_in.is_file() or checked_in.read_text() != compiled_text(root)
