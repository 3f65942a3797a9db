"""`sayo sft` and `sayo grpo`: recipe + `key=value` overrides → the stage's library entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.recipe import Recipe
from sayo.train.config import grpo_start
from sayo.train.diagnose import diagnose as run_diagnose
from sayo.train.diagnose import report_lines
from sayo.train.grpo import train_grpo
from sayo.train.policy import StageResult
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
        _train("sft", train_sft, config, overrides, resume)

    @app.command()
    def grpo(
        config: RecipeOption = DEFAULT, overrides: Overrides = None, resume: ResumeOption = False
    ) -> None:
        """GRPO with the region-attention reward (SAYO)."""
        _train("grpo", train_grpo, config, overrides, resume)


def _train(
    stage: str, run: Callable[[Recipe], StageResult], config: str, overrides: list[str] | None, resume: bool
) -> None:
    recipe = recipe_from(config, overrides)
    recipe.checkpoint.resume = recipe.checkpoint.resume or resume
    result = run(recipe)
    typer.echo(f"{stage}: final checkpoint {result.final_dir} (MLflow run {result.run_id})")


def register_diagnose(app: typer.Typer) -> None:
    """Add `sayo diagnose` to the `sayo` app."""

    @app.command()
    def diagnose(
        config: RecipeOption = DEFAULT,
        overrides: Overrides = None,
        checkpoint: Annotated[
            str | None,
            typer.Option(help="policy to sample from (default: where GRPO would start, grpo.init_from)"),
        ] = None,
        prompts: Annotated[int, typer.Option(min=2, help="prompts of the training split")] = 32,
        group_size: Annotated[
            int | None, typer.Option(min=2, help="rollouts per prompt (default grpo.group_size)")
        ] = None,
        reading_samples: Annotated[
            int, typer.Option(min=0, help="training samples of the reading check (0: skip it)")
        ] = 256,
    ) -> None:
        """Signal check: each reward term's within- vs between-group spread, attention lift, whether
        the policy answers by looking; warns on no signal and names the failing link."""
        recipe = recipe_from(config, overrides)
        report = run_diagnose(recipe, checkpoint or grpo_start(recipe), prompts, group_size, reading_samples)
        for line in report_lines(report):
            typer.echo(line)
