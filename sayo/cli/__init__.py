"""The `sayo` command: one entry point for every stage (docs/architecture.md, "Entry points").

Each command is thin: it loads the recipe (`--config`, built-in name or file, plus `key=value`
overrides) and calls the library. `sayo data build|sft|grpo|evaluate|register` run the stages,
`sayo recipes` lists and shows the built-in recipes and documents every field, `sayo pipeline`
compiles, runs locally or submits the Kubeflow pipeline.

Commands load lazily: `COMMANDS` names each command's module and the line `sayo --help` shows,
so `sayo --help` imports no command module (and so not torch, transformers or mlflow) and a
command imports only its own module. tests/test_cli.py checks the lines against the commands.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # typer vendors click: its classes, for the annotations
    from typer._click import Command, Context

# name -> (module, the function that adds the command to an app, the line `sayo --help` shows)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "sayo.cli.demo",
        "register",
        "Score a GRPO group per synthetic sample with every reward; print a table, write heatmaps.",
    ),
    "sft": (
        "sayo.cli.train",
        "register",
        "Supervised warm-up on answer-formatted data (loss on response tokens only).",
    ),
    "grpo": ("sayo.cli.train", "register", "GRPO with the region-attention reward (SAYO)."),
    "diagnose": (
        "sayo.cli.train",
        "register_diagnose",
        "Signal check: each reward term's within- vs between-group spread, attention lift, whether\n"
        "the policy answers by looking; warns on no signal and names the failing link.",
    ),
    "evaluate": (
        "sayo.cli.evaluate",
        "register",
        "Answer the benchmark sets with one or more checkpoints; write metrics, report and figures.",
    ),
    "register": (
        "sayo.cli.evaluate",
        "register",
        "Log the checkpoint as an MLflow model, alias it `challenger`, promote it to `champion` if it "
        "passes the gate.",
    ),
    "model": ("sayo.cli.demo", "register_model", "Policies: build and save the tiny offline model."),
    "data": ("sayo.cli.data", "register", "Region-grounded datasets."),
    "recipes": ("sayo.cli.recipes", "register", "Recipes: one YAML file configures every stage."),
    "experiment": ("sayo.cli.experiment", "register", "Experiments over recipes."),
    "pipeline": ("sayo.cli.kubeflow", "register", "The Kubeflow pipeline: compile, run locally, submit."),
}


class _NotLoaded(TyperCommand):
    """A command's name and help line, standing in for it until it is run."""


@functools.cache
def _registered(module: str, registrar: str) -> TyperGroup:
    """The commands a module's registrar adds to an app, as a click group (imported once)."""
    sub = typer.Typer()
    getattr(importlib.import_module(module), registrar)(sub)
    return typer.main.get_group(sub)


def load_command(name: str) -> Command:
    """The real command `name` (its module imported)."""
    module, registrar, _ = COMMANDS[name]
    return _registered(module, registrar).commands[name]


class LazyGroup(TyperGroup):
    """The `sayo` group: lists every command from `COMMANDS`, imports one only to run it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (_, _, line) in COMMANDS.items():
            self.commands.setdefault(name, _NotLoaded(name, help=line))

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and isinstance(self.commands.get(args[0]), _NotLoaded):
            self.commands[args[0]] = load_command(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=LazyGroup,
    help="sayo: teach multimodal LLMs to look at the right part of the image.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """(typer builds a group only for an app with a command or a callback; commands come from `COMMANDS`)"""


def main() -> None:
    """Console-script entry: turn ValueErrors (bad recipe, bad input) into one clear line and exit code 2."""
    try:
        app(standalone_mode=True)
    except (ValueError, FileNotFoundError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise SystemExit(2) from None
