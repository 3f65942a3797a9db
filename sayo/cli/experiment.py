"""`sayo experiment ablation`: the reward ablation of an experiment file, end to end, with its results page.

`--arm A --seed S` runs one arm × seed only (the data and the SFT warm start made or reused first):
the command of one item of the `ablation-grpo` matrix in experiments/dvc.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.experiment.ablation import run_ablation, run_one_arm
from sayo.experiment.config import load_ablation
from sayo.experiment.results import write_results


def register(app: typer.Typer) -> None:
    """Add `sayo experiment ...` to the `sayo` app."""
    experiment_app = typer.Typer(help="Experiments over recipes.", no_args_is_help=True)
    app.add_typer(experiment_app, name="experiment")

    @experiment_app.command("ablation")
    def ablation(
        config: Annotated[
            str,
            typer.Option(
                "--config", "-c", help="experiment file or shipped name (sayo/recipes/experiments/)"
            ),
        ] = "ablation_tiny",
        quick: Annotated[
            bool, typer.Option(help="every step at toy size (minutes): checks the wiring, not effects")
        ] = False,
        results: Annotated[
            Path | None,
            typer.Option(
                help="results page to write (default: the file's `results`; with --quick, under out_dir)"
            ),
        ] = None,
        arm: Annotated[
            str | None,
            typer.Option(help="run only this arm's GRPO (with --seed): one dvc matrix item, no results page"),
        ] = None,
        seed: Annotated[int | None, typer.Option(help="the GRPO seed of --arm")] = None,
    ) -> None:
        """SFT once, GRPO arms × seeds, evaluation on two splits; writes the results page and figures."""
        cfg = load_ablation(config)
        if (arm is None) != (seed is None):
            raise typer.BadParameter("--arm and --seed go together (one arm × seed)")
        if arm is not None and seed is not None:
            done = run_one_arm(cfg, arm, seed, quick=quick, log=typer.echo)
            typer.echo(f"{arm} seed {seed}: final checkpoint {done.checkpoint} (MLflow run {done.run_id})")
            return
        run = run_ablation(cfg, quick=quick, log=typer.echo)
        page = results or (run.out_dir / "results.md" if quick else Path(cfg.results))
        typer.echo(f"results: {write_results(run, page)} (MLflow parent run {run.parent_run_id})")
