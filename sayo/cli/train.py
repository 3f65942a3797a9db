"""`sayo sft` and `sayo grpo`: recipe + `key=value` overrides → the stage's library entry."""

from __future__ import annotations

from typing import Annotated

import typer

from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.train.grpo import train_grpo
from sayo.train.sft import train_sft

ResumeOption = Annotated[
    bool, typer.Option("--resume", help="continue from the newest checkpoint of this stage")
]


def register(app: typer.Typer) -> None:
    """Add the training commands to the `sayo` app."""

    @app.command()
    def sft(
        config: RecipeOption = DEFAULT, overrides: Overrides = None, resume: ResumeOption = False
    ) -> None:
        """Supervised warm-up on answer-formatted data (loss on response tokens only)."""
        recipe = recipe_from(config, overrides)
        recipe.checkpoint.resume = recipe.checkpoint.resume or resume
        result = train_sft(recipe)
        typer.echo(f"sft: final checkpoint {result.final_dir} (MLflow run {result.run_id})")

    @app.command()
    def grpo(
        config: RecipeOption = DEFAULT, overrides: Overrides = None, resume: ResumeOption = False
    ) -> None:
        """GRPO with the region-attention reward (SAYO)."""
        recipe = recipe_from(config, overrides)
        recipe.checkpoint.resume = recipe.checkpoint.resume or resume
        result = train_grpo(recipe)
        typer.echo(f"grpo: final checkpoint {result.final_dir} (MLflow run {result.run_id})")
