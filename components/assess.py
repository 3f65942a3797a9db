"""The `evaluate` and `register` components: `Model`s → `Metrics` + HTML report → MLflow model version."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components import GPU_IMAGE, IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate(
    config: str,
    overrides: list[str],
    experiment: str,
    dataset: Input[Dataset],
    sft_model: Input[Model],
    grpo_model: Input[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
):
    """Compare base, SFT and GRPO on the benchmarks (`sayo evaluate`); metrics, HTML report, raw files."""
    from pathlib import Path

    from sayo.pipeline.assess import copy_file, flat_checkpoint_metrics, run_evaluate
    from sayo.pipeline.steps import train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment)
    checkpoints = {"sft": sft_model.path, "grpo": grpo_model.path}
    result = run_evaluate(config, knobs, dataset.path, checkpoints, evaluation.path)
    for key, value in flat_checkpoint_metrics(result).items():
        metrics.log_metric(key, value)
    copy_file(Path(evaluation.path) / "report.html", report.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    config: str,
    overrides: list[str],
    experiment: str,
    gate_metrics: list[str],
    grpo_model: Input[Model],
    evaluation: Input[Artifact],
    decision: Output[Metrics],
):
    """Register the GRPO model as `challenger`; `champion` if it passes `gate_metrics` (`sayo register`)."""
    from pathlib import Path

    from sayo.pipeline.assess import run_register
    from sayo.pipeline.steps import train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment)
    metrics_file = str(Path(evaluation.path) / "metrics.json")
    result = run_register(config, knobs, grpo_model.path, metrics_file, list(gate_metrics))
    decision.log_metric("promoted", 1.0 if result["promoted"] else 0.0)
    decision.log_metric("version", float(result["version"]))
    decision.metadata.update({k: str(v) for k, v in result.items()})
