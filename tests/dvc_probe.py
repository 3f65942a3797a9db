"""Run one `sayo` command and record what it used: the sayo modules it imported and the recipe
fields it read. tests/test_dvc_stages.py runs each dvc stage's command through this and compares
the record with the stage's `deps` and `params` in dvc.yaml.

    python tests/dvc_probe.py RECORD.json sayo <command and its arguments>

Reads are recorded on every recipe tree (`sayo.recipe.Recipe` and its dataclass sections, each
field under its dotted path, e.g. `rewards.attention.ratio`). Reads that only copy or serialise
the recipe (`dataclasses.asdict`/`replace`, loading it in `sayo.recipe.load_recipe`) are not
recorded: a stage that logs the whole recipe to MLflow does not depend on every section.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

READ: set[str] = set()
PATHS: dict[int, str] = {}  # id of a section object -> its dotted prefix ("" for the recipe)
KEEP: list[Any] = []  # the mapped objects stay alive, so their ids are never reused
PAUSED = [0]


def _recording(cls: type) -> None:
    """Make `cls` record reads of its fields on mapped instances."""
    if "_probe_fields" in cls.__dict__:
        return
    names = frozenset(f.name for f in dataclasses.fields(cls))
    cls._probe_fields = names  # type: ignore[attr-defined]

    def get(self: Any, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in names and not PAUSED[0]:
            prefix = PATHS.get(id(self))
            if prefix is not None:
                READ.add(prefix + name)
        return value

    cls.__getattribute__ = get  # type: ignore[method-assign]


def _map(obj: Any, prefix: str) -> None:
    """Map a dataclass tree (lists of sections included) to dotted prefixes."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _map(item, prefix)
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    _recording(type(obj))
    PATHS[id(obj)] = prefix
    KEEP.append(obj)
    for f in dataclasses.fields(obj):
        _map(object.__getattribute__(obj, f.name), f"{prefix}{f.name}.")


def _paused(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        PAUSED[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            PAUSED[0] -= 1

    return run


def install() -> None:
    """Hook the recipe before any command module imports it."""
    dataclasses.asdict = _paused(dataclasses.asdict)
    dataclasses.replace = _paused(dataclasses.replace)
    import sayo.recipe

    post_init = sayo.recipe.Recipe.__post_init__

    def mapped(self: Any) -> None:
        post_init(self)
        _map(self, "")

    sayo.recipe.Recipe.__post_init__ = mapped  # type: ignore[method-assign]
    sayo.recipe.load_recipe = _paused(sayo.recipe.load_recipe)


def modules() -> list[str]:
    """The files of every sayo module imported so far."""
    found = set()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name == "sayo" or name.startswith("sayo.")) and file:
            found.add(str(Path(file).resolve()))
    return sorted(found)


def main(record: Path, command: list[str]) -> None:
    install()
    import sayo.cli

    sys.argv = command
    try:
        sayo.cli.main()
    finally:
        record.write_text(json.dumps({"modules": modules(), "read": sorted(READ)}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
