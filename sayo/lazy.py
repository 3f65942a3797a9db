"""Lazy package exports: a package names what it exports and where each name lives, and imports
the defining module on first access (PEP 562), so `import sayo.models` loads no torch until a
name that needs it is used (`sayo --help` and `sayo recipes` stay fast)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `name` imported from `homes[name]` once, then cached."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
