"""`sayo recipes`: the built-in recipes, one resolved, and the reference of every field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from sayo.atomic import write_text
from sayo.cli.common import Overrides, recipe_from
from sayo.config import to_dict
from sayo.recipe import builtin_recipes, read_recipe
from sayo.recipe_docs import configuration_markdown


def register(app: typer.Typer) -> None:
    """Add `sayo recipes ...` to the `sayo` app."""
    recipes_app = typer.Typer(
        help="Recipes: one YAML file configures every stage.", invoke_without_command=True
    )
    app.add_typer(recipes_app, name="recipes")

    @recipes_app.callback()
    def list_recipes(ctx: typer.Context) -> None:
        """List the built-in recipes (use them as `--config <name>`)."""
        if ctx.invoked_subcommand is not None:
            return
        for name, path in builtin_recipes().items():
            description = str(read_recipe(path).get("description", ""))
            typer.echo(f"{name:<28} {description}")

    @recipes_app.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="built-in recipe name or YAML file")],
        overrides: Overrides = None,
    ) -> None:
        """Print a recipe fully resolved (its `base:` chain, overrides and every default) as YAML."""
        typer.echo(yaml.safe_dump(to_dict(recipe_from(name, overrides)), sort_keys=False), nl=False)

    @recipes_app.command("docs")
    def docs(
        out: Annotated[Path | None, typer.Option(help="write here instead of printing")] = None,
    ) -> None:
        """The reference of every recipe field (docs/configuration.md is this output)."""
        text = configuration_markdown()
        if out is None:
            typer.echo(text, nl=False)
        else:
            write_text(out, text)
            typer.echo(f"wrote {out}")
