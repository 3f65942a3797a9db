"""Compile `pipelines/sayo_pipeline.py` to the checked-in `pipelines/sayo_pipeline.yaml`, and check it.

Why a check: the YAML is what a cluster (and the CI retraining workflow) runs, so it must be the
compiled form of the Python at every commit; `is_stale` compiles to memory and compares, and a
test fails when someone edits the pipeline or a component without `sayo pipeline compile`.

`components/` and `pipelines/` live at the repository root, not in the installed package (they
are deployment code, not library code), so they are imported from `root` on `sys.path`.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PIPELINE_MODULE = "pipelines.sayo_pipeline"
PIPELINE_FUNCTION = "sayo_pipeline"
COMPILED = Path("pipelines/sayo_pipeline.yaml")


@contextmanager
def on_path(root: str | Path) -> Iterator[None]:
    """`root` first on `sys.path` for the block (so `import components` finds the repository's)."""
    entry = str(Path(root).resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def load_pipeline(root: str | Path = ".") -> Callable[..., Any]:
    """The pipeline function of the repository at `root` (fresh imports of its modules)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("pipelines", "components"):
            del sys.modules[name]
    with on_path(root):
        module = importlib.import_module(PIPELINE_MODULE)
    pipeline: Callable[..., Any] = getattr(module, PIPELINE_FUNCTION)
    return pipeline


def compile_pipeline(out: str | Path | None = None, root: str | Path = ".") -> Path:
    """Compile the pipeline to `out` (default `<root>/pipelines/sayo_pipeline.yaml`); returns the path."""
    from kfp import compiler

    target = Path(out) if out is not None else Path(root) / COMPILED
    compiler.Compiler().compile(load_pipeline(root), package_path=str(target))
    return target


def compiled_text(root: str | Path = ".") -> str:
    """The YAML the current sources compile to."""
    with tempfile.TemporaryDirectory() as tmp:
        return compile_pipeline(Path(tmp) / "pipeline.yaml", root).read_text()


def is_stale(root: str | Path = ".") -> bool:
    """Whether the checked-in YAML differs from what the sources compile to now."""
    checked_in = Path(root) / COMPILED
    return not checked_in.is_file() or checked_in.read_text() != compiled_text(root)
