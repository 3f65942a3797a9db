"""The `sft` and `grpo` components: a `Dataset` (and the SFT `Model`) → a `Model` (`sayo.train`)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def sft(
    config: str,
    overrides: list[str],
    experiment: str,
    max_steps: int,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Supervised warm-up (`sayo sft`); `max_steps` 0 keeps the config's value."""
    from sayo.pipeline.steps import numeric_metrics, run_sft, train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment, max_steps=max_steps, stage="sft")
    result = run_sft(config, knobs, dataset.path, model.path)
    for key, value in numeric_metrics(result.metrics).items():
        metrics.log_metric(key, value)
    model.metadata.update({"stage": "sft", "mlflow_run_id": result.run_id or "", "config": config})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def grpo(
    config: str,
    overrides: list[str],
    experiment: str,
    max_steps: int,
    group_size: int,
    reward_weights: dict[str, float],
    entropy_ratio: float,
    dataset: Input[Dataset],
    sft_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """GRPO with the region-attention reward (`sayo grpo`) from the SFT checkpoint; 0/{} keep the config."""
    from sayo.pipeline.steps import numeric_metrics, run_grpo, train_overrides

    knobs = train_overrides(
        list(overrides),
        experiment=experiment,
        max_steps=max_steps,
        stage="grpo",
        group_size=group_size,
        reward_weights=dict(reward_weights),
        entropy_ratio=entropy_ratio,
    )
    result = run_grpo(config, knobs, dataset.path, sft_model.path, model.path)
    for key, value in numeric_metrics(result.metrics).items():
        metrics.log_metric(key, value)
    model.metadata.update({"stage": "grpo", "mlflow_run_id": result.run_id or "", "config": config})
