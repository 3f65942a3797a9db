"""docs/configuration.md, generated from the recipe's dataclasses so it cannot drift from the code.

Every field's description is the comment on its line in the dataclass (the one place it is
written); its type and default come from the annotation and the dataclass itself. A test compares
the committed docs/configuration.md with this output and checks that no field lacks a description.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any, get_args, get_origin, get_type_hints

from sayo.config import type_name
from sayo.recipe import MOVED_KEYS, Recipe, builtin_recipes, read_recipe

HEADER = """# Configuration: every recipe field

A recipe is one YAML file that configures every stage (`sayo <stage> --config <recipe>`, `dvc repro`,
the Kubeflow pipeline). This page is generated from the dataclasses that read it
(`sayo recipes docs > docs/configuration.md`; a test fails when it is stale). Override any field on
the command line with its dotted key: `sayo grpo grpo.group_size=8 rewards.attention.ratio=1.0`
(the syntax of `dvc exp run -S`); list items by index: `data.sources.0.weight=2`.

A recipe may start from another with `base: <name or path>`: mappings merge key by key, anything
else (lists included) is replaced. Numbers may be written as a user would (`5e-6`, `1e3`, `0.5`).

An invalid value is refused with its full dotted key, the value, where it was written and what is
allowed: `grpo.optim.lr = -1.0 (command line): must be > 0`, `data.splits.train = 1.5 (mine.yaml:12): ...`.

### Relative paths

The input files of a data source (`data.sources.N.path`, `.images`, `.refs`) resolve where they were
written:

- typed on the command line (`sayo data build 'data.sources=[{type: jsonl, path: mine.jsonl}]'`, and the
  Kubeflow pipeline's `overrides` and `data_sources` parameters, applied the same way): against the
  current directory;
- in a recipe file of yours (also one that another recipe names as its `base:`): against that file's
  directory;
- in a built-in recipe (`--config tiny`): against the current directory.

Every other path (`data.path`, `checkpoint.dir`, `evaluate.out_dir`, `evaluate.benchmarks.N.path`,
`grpo.init_from`, `deepspeed.config`, `model.name_or_path`) is relative to the current directory, where
the stages run and write; `base:` looks next to the recipe file first.
"""


@cache
def field_help(cls: type) -> dict[str, str]:
    """`{field: comment}` from the trailing comments of a dataclass's field lines."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments.setdefault(token.start[0], token.string.lstrip("#").strip())
    tree = ast.parse(source).body[0]
    assert isinstance(tree, ast.ClassDef)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            found = [comments[line] for line in lines if line in comments]
            if found:
                out[node.target.id] = found[0]
    return out


def _section_type(hint: Any) -> type | None:
    """The dataclass of a section field (or of a list of sections), else None."""
    if get_origin(hint) is list and get_args(hint):
        hint = get_args(hint)[0]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _render(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return f"({len(value)} item{'s' if len(value) > 1 else ''})"
    plain = list(value) if isinstance(value, tuple) else value
    return f"`{json.dumps(plain, default=str)}`".replace("|", "\\|")


def iter_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any, str]]:
    """(dotted key, type, default, description) of every leaf and section field, depth first."""
    hints = get_type_hints(cls)
    helps = field_help(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        yield key, hint, _default(field), helps.get(field.name, "")
        section = _section_type(hint)
        if section is not None:
            item = "[]" if get_origin(hint) is list else ""
            yield from iter_fields(section, f"{key}{item}.")


def missing_help() -> list[str]:
    """Recipe fields without a description (should be none)."""
    return [key for key, _, _, text in iter_fields(Recipe) if not text]


def _type_cell(hint: Any) -> str:
    section = _section_type(hint)
    if section is not None:
        return f"list of {section.__name__}" if get_origin(hint) is list else section.__name__
    if get_origin(hint) is typing.Literal:
        return " \\| ".join(f"`{c}`" for c in get_args(hint))
    return f"`{type_name(hint)}`".replace("|", "\\|")


def configuration_markdown() -> str:
    """The whole reference page."""
    lines = [HEADER, "## Built-in recipes", "", "| name | description |", "| --- | --- |"]
    for name, path in builtin_recipes().items():
        description = str(read_recipe(path).get("description", ""))
        lines.append(f"| `{name}` | {description} |")
    lines += ["", "## Fields", ""]
    for field in dataclasses.fields(Recipe):
        hint = get_type_hints(Recipe)[field.name]
        section = _section_type(hint)
        if section is None:
            continue
        owner = section.__module__
        lines += [
            f"### `{field.name}` — {field_help(Recipe).get(field.name, '')}",
            "",
            f"`{owner}.{section.__name__}`: {inspect.getdoc(section) or ''}".strip(),
            "",
            "| key | type | default | description |",
            "| --- | --- | --- | --- |",
        ]
        for key, field_hint, default, text in iter_fields(section, f"{field.name}."):
            lines.append(f"| `{key}` | {_type_cell(field_hint)} | {_render(default)} | {text} |")
        lines.append("")
    top = [f for f in dataclasses.fields(Recipe) if _section_type(get_type_hints(Recipe)[f.name]) is None]
    lines += [
        "### Top-level values",
        "",
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for field in top:
        hint = get_type_hints(Recipe)[field.name]
        lines.append(
            f"| `{field.name}` | {_type_cell(hint)} | {_render(_default(field))} | {field_help(Recipe)[field.name]} |"
        )
    lines += [
        "",
        "## Keys that moved",
        "",
        "A recipe that still uses one of these is refused with the new key named.",
        "",
    ]
    lines += ["| old key | now |", "| --- | --- |"]
    lines += [f"| `{old}` | {new} |" for old, new in MOVED_KEYS.items()]
    return "\n".join(lines) + "\n"
