"""The `sayo` command loads lazily: `sayo --help` and `sayo recipes` import no torch, transformers
or mlflow (they took seconds when every command module was imported up front), and the lazy help
lists every command with the same line the command itself carries."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from sayo import cli
from sayo.cli import app

HEAVY = ("torch", "transformers", "mlflow")


def _imported(*args: str) -> set[str]:
    """Top-level packages a `python -X importtime -m sayo <args>` run imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sayo", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split("|")[-1] for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("args", [["--help"], ["recipes"]])
def test_help_and_recipes_import_no_heavy_package(args: list[str]) -> None:
    imported = _imported(*args)
    assert "typer" in imported  # the parse saw the imports
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def _eager_app() -> typer.Typer:
    """The `sayo` app with every command module imported and registered up front."""
    eager = typer.Typer(help=app.info.help, no_args_is_help=True)
    for module, registrar in dict.fromkeys((m, r) for m, r, _ in cli.COMMANDS.values()):
        getattr(importlib.import_module(module), registrar)(eager)
    return eager


def test_lazy_help_lists_every_command_as_the_commands_describe_themselves() -> None:
    runner = CliRunner()
    lazy = runner.invoke(app, ["--help"], terminal_width=200)
    eager = runner.invoke(_eager_app(), ["--help"], terminal_width=200)
    assert lazy.exit_code == 0 and eager.exit_code == 0, lazy.output + eager.output
    assert lazy.output == eager.output


def test_a_lazy_command_runs_and_a_typo_is_suggested() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["recipes", "show", "tiny", "grpo.group_size=4"])
    assert shown.exit_code == 0 and "group_size: 4" in shown.output, shown.output
    typo = runner.invoke(app, ["recpes"])
    assert typo.exit_code == 2 and "Did you mean 'recipes'" in typo.output, typo.output
