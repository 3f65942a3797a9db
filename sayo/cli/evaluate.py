"""`sayo evaluate` and `sayo register`: recipe + `key=value` overrides → the stage's library entry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sayo.atomic import write_json
from sayo.cli.common import DEFAULT, Overrides, RecipeOption, recipe_from
from sayo.config import to_dict
from sayo.evaluate.run import EvalResult, evaluate
from sayo.experiment.stats import cell_table, paired
from sayo.registry import register_evaluated

CheckpointOption = Annotated[
    list[str] | None,
    typer.Option("--checkpoint", help="name=path or path; repeat to compare (default: evaluate.checkpoints)"),
]


def evaluate_command(
    config: RecipeOption = DEFAULT,
    overrides: Overrides = None,
    checkpoint: CheckpointOption = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="skip sets whose files are missing; the report marks them 'not run'"
        ),
    ] = False,
) -> None:
    """Answer the benchmark sets with one or more checkpoints; write metrics, report and figures."""
    recipe = recipe_from(config, overrides)
    if allow_missing:
        recipe.evaluate.allow_missing = True
    result = evaluate(recipe, checkpoint or None, progress=progress)
    for name, benches in result.metrics.items():
        for bench, values in benches.items():
            typer.echo(
                f"{name:>12} {bench:<16} accuracy {values['accuracy']:.3f} "
                f"[{values['accuracy_ci_low']:.3f}, {values['accuracy_ci_high']:.3f}]  "
                f"format {values['format_rate']:.2f}  length {values['response_length_mean']:.1f}  "
                f"attention-on-region {values['region_attention']:.3f} "
                f"(lift over uniform {values['attention_lift']:+.3f})"
            )
    for skipped in result.not_run:
        typer.echo(f"{'':>12} {skipped.name:<16} not run: {skipped.reason}; to get it: {skipped.how}")
    for line in comparison_lines(result):
        typer.echo(line)
    typer.echo(
        f"evaluate: {result.out_dir}/report.html ({result.answers_per_s:.1f} answers/s, MLflow run {result.run_id})"
    )


def comparison_lines(result: EvalResult, before: str = "sft", after: str = "grpo") -> list[str]:
    """`after` − `before` on the same samples (paired bootstrap), and whether that resolves anything.

    A table of two checkpoints reads as a result even when the difference is noise at the size
    evaluated; this says which it is.
    """
    if before not in result.records or after not in result.records:
        return []
    lines = []
    for bench in sorted({r["benchmark"] for r in result.records[after]}):
        for metric, label, pattern in (
            ("correct", "accuracy", "{:+.3f}"),
            ("attention_lift", "attention lift", "{:+.4f}"),
        ):
            table = cell_table(result.records, [after, before], bench, metric)
            if table.shape[1] == 0 or np.isnan(table).all():
                continue
            delta = paired(table[:1], table[1:])
            verdict = (
                "the interval excludes 0"
                if delta.excludes_zero
                else f"within noise at {table.shape[1]} samples (the interval contains 0)"
            )
            lines.append(f"{after} − {before} on {bench}, {label}: {delta.text(pattern)}: {verdict}")
    return lines


def register_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint directory to register")],
    metrics: Annotated[Path, typer.Option(help="the evaluate stage's metrics.json")] = Path(
        "outputs/eval/metrics.json"
    ),
    name: Annotated[
        str | None,
        typer.Option(help="which checkpoint's metrics (default: register.checkpoint_name, else the last)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="also write the decision as JSON here")] = None,
    config: RecipeOption = DEFAULT,
    overrides: Overrides = None,
) -> None:
    """Log the checkpoint as an MLflow model, alias it `challenger`, promote it to `champion` if it passes the gate."""
    recipe = recipe_from(config, overrides)
    result = register_evaluated(
        checkpoint,
        metrics,
        recipe.register,
        recipe.tracking,
        checkpoint_name=name,
        config=to_dict(recipe),
        max_new_tokens=recipe.evaluate.max_new_tokens,
    )
    verdict = "promoted to" if result.decision.promote else "not promoted to"
    typer.echo(
        f"register: {result.model_name} version {result.version} is {recipe.register.challenger_alias}, "
        f"{verdict} {recipe.register.champion_alias} ({result.decision.reason}); champion: {result.champion_version}"
    )
    if out is not None:
        write_json(out, result.as_dict())


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `register` to the `sayo` app."""
    app.command("evaluate")(evaluate_command)
    app.command("register")(register_command)
