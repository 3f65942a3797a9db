"""`sayo experiment ablation`: the reward ablation of an experiment file, end to end, with its results page.

`--arm A --seed S` runs one arm × seed only (the data and the SFT warm start made or reused first),
from the warm start `--warm` names (its name, e.g. `ws-d1-s1`, or its index in `warm_starts`): the
command of one item of the `ablation-grpo` matrix in experiments/dvc.yaml. `--jobs N` runs the steps
on N processes side by side (the SFT warm starts, then each arm × seed as soon as its warm start is
ready, then each warm start's evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.experiment.ablation import run_ablation, run_one_arm
from sayo.experiment.config import load_ablation
from sayo.experiment.results import write_results
from sayo.experiment.schedule import default_jobs
from sayo.experiment.steps import pick_warm_start, warm_name


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
        ] = "ablation_warm_starts",
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
        warm: Annotated[
            str,
            typer.Option(help="the warm start of --arm: its name (ws-d1-s1) or index in `warm_starts`"),
        ] = "0",
        jobs: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="processes the steps run on, side by side (default: the CPU cores; 1 with a GPU)",
            ),
        ] = None,
    ) -> None:
        """SFT once, GRPO arms × seeds, evaluation on two splits; writes the results page and figures."""
        cfg = load_ablation(config)
        if (arm is None) != (seed is None):
            raise typer.BadParameter("--arm and --seed go together (one arm × seed)")
        if arm is not None and seed is not None:
            try:
                index = pick_warm_start(cfg, warm, quick)
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--warm") from err
            done = run_one_arm(cfg, arm, seed, quick=quick, log=typer.echo, warm=index)
            typer.echo(
                f"{arm} seed {seed} ({warm_name(cfg, index, quick)}): final checkpoint {done.checkpoint} (MLflow run {done.run_id})"
            )
            return
        run = run_ablation(cfg, quick=quick, log=typer.echo, jobs=jobs or default_jobs())
        page = results or (run.out_dir / "results.md" if quick else Path(cfg.results))
        typer.echo(f"results: {write_results(run, page)} (MLflow parent run {run.parent_run_id})")
