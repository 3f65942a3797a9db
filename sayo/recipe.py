"""A recipe: one YAML file that configures every stage of a run.

Why one file: the CLI (`sayo <stage> --config <recipe>`), `dvc repro` (dvc.yaml names the recipe
as its params file) and the Kubeflow pipeline (its `config` parameter) read the same file into the
same dataclasses, so a knob changed in the recipe changes what all three run, and a run on a
laptop and a run on a cluster differ only in where they run (docs/architecture.md).

Each top-level section is owned by the package that reads it: `model` (`sayo.models`), `data`
(`sayo.data`), `prompt` (`sayo.prompts`), `rewards` (`sayo.rewards`), `tracking` (`sayo.tracking`), `sft`/`grpo`/`checkpoint`/
`deepspeed` (`sayo.train`), `evaluate` (`sayo.evaluate`), `register` (`sayo.registry`). The stages
take a `Recipe` through the protocols that list the sections they read (`TrainRecipe`,
`EvaluateRecipe`); this module, above them, is the only place that composes all sections.

Built-in recipes ship inside the package (`sayo/recipes/*.yaml`): `--config tiny` resolves to
one from any working directory, `sayo recipes` lists them. A recipe may start from another with
`base: <name or path>` (mappings merge key by key, anything else is replaced); then `key=value`
overrides apply, with the syntax of `dvc exp run -S`. Keys that moved in an earlier version are
refused with the new key named, never silently ignored. Every field: docs/configuration.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sayo.config import (
    PACKAGED_RECIPES,
    ConfigError,
    apply_overrides,
    check,
    from_dict,
    read_yaml_lines,
)
from sayo.data.config import DataConfig, resolve_source_paths
from sayo.evaluate.config import EvalConfig
from sayo.models.config import ModelConfig
from sayo.prompt_config import PromptConfig
from sayo.registry.config import RegisterConfig
from sayo.rewards.config import RewardConfig
from sayo.tracking import TrackingConfig
from sayo.train.config import CheckpointConfig, DeepSpeedConfig, GRPOConfig, SFTConfig

DEFAULT_RECIPE = "tiny"

# old key -> where it lives now (refused with this message; see the module docstring)
MOVED_KEYS: dict[str, str] = {
    "train": "the top level (a recipe's sections are top-level: model, data, sft, grpo, rewards, ...)",
    "data.output": "data.path",
    "rewards.entropy_ratio": "rewards.attention.ratio",
    "rewards.layers": "rewards.attention.layers",
    "rewards.head_reduce": "rewards.attention.heads",
    "rewards.normalize_by_area": "rewards.attention.form (normalize_by_area: true is form: area_normalized)",
    "evaluate.entropy_ratio": "rewards.attention.ratio (evaluation measures attention as training does)",
    "evaluate.layers": "rewards.attention.layers (evaluation measures attention as training does)",
    "evaluate.head_reduce": "rewards.attention.heads (evaluation measures attention as training does)",
}


@dataclass
class Recipe:
    """Every section of a run; one YAML file (docs/configuration.md lists every field)."""

    description: str = ""  # one line shown by `sayo recipes`
    seed: int = 0  # seeds python, numpy and torch in every stage
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: each rank's own GPU)
    model: ModelConfig = field(default_factory=ModelConfig)  # the policy to start from
    data: DataConfig = field(default_factory=DataConfig)  # the dataset: built by `data`, read by the rest
    prompt: PromptConfig = field(default_factory=PromptConfig)  # the system turn and the instruction
    sft: SFTConfig = field(default_factory=SFTConfig)  # the supervised warm-up
    grpo: GRPOConfig = field(default_factory=GRPOConfig)  # GRPO with the attention reward
    rewards: RewardConfig = field(default_factory=RewardConfig)  # reward weights, attention on region
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)  # where checkpoints go
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)  # ZeRO sharding (GPU)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow experiment and server
    evaluate: EvalConfig = field(default_factory=EvalConfig)  # benchmarks and the report
    register: RegisterConfig = field(default_factory=RegisterConfig)  # model registry and its gate

    def __post_init__(self) -> None:
        valid = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        check(valid, "device", self.device, "must be auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class Origin:
    """Where a recipe value was written: a line of a recipe file, or a `key=value` override."""

    file: Path | None = None  # None: an override (the command line, the pipeline's `overrides`)
    line: int = 0

    def __str__(self) -> str:
        if self.file is None:
            return "command line"
        shown = self.file.relative_to(Path.cwd()) if self.file.is_relative_to(Path.cwd()) else self.file
        return f"{shown}:{self.line}"

    @property
    def base_dir(self) -> Path:
        """What a relative path written here is relative to: the directory of a user's recipe file;
        the working directory for an override or a built-in recipe (docs/configuration.md)."""
        if self.file is None or self.file.is_relative_to(PACKAGED_RECIPES):
            return Path.cwd()
        return self.file.parent


COMMAND_LINE = Origin()
Origins = dict[str, Origin]  # dotted key (`data.sources.0.path`) -> where its value was written


def builtin_recipes() -> dict[str, Path]:
    """The recipes shipped with sayo, by name."""
    return {path.stem: path for path in sorted(PACKAGED_RECIPES.glob("*.yaml"))}


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a built-in recipe (`tiny`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = builtin_recipes()
    if str(name_or_path) in builtin:
        return builtin[str(name_or_path)]
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        raise ValueError(f"recipe file {path} does not exist")
    raise ValueError(
        f"no recipe named {str(name_or_path)!r}: built-in recipes are {sorted(builtin)}, or give a path"
    )


def read_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """The recipe's raw mapping, its `base:` chain merged in (the base first)."""
    return read_recipe_origins(name_or_path)[0]


def read_recipe_origins(name_or_path: str | Path) -> tuple[dict[str, Any], Origins]:
    """`read_recipe`, and where each value of it was written (by dotted key)."""
    raw: dict[str, Any] = {}
    origins: Origins = {}
    for path, layer, lines in reversed(_recipe_chain(name_or_path)):
        written = {key: Origin(path, line) for key, line in lines.items() if not _under(key, "base")}
        raw = _merge(raw, layer, origins, written)
    return raw, origins


def _recipe_chain(name_or_path: str | Path) -> list[tuple[Path, dict[str, Any], dict[str, int]]]:
    """The recipe file and those of its `base:` chain (the recipe first): path, mapping, key lines."""
    chain: list[tuple[Path, dict[str, Any], dict[str, int]]] = []
    name: str | Path | None = name_or_path
    while name is not None:
        path = recipe_path(name).resolve()
        if path in [seen for seen, _, _ in chain]:
            raise ValueError(f"{chain[0][0]}: `base:` recipes form a cycle through {path}")
        layer, lines = read_yaml_lines(path)
        base = layer.pop("base", None)
        if base is not None and not isinstance(base, str):
            raise ValueError(f"{path}: base = {base!r} is invalid: must be a recipe name or path")
        chain.append((path, layer, lines))
        if base is not None and not Path(base).is_absolute() and (path.parent / base).is_file():
            base = str(path.parent / base)
        name = base
    return chain


def _merge(
    base: Mapping[str, Any], over: Mapping[str, Any], origins: Origins, written: Origins, prefix: str = ""
) -> dict[str, Any]:
    """`over` on top of `base`: mappings merge key by key, anything else is replaced.

    `origins` (of `base`'s values) is updated in place with `written` (of `over`'s).
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value, origins, written, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
            _replace(origins, dotted, {k: origin for k, origin in written.items() if _under(k, dotted)})
    return out


def _apply_overrides(raw: dict[str, Any], overrides: Sequence[str], origins: Origins) -> None:
    """`key=value` overrides applied to `raw` in order, each value (and all under it) from the command line."""
    for item in overrides:
        apply_overrides(raw, [item])
        key = item.partition("=")[0].strip()
        node: Any = raw
        for part in key.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        _replace(origins, key, {name: COMMAND_LINE for name in [key, *_keys_under(node, key)]})


def _keys_under(value: Any, prefix: str) -> list[str]:
    """The dotted keys inside a mapping or list value at `prefix`."""
    items = (
        value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    )
    keys: list[str] = []
    for name, item in items:
        keys += [f"{prefix}.{name}", *_keys_under(item, f"{prefix}.{name}")]
    return keys


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(f"{prefix}.")


def _replace(origins: Origins, key: str, new: Origins) -> None:
    """`key` (and everything under it) now comes from `new`."""
    for old in [k for k in origins if _under(k, key)]:
        del origins[old]
    origins.update(new)


def origin_at(origins: Origins, key: str) -> Origin | None:
    """Where `key`'s value was written: its own entry, else that of the nearest section or list around it."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        origin = origins.get(".".join(parts[:end]))
        if origin is not None:
            return origin
    return None


def described_origin(origins: Origins, key: str) -> str:
    """Where `key`'s value came from, in words: the values inside it for a section (a section-wide
    check, such as splits summing to 1, is about those), else its own, else `default`."""
    inside = list(dict.fromkeys(str(origins[k]) for k in origins if k.startswith(f"{key}.")))
    if inside:
        return ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
    origin = origin_at(origins, key)
    return str(origin) if origin is not None else "default"


def moved_keys(raw: Mapping[str, Any], origins: Origins | None = None) -> list[str]:
    """Messages for every key of `raw` that an earlier version had and that lives elsewhere now."""
    found = []
    for old, new in MOVED_KEYS.items():
        node: Any = raw
        for part in old.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            origin = f" ({described_origin(origins, old)})" if origins is not None else ""
            found.append(f"{old} = {node!r}{origin}: moved to {new}")
    return found


def load_recipe(name_or_path: str | Path = DEFAULT_RECIPE, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe `name_or_path` (built-in name or file) with `key=value` overrides applied.

    Errors (a missing file, invalid YAML, an unknown or moved key, a bad value) are ValueErrors;
    one about a value names its full dotted key, the value, where it was written (`file:line` or
    `command line`) and what is allowed. Relative source paths resolve where they were written
    (`Origin.base_dir`).
    """
    path = recipe_path(name_or_path)
    raw, origins = read_recipe_origins(path)
    try:
        _apply_overrides(raw, overrides, origins)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    moved = moved_keys(raw, origins)
    if moved:
        raise ValueError("; ".join(moved))
    try:
        recipe = from_dict(Recipe, raw)
    except ConfigError as error:
        error.origin = described_origin(origins, error.key)
        raise
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    resolve_source_paths(recipe.data, lambda i, name: _base_dir(origins, f"data.sources.{i}.{name}"))
    return recipe


def _base_dir(origins: Origins, key: str) -> Path:
    origin = origin_at(origins, key)
    return (origin or COMMAND_LINE).base_dir
