"""MLflow tracking for every stage: one run per stage (`StageRun`), local sqlite or a server; the
model registry with its promotion gate (`register_checkpoint`)."""

from sayo.tracking.registry import GateDecision, Registration, gate_decision, register_checkpoint
from sayo.tracking.registry_config import RegisterConfig
from sayo.tracking.runs import StageRun, TrackingUnavailable, check_tracking, redact, resolve_tracking_uri

__all__ = [
    "GateDecision",
    "RegisterConfig",
    "Registration",
    "StageRun",
    "TrackingUnavailable",
    "check_tracking",
    "gate_decision",
    "redact",
    "register_checkpoint",
    "resolve_tracking_uri",
]
