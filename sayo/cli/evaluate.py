"""`sayo evaluate` and `sayo register`: config file + `key=value` overrides → the stage's library entry.

Same pattern as the training commands (`sayo.cli.train`): `--config configs/tiny.yaml` (or
`--config params.yaml --section train`) gives the model/device/tracking sections; `--params
params.yaml` takes the stage's own top-level section (`evaluate:` / `register:`) from dvc's
params file instead of the config's, so `dvc exp run -S evaluate.batch_size=16` works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sayo.train.config import DEFAULT_TRAIN_CONFIG

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="config YAML (configs/tiny.yaml …)")]
Overrides = Annotated[list[str] | None, typer.Argument(help="overrides such as evaluate.batch_size=16")]
SectionOption = Annotated[
    str | None,
    typer.Option("--section", help="read one top-level section of the config file (train in params.yaml)"),
]
ParamsOption = Annotated[
    Path | None,
    typer.Option("--params", help="take the stage's own section (evaluate/register) from this file"),
]
CheckpointOption = Annotated[
    list[str] | None,
    typer.Option("--checkpoint", help="name=path or path; repeat to compare (default: evaluate.checkpoints)"),
]


def load_stage_config(
    config: Path, overrides: list[str] | None, section: str | None, params: Path | None, stage: str
) -> Any:
    """The full config; with `params`, its `stage` section replaces the config's (overrides still apply)."""
    from sayo.config import load_config
    from sayo.train.config import load_train_config

    overrides = list(overrides or [])
    cfg = load_train_config(
        config,
        [o for o in overrides if not o.startswith(f"{stage}.")] if params else overrides,
        section=section,
    )
    if params is not None:
        own = [o[len(stage) + 1 :] for o in overrides if o.startswith(f"{stage}.")]
        setattr(cfg, stage, load_config(type(getattr(cfg, stage)), params, own, section=stage))
    return cfg


def evaluate_command(
    config: ConfigOption = DEFAULT_TRAIN_CONFIG,
    overrides: Overrides = None,
    checkpoint: CheckpointOption = None,
    section: SectionOption = None,
    params: ParamsOption = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
) -> None:
    """Answer the benchmark sets with one or more checkpoints; write metrics, report and figures."""
    from sayo.evaluate.run import evaluate

    cfg = load_stage_config(config, overrides, section, params, "evaluate")
    result = evaluate(cfg, checkpoint or None, progress=progress)
    for name, benches in result.metrics.items():
        for bench, values in benches.items():
            typer.echo(
                f"{name:>12} {bench:<16} accuracy {values['accuracy']:.3f} "
                f"[{values['accuracy_ci_low']:.3f}, {values['accuracy_ci_high']:.3f}]  "
                f"format {values['format_rate']:.2f}  length {values['response_length_mean']:.1f}  "
                f"attention-on-region {values['region_attention']:.3f}"
            )
    typer.echo(
        f"evaluate: {result.out_dir}/report.html ({result.answers_per_s:.1f} answers/s, MLflow run {result.run_id})"
    )


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
    config: ConfigOption = DEFAULT_TRAIN_CONFIG,
    overrides: Overrides = None,
    section: SectionOption = None,
    params: ParamsOption = None,
) -> None:
    """Log the checkpoint as an MLflow model, alias it `challenger`, promote it to `champion` if it passes the gate."""
    from sayo.atomic import write_json
    from sayo.config import to_dict
    from sayo.registry.register import checkpoint_metrics, register_checkpoint

    cfg = load_stage_config(config, overrides, section, params, "register")
    _, values = checkpoint_metrics(metrics, name or cfg.register.checkpoint_name)
    result = register_checkpoint(
        checkpoint, values, cfg.register, cfg.tracking, to_dict(cfg), cfg.evaluate.max_new_tokens
    )
    decision = result.decision
    verdict = "promoted to" if decision.promote else "not promoted to"
    typer.echo(
        f"register: {result.model_name} version {result.version} is {cfg.register.challenger_alias}, "
        f"{verdict} {cfg.register.champion_alias} ({decision.reason}); champion: {result.champion_version}"
    )
    if out is not None:
        write_json(out, {"model_name": result.model_name, "version": result.version, "promote": decision.promote,
                         "reason": decision.reason, "deltas": decision.deltas,
                         "champion_version": result.champion_version})  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `register` to the `sayo` app."""
    app.command("evaluate")(evaluate_command)
    app.command("register")(register_command)
