"""Typed configs from YAML: nested dataclasses ← YAML file ← `key=value` overrides.

Each YAML section is a dataclass, field for field, so "go to definition" works; `from_dict` builds
it from a plain mapping and checks every value against the field's type annotation (numbers,
booleans, strings, `Literal` choices, lists, mappings, nested sections), with an error that names
the dotted field and the value; `__post_init__` checks the rest (ranges, cross-field rules) through
`check`. This module is the one generic piece; it knows no section (the recipe does).

Numbers are read as a user writes them: the YAML loader here follows YAML 1.2 for floats, so
`lr: 1e-4`, `5e-6` and `1E+3` are numbers (PyYAML's default YAML 1.1 rules read them as strings),
in files and in `a.b=value` overrides alike; an int is accepted where a float is expected, and an
integral float (`1e3`) where an int is.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin, get_type_hints

import yaml

from sayo.atomic import write_text

T = TypeVar("T")

# the recipes shipped inside the package (YAML recipes, DeepSpeed JSONs under deepspeed/)
PACKAGED_RECIPES = Path(__file__).resolve().parent / "recipes"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (`1e-4` is a number, not a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text → Python values, numbers read by YAML 1.2 rules."""
    return yaml.load(text, Loader=_Loader)


def check(ok: bool, name: str, value: object, allowed: str) -> None:
    """Raise a ValueError naming the field, its value and what is allowed, unless `ok`."""
    if not ok:
        fail(name, value, allowed)


def fail(name: str, value: object, allowed: str) -> NoReturn:
    raise ValueError(f"{name} = {value!r} is invalid: {allowed}")


def from_dict(cls: type[T], raw: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a (nested) mapping, checking every value against its field's type.

    Unknown keys raise a ValueError listing the allowed ones; `where` is the dotted path of the
    section (for messages).
    """
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
        key: coerce(hints[key], value, f"{where}.{key}" if where else key) for key, value in raw.items()
    }
    return cls(**kwargs)


def coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` as type `hint` (structural types built, scalars checked); a ValueError names `where`."""
    origin = get_origin(hint)
    if hint is Any or isinstance(hint, TypeVar):
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(get_args(hint), value, where)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            fail(where, value, f"must be one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            fail(where, value, f"must be a section (a mapping of {type_name(hint)} fields)")
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin in (list, tuple) or hint in (list, tuple):
        return _coerce_sequence(hint, value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            fail(where, value, "must be a mapping")
        key_type, value_type = get_args(hint) or (Any, Any)
        return {
            coerce(key_type, k, f"{where}.{k}"): coerce(value_type, v, f"{where}.{k}")
            for k, v in value.items()
        }
    return _coerce_scalar(hint, value, where)


def _coerce_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        fail(where, value, f"must be {' or '.join(type_name(o) for o in options)}")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return coerce(option, value, where)
        except ValueError as err:
            errors.append(str(err))
    allowed = " or ".join(type_name(o) for o in options if o is not type(None))
    fail(where, value, f"must be {allowed}")


def _coerce_sequence(hint: Any, value: Any, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        fail(where, value, f"must be a list ({type_name(hint)})")
    args = get_args(hint)
    if get_origin(hint) is tuple or hint is tuple:
        if args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                fail(where, value, f"must have {len(args)} items ({type_name(hint)})")
            return tuple(
                coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    item = args[0] if args else Any
    return [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            fail(where, value, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(where, value, "must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(where, value, "must be a number (e.g. 0.5 or 5e-6)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail(where, value, "must be a string (quote it in YAML)")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            fail(where, value, "must be a path")
        return Path(value)
    return value


def type_name(hint: Any) -> str:
    """A short readable name of a type annotation (`float`, `list[int]`, `'mean' | 'max'`)."""
    origin = get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(c) for c in get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML 1.2) to a nested dict, in place.

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
        try:
            value = parse_yaml(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML: {err}") from err
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with an error naming the file if it is missing or not one."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file: {err.strerror or err}") from None
    try:
        data = parse_yaml(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


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


def flatten(data: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (lists stay values): MLflow params, flat metric names."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def finite_numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a flat mapping, as floats (bools, strings, None, NaN and ±inf dropped)."""
    return {
        str(key): float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically (temp file, then rename)."""
    return write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
