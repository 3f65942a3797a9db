"""The `register` stage: an evaluated checkpoint as an MLflow model version, promoted by a gate."""

from sayo.registry.config import RegisterConfig
from sayo.registry.register import (
    GateDecision,
    Registration,
    gate_decision,
    register_checkpoint,
    register_evaluated,
)

__all__ = [
    "GateDecision",
    "RegisterConfig",
    "Registration",
    "gate_decision",
    "register_checkpoint",
    "register_evaluated",
]
