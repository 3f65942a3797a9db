"""Typed configs from YAML: nested dataclasses ← base YAML ← overlay ← `key=value` overrides.

Style (style.md, "Config"): each YAML section is a dataclass, field for field, so "go to
definition" works and `__post_init__` checks values with errors that name the field. This module
is the one generic piece: building nested dataclasses from plain dicts (rejecting unknown keys
with the allowed ones listed), dotted overrides (the same `a.b=c` syntax as `dvc exp run -S`),
flattening for MLflow params, and atomic saving next to checkpoints.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from sayo.atomic import write_text

T = TypeVar("T")


def from_dict(cls: type[T], raw: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a (nested) mapping; unknown keys raise a ValueError naming them."""
    raw = dict(raw or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - names)
    if unknown:
        section = where or cls.__name__
        raise ValueError(f"unknown key(s) {unknown} in {section}; allowed: {sorted(names)}")
    kwargs = {
        key: _coerce(hints[key], value, f"{where}.{key}" if where else key) for key, value in raw.items()
    }
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn YAML values into the field's type where the type is structural (dataclass, tuple, list)."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(options) == 1:
            return _coerce(options[0], value, where)
        for option in options:  # a dataclass option takes a mapping
            if isinstance(option, type) and dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return from_dict(option, value, where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is list and isinstance(value, list) and get_args(hint):
        item = get_args(hint)[0]
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to a nested dict, in place.

    A numeric part indexes a list (`sources.0.weight=2.5`).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value (e.g. grpo.group_size=8)")
        node: Any = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ValueError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        value = yaml.safe_load(text) if text.strip() else ""
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with an error naming the file if it is not one."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    section: str | None = None,
) -> T:
    """Load `cls` from a YAML file (optionally one `section` of it) plus dotted overrides."""
    raw: dict[str, Any] = read_yaml(path) if path else {}
    if section is not None:
        raw = dict(raw.get(section) or {})
    apply_overrides(raw, list(overrides or []))
    where = f"{path}" + (f":{section}" if section else "") if path else cls.__name__
    try:
        return from_dict(cls, raw, "")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def to_dict(config: Any) -> dict[str, Any]:
    """A plain (YAML/JSON-safe) dict of a dataclass config."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (lists stay values), for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically (temp file, then rename)."""
    return write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
