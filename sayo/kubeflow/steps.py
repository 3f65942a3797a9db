"""What each Kubeflow component does, as plain functions on directories (docs/architecture.md, "Entry points").

Why here and not in the components: a lightweight component's body is shipped as source text and
runs on its own, so anything shared between components (turning pipeline parameters into recipe
overrides, pointing a stage at its input artifacts, copying the result into the output artifact)
would otherwise be copied into every component. Keeping it in the library makes it typed, tested
and identical for `kfp.local` and the cluster; the components only move artifact paths in and out.

Every step loads the same recipe (the pipeline's `config` parameter, a built-in name or a file in
the image) with the same overrides as the CLI and `dvc repro` would. Pipeline parameters use
neutral values for "keep the recipe's value" (0, 0.0, empty dict/list), so one compiled pipeline
serves the tiny recipe and the 7B recipe alike.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayo.config import to_dict
from sayo.data import layout
from sayo.data.build import build
from sayo.evaluate.run import evaluate
from sayo.recipe import load_recipe
from sayo.registry import register_evaluated
from sayo.train.grpo import train_grpo
from sayo.train.sft import train_sft


@dataclass
class StepResult:
    """A training step's outcome as the component reports it."""

    model_dir: Path
    run_id: str | None
    metrics: dict[str, float]


def yaml_literal(value: Any) -> str:
    """A YAML-parsable literal of a value (JSON is YAML), for `key=value` overrides."""
    return json.dumps(value, separators=(",", ":"))


def train_overrides(
    overrides: list[str],
    *,
    experiment: str = "",
    group_size: int = 0,
    max_steps: int = 0,
    stage: str = "grpo",
    reward_weights: dict[str, float] | None = None,
    attention_ratio: float = 0.0,
) -> list[str]:
    """The user's overrides plus the pipeline's typed knobs that are set (non-zero / non-empty).

    `max_steps` applies to `stage` (`sft` or `grpo`); `group_size`, `reward_weights` and
    `attention_ratio` are GRPO's. Later overrides win, so the typed knobs beat `overrides`.
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
    if attention_ratio:
        extra.append(f"rewards.attention.ratio={attention_ratio}")
    return [*overrides, *extra]


def data_overrides(overrides: list[str], sources: list[dict[str, Any]], output: str) -> list[str]:
    """Recipe overrides of the `data` step: the user's, `sources` when given, and the output directory."""
    extra = [f"data.sources={yaml_literal(sources)}"] if sources else []
    return [*overrides, *extra, f"data.path={output}"]


def copy_dir(source: Path, target: str | Path) -> Path:
    """Copy a checkpoint directory into an output artifact's path (replacing what is there)."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def copy_file(source: Path, target: str | Path) -> None:
    """Copy one file into an output artifact's path."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def run_data(config: str, overrides: list[str], sources: list[dict[str, Any]], output: str) -> dict[str, Any]:
    """Build the recipe's dataset into `output` (the `Dataset` artifact's path); returns its stats.json."""
    recipe = load_recipe(config, data_overrides(overrides, sources, output))
    result = build(recipe.data, progress=False)
    stats: dict[str, Any] = json.loads((result.output / layout.STATS).read_text())
    return stats


def checkpoint_mirror(checkpoint_uri: str, pipeline_run: str) -> str:
    """The durable checkpoint prefix of one pipeline run: `<checkpoint_uri>/<pipeline_run>`, or ""
    when `checkpoint_uri` is empty (checkpoints stay in the pod's scratch directory)."""
    if not checkpoint_uri:
        return ""
    if not pipeline_run or "/" in pipeline_run or pipeline_run.startswith("{{"):
        raise ValueError(
            f"pipeline run id = {pipeline_run!r} is invalid: the pipeline's job id, one path segment"
        )
    return f"{checkpoint_uri.rstrip('/')}/{pipeline_run}"


def _train(
    stage: str, config: str, overrides: list[str], dataset: str, model_out: str, mirror: str
) -> StepResult:
    """Train in a scratch directory; with a `mirror`, checkpoints are uploaded there and a retried
    step (the same pipeline run, so the same prefix) resumes from the newest complete one."""
    durable = [f"checkpoint.mirror={mirror}", "checkpoint.resume=true"] if mirror else []
    with tempfile.TemporaryDirectory(prefix=f"sayo-{stage}-") as scratch:
        recipe = load_recipe(
            config, [*overrides, f"data.path={dataset}", f"checkpoint.dir={scratch}", *durable]
        )
        result = train_sft(recipe) if stage == "sft" else train_grpo(recipe)
        target = copy_dir(result.final_dir, model_out)
    return StepResult(target, result.run_id, dict(result.metrics))


def run_sft(config: str, overrides: list[str], dataset: str, model_out: str, mirror: str = "") -> StepResult:
    """The `sft` stage on the `Dataset` artifact; its final checkpoint lands in `model_out`.

    `mirror` (`checkpoint_mirror`): durable checkpoints, resumed from when a checkpoint is there.
    """
    return _train("sft", config, overrides, dataset, model_out, mirror)


def run_grpo(
    config: str, overrides: list[str], dataset: str, start: str, model_out: str, mirror: str = ""
) -> StepResult:
    """The `grpo` stage from the checkpoint at `start` (the SFT `Model` artifact) into `model_out`.

    `mirror` (`checkpoint_mirror`): durable checkpoints, resumed from when a checkpoint is there.
    """
    return _train("grpo", config, [*overrides, f"grpo.init_from={start}"], dataset, model_out, mirror)


def run_evaluate(
    config: str, overrides: list[str], dataset: str, checkpoints: dict[str, str], out_dir: str
) -> dict[str, Any]:
    """Evaluate `checkpoints` (name → directory, after the recipe's base model) into `out_dir`.

    A `dataset` benchmark that points at the recipe's `data.path` is redirected to the pipeline's
    `Dataset` artifact, so the test split evaluated is the one the run trained next to. Returns the
    nested metrics (`{checkpoint: {benchmark: {metric: value}}}`) of `metrics.json`.
    """
    recipe = load_recipe(config, [*overrides, f"evaluate.out_dir={out_dir}"])
    for bench in recipe.evaluate.benchmarks:
        if bench.type == "dataset" and Path(bench.path) == Path(recipe.data.path):
            bench.path = dataset
    recipe.data.path = dataset
    specs = [f"base={recipe.model.name_or_path}", *(f"{name}={path}" for name, path in checkpoints.items())]
    metrics: dict[str, Any] = evaluate(recipe, specs, progress=False).metrics
    return metrics


def run_register(
    config: str, overrides: list[str], checkpoint: str, metrics_file: str, gate_metrics: list[str]
) -> dict[str, Any]:
    """Register `checkpoint` with its metrics of `metrics_file` (entry `register.checkpoint_name`,
    default `grpo`); returns the decision (`Registration.as_dict`)."""
    extra = [f"register.gate_metrics={yaml_literal(list(gate_metrics))}"] if gate_metrics else []
    recipe = load_recipe(config, [*overrides, *extra])
    result = register_evaluated(
        checkpoint,
        metrics_file,
        recipe.register,
        recipe.tracking,
        checkpoint_name=recipe.register.checkpoint_name or "grpo",
        config=to_dict(recipe),
        max_new_tokens=recipe.evaluate.max_new_tokens,
    )
    decision: dict[str, Any] = json.loads(json.dumps(result.as_dict()))
    return decision
