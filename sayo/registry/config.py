"""Config of the `register` stage: the registered model's name, aliases and the promotion gate.

Why a gate (docs/architecture.md, "Tracking and registry"): every registered version becomes the
`challenger`; it replaces the `champion` only when it beats it on the gate metrics by `margin`
and loses no more than `tolerance` on any other benchmark accuracy, so a retraining run that
helps one benchmark and breaks another is kept out of serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sayo.config import check


@dataclass
class RegisterConfig:
    """The `register:` YAML section."""

    model_name: str = "sayo"  # registered model name in the MLflow model registry
    checkpoint_name: str | None = None  # which checkpoint's metrics in metrics.json (default: the last one)
    gate_metrics: list[str] = field(default_factory=lambda: ["synthetic/accuracy"])  # must all improve
    margin: float = 0.01  # each gate metric must exceed the champion's by at least this (absolute)
    tolerance: float = 0.02  # no other `*/accuracy` metric may drop by more than this (absolute)
    challenger_alias: str = "challenger"  # alias every new version gets
    champion_alias: str = "champion"  # alias of the version in service, moved only through the gate

    def __post_init__(self) -> None:
        check(bool(self.model_name.strip()), "register.model_name", self.model_name, "must not be empty")
        check(
            bool(self.gate_metrics), "register.gate_metrics", self.gate_metrics, "needs at least one metric"
        )
        check(self.margin >= 0, "register.margin", self.margin, "must be >= 0")
        check(self.tolerance >= 0, "register.tolerance", self.tolerance, "must be >= 0")
        check(self.challenger_alias != self.champion_alias, "register.champion_alias", self.champion_alias,
               "must differ from challenger_alias")  # fmt: skip
