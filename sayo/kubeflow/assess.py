"""What the `evaluate` and `register` components do, on directories (see `sayo.kubeflow.steps`).

The evaluate stage compares the base model, the SFT and the GRPO checkpoints on the configured
benchmarks; a `dataset` benchmark that points at the training data path of the config is
redirected to the pipeline's `Dataset` artifact, so the test split evaluated is the one the run
trained next to. The register stage logs the GRPO checkpoint as an MLflow model version
(`challenger`) and promotes it to `champion` only if it passes the gate (`sayo.registry.register`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sayo.kubeflow.steps import yaml_literal


def run_evaluate(
    config: str, overrides: list[str], dataset: str, checkpoints: dict[str, str], out_dir: str
) -> dict[str, Any]:
    """Evaluate `checkpoints` (name → directory, after the config's base model) into `out_dir`.

    Returns the nested metrics (`{checkpoint: {benchmark: {metric: value}}}`) of `metrics.json`.
    """
    from sayo.evaluate.run import evaluate
    from sayo.train.config import load_train_config

    cfg = load_train_config(config, [*overrides, f"evaluate.out_dir={out_dir}"])
    for bench in cfg.evaluate.benchmarks:
        if bench.type == "dataset" and Path(bench.path) == Path(cfg.data.path):
            bench.path = dataset
    cfg.data.path = dataset
    specs = [f"base={cfg.model.name_or_path}", *(f"{name}={path}" for name, path in checkpoints.items())]
    result = evaluate(cfg, specs, progress=False)
    metrics: dict[str, Any] = result.metrics
    return metrics


def flat_checkpoint_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """`{checkpoint: {benchmark: {metric: v}}}` → `{"checkpoint/benchmark/metric": v}` (numbers only)."""
    out = {}
    for name, benches in metrics.items():
        for bench, values in (benches or {}).items():
            for key, value in (values or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                    out[f"{name}/{bench}/{key}"] = float(value)
    return out


def copy_file(source: Path, target: str | Path) -> None:
    """Copy one file into an output artifact's path."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def run_register(
    config: str, overrides: list[str], checkpoint: str, metrics_file: str, gate_metrics: list[str]
) -> dict[str, Any]:
    """Register `checkpoint` with the `grpo` metrics of `metrics_file`; returns the decision."""
    from sayo.config import to_dict
    from sayo.registry.register import checkpoint_metrics, register_checkpoint
    from sayo.train.config import load_train_config

    extra = [f"register.gate_metrics={yaml_literal(list(gate_metrics))}"] if gate_metrics else []
    cfg = load_train_config(config, [*overrides, *extra])
    _, values = checkpoint_metrics(metrics_file, cfg.register.checkpoint_name or "grpo")
    result = register_checkpoint(
        checkpoint, values, cfg.register, cfg.tracking, to_dict(cfg), cfg.evaluate.max_new_tokens
    )
    decision = {
        "model_name": result.model_name,
        "version": result.version,
        "promoted": result.decision.promote,
        "reason": result.decision.reason,
        "champion_version": result.champion_version,
        "model_uri": result.model_uri,
    }
    return json.loads(json.dumps(decision))
