"""The `sayo` command: one entry point for every stage (architecture.md, "The stages").

Each command is thin: it turns options into a config object and calls the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.cli.evaluate import register as register_evaluation_commands
from sayo.cli.kubeflow import register as register_pipeline_commands
from sayo.cli.train import register as register_training_commands

app = typer.Typer(
    help="sayo: teach multimodal LLMs to look at the right part of the image.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="Policies: build and save the tiny offline model.", no_args_is_help=True)
data_app = typer.Typer(help="Region-grounded datasets.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("outputs/demo"),
    model: Annotated[str, typer.Option(help="'tiny', a checkpoint directory or a cached hub id")] = "tiny",
    num_samples: Annotated[int, typer.Option(min=1, help="synthetic samples (one GRPO group each)")] = 4,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    entropy_ratio: Annotated[
        float, typer.Option(help="share of high-entropy tokens for the attention reward")
    ] = 0.2,
) -> None:
    """Score a GRPO group per synthetic sample with every reward; print a table, write heatmaps."""
    from sayo.demo import DemoConfig, run_demo

    run_demo(
        DemoConfig(model=model, num_samples=num_samples, seed=seed, entropy_ratio=entropy_ratio, out_dir=out)
    )


@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Option(help="directory to save the model and processor to")],
    seed: Annotated[int, typer.Option(help="initialisation seed")] = 0,
) -> None:
    """Build the tiny Qwen2.5-VL-architecture model and save it with save_pretrained."""
    from sayo.models import TinySpec, save_tiny

    path = save_tiny(out, TinySpec(seed=seed))
    typer.echo(f"saved the tiny policy to {path}")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="dataset directory (manifest.jsonl + images/)")],
    num_samples: Annotated[int, typer.Option(min=1)] = 256,
    seed: Annotated[int, typer.Option()] = 0,
    width: Annotated[int, typer.Option(min=28)] = 224,
    height: Annotated[int, typer.Option(min=28)] = 224,
    distractors: Annotated[int, typer.Option(min=0)] = 3,
    difficulty: Annotated[str, typer.Option(help="easy | medium | hard")] = "easy",
) -> None:
    """Generate a synthetic region-grounded dataset."""
    from sayo.data.synthetic import SyntheticConfig, write_dataset

    config = SyntheticConfig(
        num_samples=num_samples,
        seed=seed,
        image_size=(width, height),
        num_distractors=distractors,
        difficulty=difficulty,
    )
    typer.echo(f"wrote {write_dataset(config, out)}")


@data_app.command("build")
def data_build(
    config: Annotated[
        Path, typer.Option(help="data config YAML (or params.yaml: its `data:` section)")
    ] = Path("configs/data/tiny.yaml"),
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value overrides, e.g. synthetic.num_samples=64 output=data/x"),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="write invalid inputs to rejected.jsonl and go on (default: fail)")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show import progress bars")] = True,
) -> None:
    """Import, validate, mix and split the configured sources into a versioned dataset directory.

    Exits with code 2 and lists the problems (file, line, field) if any input is invalid.
    """
    from sayo.data.build import build
    from sayo.data.config import load_config
    from sayo.data.validate import DataValidationError

    data_config = load_config(config, overrides or [])
    try:
        result = build(data_config, skip_invalid=skip_invalid, progress=progress)
    except DataValidationError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        if not skip_invalid:
            typer.secho("(nothing was written; --skip-invalid drops these inputs instead)", err=True)
        raise typer.Exit(2) from error
    splits = ", ".join(f"{name} {count}" for name, count in result.splits.items())
    typer.echo(f"wrote {result.num_samples} samples ({splits}) to {result.output} in {result.seconds:.1f} s")
    if result.rejected:
        typer.echo(f"skipped {len(result.rejected)} invalid input(s): see {result.output / 'rejected.jsonl'}")


register_training_commands(app)
register_evaluation_commands(app)
register_pipeline_commands(app)


def main() -> None:
    """Console-script entry: turn ValueErrors into a clear message and exit code 2."""
    try:
        app(standalone_mode=True)
    except ValueError as err:  # pragma: no cover - typer already exits for its own errors
        typer.secho(f"error: {err}", fg="red", err=True)
        raise SystemExit(2) from err
