"""What each Kubeflow component does, as plain functions on directories (architecture.md, "Orchestration").

Why here and not in `components/`: a lightweight component's body is shipped as source text and
runs on its own, so anything shared between components (turning pipeline parameters into config
overrides, pointing a stage at its input artifacts, copying the result into the output artifact)
would otherwise be copied into every component. Keeping it in the library makes it typed, tested
and identical for `kfp.local` and the cluster; the components only move artifact paths in and out.

Pipeline parameters use neutral values for "keep the config's value" (0, 0.0, empty dict/list),
so one compiled pipeline serves the tiny recipe and the 7B recipe alike.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StepResult:
    """A training step's outcome as the component reports it."""

    model_dir: Path
    run_id: str | None
    metrics: dict[str, float]


def yaml_literal(value: Any) -> str:
    """A YAML-parsable literal of a value (JSON is YAML), for `key=value` overrides."""
    return json.dumps(value, separators=(",", ":"))


def data_overrides(overrides: list[str], sources: list[dict[str, Any]], output: str) -> list[str]:
    """Overrides of the data config: the user's, `sources` when given, and the output directory."""
    extra = [f"sources={yaml_literal(sources)}"] if sources else []
    return [*overrides, *extra, f"output={output}"]


def train_overrides(
    overrides: list[str],
    *,
    experiment: str = "",
    group_size: int = 0,
    max_steps: int = 0,
    stage: str = "grpo",
    reward_weights: dict[str, float] | None = None,
    entropy_ratio: float = 0.0,
) -> list[str]:
    """The user's overrides plus the pipeline's typed knobs that are set (non-zero / non-empty).

    `max_steps` applies to `stage` (`sft` or `grpo`); `group_size`, `reward_weights` and
    `entropy_ratio` are GRPO's. Later overrides win, so the typed knobs beat `overrides`.
    """
    extra: list[str] = []
    if experiment:
        extra.append(f"tracking.experiment={experiment}")
    if max_steps:
        extra.append(f"{stage}.max_steps={max_steps}")
    if group_size:
        extra.append(f"grpo.group_size={group_size}")
    if reward_weights:
        extra.append(f"rewards.weights={yaml_literal(reward_weights)}")
    if entropy_ratio:
        extra.append(f"rewards.entropy_ratio={entropy_ratio}")
    return [*overrides, *extra]


def copy_dir(source: Path, target: str | Path) -> Path:
    """Copy a checkpoint directory into an output artifact's path (replacing what is there)."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def run_data(config: str, overrides: list[str], sources: list[dict[str, Any]], output: str) -> dict[str, Any]:
    """Build the dataset into `output` (the `Dataset` artifact's path); returns its stats.json."""
    from sayo.data import layout
    from sayo.data.build import build
    from sayo.data.config import load_config

    result = build(load_config(config, data_overrides(overrides, sources, output)), progress=False)
    stats: dict[str, Any] = json.loads((result.output / layout.STATS).read_text())
    return stats


def _train(stage: str, config: str, overrides: list[str], dataset: str, model_out: str) -> StepResult:
    from sayo.train.config import load_train_config

    with tempfile.TemporaryDirectory(prefix=f"sayo-{stage}-") as scratch:
        cfg = load_train_config(config, [*overrides, f"data.path={dataset}", f"checkpoint.dir={scratch}"])
        if stage == "sft":
            from sayo.train.sft import train_sft

            result = train_sft(cfg)
        else:
            from sayo.train.grpo import train_grpo

            result = train_grpo(cfg)
        target = copy_dir(result.final_dir, model_out)
    return StepResult(target, result.run_id, dict(result.metrics))


def run_sft(config: str, overrides: list[str], dataset: str, model_out: str) -> StepResult:
    """The `sft` stage on the `Dataset` artifact; its final checkpoint lands in `model_out`."""
    return _train("sft", config, overrides, dataset, model_out)


def run_grpo(config: str, overrides: list[str], dataset: str, start: str, model_out: str) -> StepResult:
    """The `grpo` stage from the checkpoint at `start` (the SFT `Model` artifact) into `model_out`."""
    return _train("grpo", config, [*overrides, f"grpo.init_from={start}"], dataset, model_out)


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (what a KFP `Metrics` artifact can show)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value == value and abs(value) != float("inf"):
            out[key] = float(value)
    return out
