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

from sayo.config import PACKAGED_RECIPES, apply_overrides, check, from_dict, read_yaml
from sayo.data.config import DataConfig, resolve_source_paths
from sayo.evaluate.config import EvalConfig
from sayo.models.config import ModelConfig
from sayo.prompts import PromptConfig
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
    chain: list[Path] = []
    raw: dict[str, Any] = {}
    name: str | Path | None = name_or_path
    while name is not None:
        path = recipe_path(name).resolve()
        if path in chain:
            raise ValueError(f"{chain[0]}: `base:` recipes form a cycle through {path}")
        chain.append(path)
        layer = read_yaml(path)
        base = layer.pop("base", None)
        if base is not None and not isinstance(base, str):
            raise ValueError(f"{path}: base = {base!r} is invalid: must be a recipe name or path")
        raw = _merge(layer, raw)  # what was read so far (the more derived recipe) wins
        if base is not None and not Path(base).is_absolute() and (path.parent / base).is_file():
            base = str(path.parent / base)
        name = base
    return raw


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def moved_keys(raw: Mapping[str, Any]) -> list[str]:
    """Messages for every key of `raw` that an earlier version had and that lives elsewhere now."""
    found = []
    for old, new in MOVED_KEYS.items():
        node: Any = raw
        for part in old.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            found.append(f"{old} moved to {new}")
    return found


def load_recipe(name_or_path: str | Path = DEFAULT_RECIPE, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe `name_or_path` (built-in name or file) with `key=value` overrides applied.

    Errors (a missing file, invalid YAML, an unknown or moved key, a bad value) are ValueErrors
    whose message starts with the recipe file and names the field.
    """
    path = recipe_path(name_or_path)
    raw = read_recipe(path)
    try:
        apply_overrides(raw, list(overrides))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    moved = moved_keys(raw)
    if moved:
        raise ValueError(f"{path}: " + "; ".join(moved))
    try:
        recipe = from_dict(Recipe, raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    resolve_source_paths(recipe.data, path.resolve().parent)
    return recipe
