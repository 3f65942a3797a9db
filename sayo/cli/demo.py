"""`sayo demo` and `sayo model tiny`: the reward demo and the tiny offline policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.demo import DemoConfig, run_demo
from sayo.models import TinyQwen3VLSpec, TinySpec, save_tiny


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


def register(app: typer.Typer) -> None:
    """Add `sayo demo` to the `sayo` app."""
    app.command("demo")(demo)


def register_model(app: typer.Typer) -> None:
    """Add `sayo model ...` to the `sayo` app."""
    model_app = typer.Typer(help="Policies: build and save the tiny offline model.", no_args_is_help=True)
    app.add_typer(model_app, name="model")
    model_app.command("tiny")(model_tiny)
