"""What every `sayo <stage>` command shares: the recipe option and `key=value` overrides."""

from __future__ import annotations

from typing import Annotated

import typer

from sayo.recipe import DEFAULT_RECIPE, Recipe, load_recipe

RecipeOption = Annotated[
    str,
    typer.Option("--config", "-c", help="recipe: a built-in name (`sayo recipes` lists them) or a YAML file"),
]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="recipe overrides key=value, e.g. grpo.group_size=8 rewards.attention.ratio=1.0"),
]
DEFAULT = DEFAULT_RECIPE


def recipe_from(config: str, overrides: list[str] | None) -> Recipe:
    """The recipe of a command's `--config` and overrides (errors become a one-line message, exit 2)."""
    return load_recipe(config, overrides or [])
