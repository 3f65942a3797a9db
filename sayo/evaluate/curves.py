"""Training curves for the report, pulled from the latest `sft`/`grpo` runs of the experiment.

Why from MLflow rather than from files: the trainers log every step there (`StageRun`), whatever
machine they ran on; the report then shows reward and response length next to the evaluation
(docs/method.md, "Findings to reproduce" 4: trained models answer with shorter chains). No run, no curve: a missing
experiment or stage is skipped, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from sayo.tracking import TrackingConfig, check_tracking, resolve_tracking_uri

Curve = list[tuple[int, float]]
CURVE_KEYS = ("reward/total_mean", "response_length_mean", "loss")


def training_curves(
    tracking: TrackingConfig, stages: Sequence[str] = ("sft", "grpo"), keys: Sequence[str] = CURVE_KEYS
) -> dict[str, dict[str, Curve]]:
    """`{stage: {metric: [(step, value), …]}}` of the newest run of each stage (tag `sayo.stage`)."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking)
    check_tracking(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return {}
    curves: dict[str, dict[str, Curve]] = {}
    for stage in stages:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`sayo.stage` = '{stage}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            continue
        found = {}
        for key in keys:
            history = client.get_metric_history(runs[0].info.run_id, key)
            if history:
                found[key] = sorted((int(m.step), float(m.value)) for m in history)
        if found:
            curves[stage] = found
    return curves
