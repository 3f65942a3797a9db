"""`sayo sft` and `sayo grpo`: config file + `key=value` overrides → the stage's library entry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sayo.train.config import DEFAULT_TRAIN_CONFIG

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="training YAML (configs/tiny.yaml …)")]
Overrides = Annotated[
    list[str] | None, typer.Argument(help="overrides such as grpo.group_size=8 rewards.entropy_ratio=1.0")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="continue from the newest checkpoint of this stage")
]


SectionOption = Annotated[
    str | None,
    typer.Option("--section", help="read one top-level section of the file (e.g. train in params.yaml)"),
]


def _load(config: Path, overrides: list[str] | None, resume: bool, section: str | None = None):
    from sayo.train.config import load_train_config

    cfg = load_train_config(config, overrides or [], section=section)
    if resume:
        cfg.checkpoint.resume = True
    return cfg


def register(app: typer.Typer) -> None:
    """Add the training commands to the `sayo` app."""

    @app.command()
    def sft(
        config: ConfigOption = DEFAULT_TRAIN_CONFIG,
        overrides: Overrides = None,
        resume: ResumeOption = False,
        section: SectionOption = None,
    ) -> None:
        """Supervised warm-up on answer-formatted data (loss on response tokens only)."""
        from sayo.train.sft import train_sft

        result = train_sft(_load(config, overrides, resume, section))
        typer.echo(f"sft: final checkpoint {result.final_dir} (MLflow run {result.run_id})")

    @app.command()
    def grpo(
        config: ConfigOption = DEFAULT_TRAIN_CONFIG,
        overrides: Overrides = None,
        resume: ResumeOption = False,
        section: SectionOption = None,
    ) -> None:
        """GRPO with the region-attention reward (SAYO)."""
        from sayo.train.grpo import train_grpo

        result = train_grpo(_load(config, overrides, resume, section))
        typer.echo(f"grpo: final checkpoint {result.final_dir} (MLflow run {result.run_id})")
