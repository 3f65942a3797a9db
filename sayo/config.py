"""Typed configs from YAML: nested dataclasses ← YAML file ← `key=value` overrides.

Each YAML section is a dataclass, field for field, so "go to definition" works; `from_dict` builds
it from a plain mapping and checks every value against the field's type annotation (numbers,
booleans, strings, `Literal` choices, lists, mappings, nested sections), with an error that names
the dotted field and the value; `__post_init__` checks the rest (ranges, cross-field rules) through
`check`. This module is the one generic piece; it knows no section (the recipe does).

Errors are `ConfigError`s that carry the field's full dotted key as a user types it
(`grpo.optim.lr`, `data.sources.0.weight`): a section's own check names its field however it likes
(`optim.lr`, `splits.train`), and `from_dict`, which knows where the section sits, rewrites that
to the full key. Whoever read the values (sayo.recipe) adds where each was written.

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


class ConfigError(ValueError):
    """A config value that is not allowed: the field's dotted key, the value, what is allowed, and
    (`origin`, once known) where the value was written: `file:line` or `command line`."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(key, value, allowed)
        self.key, self.value, self.allowed = key, value, allowed
        self.origin = ""
        self.full_key = False  # `key` is the full dotted key (not a section's own name for its field)

    def __str__(self) -> str:
        if self.origin:
            return f"{self.key} = {self.value!r} ({self.origin}): {self.allowed}"
        return f"{self.key} = {self.value!r} is invalid: {self.allowed}"


class UnknownKeysError(ConfigError):
    """Keys a section does not have (`key` is the first of them, in full)."""

    def __init__(self, section: str, unknown: list[str], allowed: list[str]) -> None:
        super().__init__(f"{section}.{unknown[0]}" if section else unknown[0], unknown, str(allowed))
        self.section, self.unknown = section, unknown
        self.full_key = True

    def __str__(self) -> str:
        origin = f" ({self.origin})" if self.origin else ""
        return f"unknown key(s) {self.unknown} in {self.section or 'the recipe'}{origin}; allowed: {self.allowed}"


def check(ok: bool, name: str, value: object, allowed: str) -> None:
    """Raise a ConfigError naming the field, its value and what is allowed, unless `ok`."""
    if not ok:
        fail(name, value, allowed)


def fail(name: str, value: object, allowed: str) -> NoReturn:
    """A section's field `name` (its own name for it; `from_dict` makes it the full key) is invalid."""
    raise ConfigError(name, value, allowed)


def _invalid(where: str, value: object, allowed: str) -> NoReturn:
    """Field `where` (already the full dotted key) is invalid."""
    error = ConfigError(where, value, allowed)
    error.full_key = True
    raise error


def full_key(cls: type, where: str, name: str) -> str:
    """The full dotted key of the field a check of section `cls` (at `where`) calls `name`.

    Checks name fields their own way (`optim.lr`, `source[x].weight`, `SyntheticConfig.tasks`,
    `splits` for the section itself): the name's tail from its first part that is a field of
    `cls` is the field's path inside the section; a name with no such part is the section.
    """
    parts = [part for part in re.sub(r"\[[^\]]*\]", "", name).split(".") if part]
    fields = {f.name for f in dataclasses.fields(cls)}
    for i, part in enumerate(parts):
        if part in fields:
            return ".".join([where, *parts[i:]] if where else parts[i:])
    return where or name


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
        raise UnknownKeysError(where, unknown, sorted(names))
    kwargs = {
        key: coerce(hints[key], value, f"{where}.{key}" if where else key) for key, value in raw.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if not error.full_key:
            error.key, error.full_key = full_key(cls, where, error.key), True
        raise


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
            _invalid(where, value, f"must be one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            _invalid(where, value, f"must be a section (a mapping of {type_name(hint)} fields)")
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin in (list, tuple) or hint in (list, tuple):
        return _coerce_sequence(hint, value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            _invalid(where, value, "must be a mapping")
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
        _invalid(where, value, f"must be {' or '.join(type_name(o) for o in options)}")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return coerce(option, value, where)
        except ValueError as err:
            errors.append(str(err))
    allowed = " or ".join(type_name(o) for o in options if o is not type(None))
    _invalid(where, value, f"must be {allowed}")


def _coerce_sequence(hint: Any, value: Any, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        _invalid(where, value, f"must be a list ({type_name(hint)})")
    args = get_args(hint)
    if get_origin(hint) is tuple or hint is tuple:
        if args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                _invalid(where, value, f"must have {len(args)} items ({type_name(hint)})")
            return tuple(
                coerce(a, v, f"{where}.{i}") for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{where}.{i}") for i, v in enumerate(value))
    item = args[0] if args else Any
    return [coerce(item, v, f"{where}.{i}") for i, v in enumerate(value)]


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            _invalid(where, value, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            _invalid(where, value, "must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _invalid(where, value, "must be a number (e.g. 0.5 or 5e-6)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _invalid(where, value, "must be a string (quote it in YAML)")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            _invalid(where, value, "must be a path")
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
    return read_yaml_lines(path)[0]


def read_yaml_lines(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """`read_yaml`, and the line (1-based) of every dotted key in the file (`grpo.optim.lr`, `data.sources.0`)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file: {err.strerror or err}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, node_lines(node)


def node_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """The line of every key under a composed YAML node, by dotted key (list items by index)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        items = [(str(key.value), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        items = [(str(i), item, item) for i, item in enumerate(node.value)]
    else:
        return lines
    for name, start, value in items:
        key = f"{prefix}{name}"
        lines[key] = start.start_mark.line + 1
        lines.update(node_lines(value, f"{key}."))
    return lines


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
