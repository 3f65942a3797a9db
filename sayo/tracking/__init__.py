"""MLflow tracking for every stage: one run per stage (`StageRun`), local sqlite or a server."""

from sayo.tracking.runs import StageRun, TrackingUnavailable, check_tracking, redact, resolve_tracking_uri

__all__ = ["StageRun", "TrackingUnavailable", "check_tracking", "redact", "resolve_tracking_uri"]
