"""The `sayo` command: one entry point for every stage (docs/architecture.md, "Entry points").

Each command is thin: it loads the recipe (`--config`, built-in name or file, plus `key=value`
overrides) and calls the library. `sayo data build|sft|grpo|evaluate|register` run the stages,
`sayo recipes` lists and shows the built-in recipes and documents every field, `sayo pipeline`
compiles, runs locally or submits the Kubeflow pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.cli.data import register as register_data_commands
from sayo.cli.evaluate import register as register_evaluation_commands
from sayo.cli.experiment import register as register_experiment_commands
from sayo.cli.kubeflow import register as register_pipeline_commands
from sayo.cli.recipes import register as register_recipe_commands
from sayo.cli.train import register as register_training_commands
from sayo.cli.train import register_diagnose
from sayo.demo import DemoConfig, run_demo
from sayo.models import TinyQwen3VLSpec, TinySpec, save_tiny

app = typer.Typer(
    help="sayo: teach multimodal LLMs to look at the right part of the image.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="Policies: build and save the tiny offline model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("outputs/demo"),
    model: Annotated[
        str | None,
        typer.Option(help="'tiny', a checkpoint directory or a cached hub id (default: the recipe's)"),
    ] = None,
    num_samples: Annotated[int, typer.Option(min=1, help="synthetic samples (one GRPO group each)")] = 4,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: RecipeOption = DEFAULT,
    overrides: Overrides = None,
) -> None:
    """Score a GRPO group per synthetic sample with every reward; print a table, write heatmaps."""
    recipe = recipe_from(config, overrides)
    run_demo(
        DemoConfig(
            model=model or recipe.model.name_or_path,
            num_samples=num_samples,
            seed=seed,
            out_dir=out,
            rewards=recipe.rewards,
        )
    )


@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Option(help="directory to save the model and processor to")],
    seed: Annotated[int, typer.Option(help="initialisation seed")] = 0,
    arch: Annotated[
        str, typer.Option(help="qwen2.5-vl (the default `tiny`) or qwen3-vl (`tiny-qwen3-vl`)")
    ] = "qwen2.5-vl",
) -> None:
    """Build a tiny Qwen2.5-VL- or Qwen3-VL-architecture model and save it with save_pretrained."""
    specs = {"qwen2.5-vl": TinySpec, "qwen3-vl": TinyQwen3VLSpec}
    if arch not in specs:
        raise typer.BadParameter(f"--arch {arch!r}: expected one of {sorted(specs)}")
    path = save_tiny(out, specs[arch](seed=seed))
    typer.echo(f"saved the tiny policy to {path}")


register_data_commands(app)
register_training_commands(app)
register_diagnose(app)
register_evaluation_commands(app)
register_recipe_commands(app)
register_experiment_commands(app)
register_pipeline_commands(app)


def main() -> None:
    """Console-script entry: turn ValueErrors (bad recipe, bad input) into one clear line and exit code 2."""
    try:
        app(standalone_mode=True)
    except (ValueError, FileNotFoundError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise SystemExit(2) from None
