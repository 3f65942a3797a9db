"""`sayo data build`: the recipe's `data:` section → a versioned dataset directory at `data.path`."""

from __future__ import annotations

from typing import Annotated

import typer

from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.data.build import build
from sayo.data.validate import DataValidationError


def register(app: typer.Typer) -> None:
    """Add `sayo data ...` to the `sayo` app."""
    data_app = typer.Typer(help="Region-grounded datasets.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("build")
    def data_build(
        config: RecipeOption = DEFAULT,
        overrides: Overrides = None,
        skip_invalid: Annotated[
            bool, typer.Option(help="write invalid inputs to rejected.jsonl and go on (default: fail)")
        ] = False,
        progress: Annotated[bool, typer.Option(help="show import progress bars")] = True,
    ) -> None:
        """Import, validate, mix and split the recipe's sources into a versioned dataset directory.

        Exits with code 2 and lists the problems (file, line, field) if any input is invalid.
        Overrides name recipe keys: `sayo data build data.synthetic.num_samples=64 data.path=data/x`.
        """
        recipe = recipe_from(config, overrides)
        try:
            result = build(recipe.data, skip_invalid=skip_invalid, progress=progress)
        except DataValidationError as error:
            typer.secho(f"error: {error}", fg="red", err=True)
            if not skip_invalid:
                typer.secho("(nothing was written; --skip-invalid drops these inputs instead)", err=True)
            raise typer.Exit(2) from error
        splits = ", ".join(f"{name} {count}" for name, count in result.splits.items())
        typer.echo(
            f"wrote {result.num_samples} samples ({splits}) to {result.output} in {result.seconds:.1f} s"
        )
        if result.rejected:
            typer.echo(
                f"skipped {len(result.rejected)} invalid input(s): see {result.output / 'rejected.jsonl'}"
            )
        if result.dropped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(result.dropped.items()))
            typer.echo(f"dropped by rule ({reasons}): see {result.output / 'dropped.jsonl'} (docs/data.md)")
