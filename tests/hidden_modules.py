"""Run a Python subprocess as if some installed packages were absent.

Why: `make gpu-check` must run on a GPU machine that has torch, transformers and pytest but not
the pipeline stack (mlflow, kfp, dvc, boto3, moto); the CPU tests show that by hiding those
packages from a subprocess. `hiding_env` writes a `sitecustomize.py` that the subprocess (and
its own subprocesses, which inherit PYTHONPATH) imports at start-up: it wraps the path finder so
that `import mlflow` fails and `importlib.util.find_spec("mlflow")` is None, exactly as when the
package is not installed (transformers' optional-import checks then see it as missing too).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PIPELINE_STACK = ("mlflow", "kfp", "kfp_kubernetes", "kubernetes", "dvc", "boto3", "botocore", "moto", "trl")
VARIABLE = "SAYO_TEST_HIDDEN_MODULES"

SITECUSTOMIZE = f'''\
"""Hide the top-level packages named in ${VARIABLE} (tests/hidden_modules.py)."""
import os
import sys
from importlib.machinery import PathFinder

_HIDDEN = frozenset(filter(None, os.environ.get("{VARIABLE}", "").split(",")))


class _HidingPathFinder(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _HIDDEN:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [_HidingPathFinder if f is PathFinder else f for f in sys.meta_path]
'''


def hiding_env(directory: Path, hidden: Iterable[str] = PIPELINE_STACK) -> dict[str, str]:
    """os.environ plus what makes a Python subprocess (and its children) not find `hidden`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, VARIABLE: ",".join(hidden)}
