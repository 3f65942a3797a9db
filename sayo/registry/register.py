"""The `register` stage: log a checkpoint as an MLflow model, alias it, and gate its promotion.

Why a gate in code rather than by hand (docs/architecture.md, "Tracking and registry"): every new
version becomes the `challenger`; it takes the `champion` alias only if it beats the current
champion on every gate metric by `margin` and no other benchmark accuracy (`<benchmark>/accuracy`)
drops by more than `tolerance`. The first version is promoted (there is nothing to beat). The
decision and its numbers are written as version tags (`sayo.gate.*`), next to the version's own
metrics (`sayo.metric.<name>`, which is what a later challenger is compared with), the data
version (`sayo.data_version`: the `data` stage's output hash in dvc.lock), the git commit and the
resolved config, so a promotion can be audited without the machine that made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from sayo.config import finite_numbers, flatten
from sayo.models import resolve_model_path
from sayo.registry.config import RegisterConfig
from sayo.registry.wheel import build_wheel
from sayo.tracking import StageRun, TrackingConfig, check_tracking, resolve_tracking_uri

METRIC_TAG = "sayo.metric."
BENCHMARK_ACCURACY = re.compile(r"^[^/]+/accuracy$")
URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
SERVED = Path(__file__).with_name("served.py")  # the model file (models from code; no pickle)
# what serving imports besides sayo, pinned to the versions that registered it (mlflow adds itself,
# pinned). A local version label (torch 2.13.0+cpu) is dropped: the same release built for the
# serving machine's accelerator is the one to install there. sayo itself is on no index: it travels
# with the model as a wheel (`sayo.registry.wheel`), named in requirements.txt by its path there.
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "pillow", "pandas")
WHEEL_ARTIFACT = "sayo_wheel"  # the artifact holding the wheel (artifacts/<its file name> in the model)


@dataclass
class GateDecision:
    """Whether the challenger is promoted, why, and the metric differences (challenger − champion)."""

    promote: bool
    reason: str
    deltas: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def gate_decision(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate_metrics: Sequence[str],
    margin: float,
    tolerance: float,
) -> GateDecision:
    """Decide promotion. Gate metrics must each improve by >= `margin`; other `<bench>/accuracy`
    metrics both versions have may drop by at most `tolerance`. No champion: promote."""
    missing = [m for m in gate_metrics if m not in challenger]
    if missing:
        raise ValueError(f"gate metric(s) {missing} not in the challenger's metrics {sorted(challenger)}")
    if champion is None:
        return GateDecision(True, "no champion yet")
    shared = [m for m in challenger if m in champion and (m in gate_metrics or BENCHMARK_ACCURACY.match(m))]
    deltas = {m: challenger[m] - champion[m] for m in shared}
    failures = [
        f"{m}: {deltas[m]:+.4f} < margin {margin}" for m in gate_metrics if m in deltas and deltas[m] < margin
    ]
    failures += [
        f"{m}: {deltas[m]:+.4f} regresses by more than tolerance {tolerance}"
        for m in shared
        if m not in gate_metrics and deltas[m] < -tolerance
    ]
    if failures:
        return GateDecision(False, "; ".join(failures), deltas, failures)
    return GateDecision(True, f"beats the champion on {list(gate_metrics)} by >= {margin}", deltas)


@dataclass
class Registration:
    """What `register_checkpoint` did."""

    model_name: str
    version: str
    decision: GateDecision
    champion_version: str | None  # the champion after the decision
    run_id: str | None
    model_uri: str

    def as_dict(self) -> dict[str, Any]:
        """The decision as plain JSON values (the CLI's `--out` file, the Kubeflow step's metadata)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "promote": self.decision.promote,
            "reason": self.decision.reason,
            "deltas": dict(self.decision.deltas),
            "champion_version": self.champion_version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
        }


def checkpoint_metrics(
    metrics_file: str | Path, checkpoint_name: str | None = None
) -> tuple[str, dict[str, float]]:
    """One checkpoint's metrics from the evaluate stage's `metrics.json`, flat (`synthetic/accuracy`).

    `checkpoint_name` None takes the last checkpoint evaluated. Null (NaN) metrics are dropped.
    """
    nested = json.loads(Path(metrics_file).read_text())
    name = checkpoint_name or list(nested)[-1]
    if name not in nested:
        raise ValueError(f"{metrics_file} has no checkpoint {name!r}; it has {list(nested)}")
    return name, finite_numbers(flatten(nested[name], sep="/"))


def data_version(lock_file: str | Path = "dvc.lock", stage: str = "data") -> str:
    """The md5 of the `data` stage's first output in dvc.lock, or "unknown"."""
    try:
        lock = yaml.safe_load(Path(lock_file).read_text()) or {}
        return str(lock["stages"][stage]["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def git_commit() -> str:
    """`git rev-parse HEAD` of the working directory, or "unknown" outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


@contextlib.contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """mlflow's model logging is fluent-only: point tracking and registry at `uri`, then restore.

    `mlflow.set_tracking_uri` also exports `MLFLOW_TRACKING_URI`, so the environment is restored too.
    """
    import mlflow

    saved_env = {k: os.environ.get(k) for k in URI_ENV}
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0] if saved_env["MLFLOW_TRACKING_URI"] else None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(previous[1] if saved_env["MLFLOW_REGISTRY_URI"] else None)  # type: ignore[arg-type]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pinned_requirements(packages: Sequence[str] = SERVING_PACKAGES) -> list[str]:
    """`name==version` of each package as installed here (without a local `+label`)."""
    pins = []
    for name in packages:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError as err:
            raise RuntimeError(
                f"{name} is not installed: cannot pin the served model's requirements"
            ) from err
        pins.append(f"{name}=={installed.split('+', 1)[0]}")
    return pins


def _log_model(run_id: str, checkpoint: str, max_new_tokens: int) -> str:
    """Log the checkpoint as a pyfunc from code (`served.py`), with signature, input example and
    pinned requirements, in run `run_id`; returns its model URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from sayo.registry.model import encode_image

    example = pd.DataFrame(
        {
            "image": [encode_image(Image.new("RGB", (56, 56), "red"))],
            "question": ["What colour is the square?"],
        }
    )
    output = pd.DataFrame({"answer": ["red"], "completion": ["<think>…</think><answer>red</answer>"]})
    signature = infer_signature(example, output, params={"max_new_tokens": max_new_tokens})
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory(prefix="sayo-wheel-") as tmp:
        wheel = build_wheel(tmp)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SERVED),
            artifacts={"checkpoint": checkpoint, WHEEL_ARTIFACT: str(wheel)},
            signature=signature,
            input_example=example,
            # MLflow runs `pip install -r requirements.txt` in the model directory: the path resolves
            pip_requirements=[*pinned_requirements(), f"artifacts/{wheel.name}"],
            model_config={"max_new_tokens": max_new_tokens},
        )
    return str(info.model_uri)


def _champion(client: Any, cfg: RegisterConfig) -> tuple[str | None, dict[str, float] | None]:
    """The current champion's version and its metrics (from its `sayo.metric.*` tags), or (None, None)."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias)
    except MlflowException:
        return None, None
    metrics = {k[len(METRIC_TAG) :]: float(v) for k, v in version.tags.items() if k.startswith(METRIC_TAG)}
    return str(version.version), metrics


def _version_tags(
    metrics: Mapping[str, float], config: Mapping[str, Any] | None, checkpoint: str
) -> dict[str, str]:
    tags = {
        "sayo.data_version": data_version(),
        "sayo.git_commit": git_commit(),
        "sayo.config": json.dumps(config or {}, default=str)[:5000],
        "sayo.checkpoint": checkpoint,
    }
    tags.update({f"{METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items()})
    return tags


def _decision_tags(
    decision: GateDecision, champion_version: str | None, cfg: RegisterConfig
) -> dict[str, str]:
    return {
        "sayo.gate.decision": "promoted" if decision.promote else "refused",
        "sayo.gate.reason": decision.reason[:5000],
        "sayo.gate.champion_version": champion_version or "none",
        "sayo.gate.deltas": json.dumps(decision.deltas),
        "sayo.gate.metrics": json.dumps(list(cfg.gate_metrics)),
        "sayo.gate.margin": str(cfg.margin),
        "sayo.gate.tolerance": str(cfg.tolerance),
    }


def register_checkpoint(
    checkpoint: str | Path,
    metrics: Mapping[str, float],
    cfg: RegisterConfig,
    tracking: TrackingConfig,
    config: Mapping[str, Any] | None = None,
    max_new_tokens: int = 32,
) -> Registration:
    """Log `checkpoint` as a model, register a version (alias `challenger`), gate it against `champion`."""
    import mlflow
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking)
    check_tracking(uri)
    path = resolve_model_path(checkpoint)
    params = {"checkpoint": path, "model_name": cfg.model_name, "gate_metrics": list(cfg.gate_metrics)}
    with StageRun(tracking, stage="register", params=params) as run, _fluent_uri(uri):
        assert run.run_id is not None, "the register stage needs tracking enabled"
        run.log_metrics(dict(metrics), step=0)
        model_uri = _log_model(run.run_id, path, max_new_tokens)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = mlflow.register_model(
            model_uri, cfg.model_name, tags=_version_tags(metrics, config, path)
        ).version
        client.set_registered_model_alias(cfg.model_name, cfg.challenger_alias, version)
        champion_version, champion_metrics = _champion(client, cfg)
        decision = gate_decision(metrics, champion_metrics, cfg.gate_metrics, cfg.margin, cfg.tolerance)
        for key, value in _decision_tags(decision, champion_version, cfg).items():
            client.set_model_version_tag(cfg.model_name, str(version), key, value)
        if decision.promote:
            client.set_registered_model_alias(cfg.model_name, cfg.champion_alias, version)
            champion_version = str(version)
        run.log_dict({"version": str(version), "promote": decision.promote, "reason": decision.reason,
                      "deltas": decision.deltas}, "gate_decision.json")  # fmt: skip
    return Registration(cfg.model_name, str(version), decision, champion_version, run.run_id, model_uri)


def register_evaluated(
    checkpoint: str | Path,
    metrics_file: str | Path,
    cfg: RegisterConfig,
    tracking: TrackingConfig,
    *,
    checkpoint_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    max_new_tokens: int = 32,
) -> Registration:
    """The `register` stage: `checkpoint` with its metrics from the evaluate stage's `metrics.json`.

    `checkpoint_name` picks the checkpoint's entry in `metrics.json` (default `cfg.checkpoint_name`,
    else the last one evaluated). The CLI and the Kubeflow component both call this.
    """
    _, metrics = checkpoint_metrics(metrics_file, checkpoint_name or cfg.checkpoint_name)
    return register_checkpoint(checkpoint, metrics, cfg, tracking, config, max_new_tokens)
