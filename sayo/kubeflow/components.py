"""Kubeflow components of the sayo pipeline: one thin wrapper per stage.

Each component imports `sayo` inside its body (a lightweight component's body is shipped as
source text and runs on its own in the image) and calls one library entry point through
`sayo.kubeflow.steps`; no ML logic lives here. Resources and node placement are the pipeline's
business (`sayo.kubeflow.pipeline`).

The images are the ones built from `infra/docker/`: `IMAGE` (Dockerfile.cpu) for CPU steps and
`GPU_IMAGE` (Dockerfile.cuda) for GPU steps, overridable per run with the pipeline's `image` and
`gpu_image` parameters and at compile time with `SAYO_IMAGE` (`sayo pipeline compile --image`);
they already hold sayo and kfp, so components install nothing at start-up. By default they are
this version's release images, the tags `.github/workflows/images.yml` pushes for the release
tag v<version> (`<registry>/sayo:<version>-cpu`, `-cuda`); CI's retraining passes its commit's
`<sha>-cpu`/`<sha>-cuda` images instead.
"""

import os

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from sayo import __version__

REGISTRY = "ghcr.io/sayo-ml"  # images.yml's default registry, ghcr.io/<repository owner>


def gpu_image_for(image: str) -> str:
    """The CUDA image beside a CPU image: `...:<tag>-cpu` -> `...:<tag>-cuda` (images.yml's pair),
    any other `...:<tag>` -> `...:<tag>-cuda`."""
    return f"{image.removesuffix('-cpu')}-cuda"


IMAGE = os.environ.get("SAYO_IMAGE", f"{REGISTRY}/sayo:{__version__}-cpu")
GPU_IMAGE = gpu_image_for(IMAGE)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data(
    config: str,
    overrides: list[str],
    sources: list[dict],
    dataset: Output[Dataset],
    stats: Output[Metrics],
    card: Output[Markdown],
):
    """Build the recipe's dataset (+ overrides, + `sources` when non-empty) into `dataset`."""
    from pathlib import Path

    from sayo.config import finite_numbers
    from sayo.kubeflow.steps import run_data

    result = run_data(config, list(overrides), list(sources), dataset.path)
    for key, value in finite_numbers(result).items():
        stats.log_metric(key, value)
    dataset.metadata["num_samples"] = int(result.get("num_samples", 0))
    Path(card.path).write_text((Path(dataset.path) / "dataset_card.md").read_text())


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def sft(
    config: str,
    overrides: list[str],
    experiment: str,
    max_steps: int,
    checkpoint_uri: str,
    pipeline_run: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Supervised warm-up (`sayo sft`); `max_steps` 0 keeps the config's value; with `checkpoint_uri`,
    checkpoints go to `<checkpoint_uri>/<pipeline_run>/sft/` and a retry resumes from them."""
    from sayo.config import finite_numbers
    from sayo.kubeflow.steps import checkpoint_mirror, run_sft, train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment, max_steps=max_steps, stage="sft")
    mirror = checkpoint_mirror(checkpoint_uri, pipeline_run)
    result = run_sft(config, knobs, dataset.path, model.path, mirror)
    for key, value in finite_numbers(result.metrics).items():
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
    attention_ratio: float,
    checkpoint_uri: str,
    pipeline_run: str,
    dataset: Input[Dataset],
    sft_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """GRPO with the region-attention reward (`sayo grpo`) from the SFT checkpoint; 0/{} keep the config;
    with `checkpoint_uri`, checkpoints go to `<checkpoint_uri>/<pipeline_run>/grpo/` and a retry resumes."""
    from sayo.config import finite_numbers
    from sayo.kubeflow.steps import checkpoint_mirror, run_grpo, train_overrides

    knobs = train_overrides(
        list(overrides),
        experiment=experiment,
        max_steps=max_steps,
        stage="grpo",
        group_size=group_size,
        reward_weights=dict(reward_weights),
        attention_ratio=attention_ratio,
    )
    mirror = checkpoint_mirror(checkpoint_uri, pipeline_run)
    result = run_grpo(config, knobs, dataset.path, sft_model.path, model.path, mirror)
    for key, value in finite_numbers(result.metrics).items():
        metrics.log_metric(key, value)
    model.metadata.update({"stage": "grpo", "mlflow_run_id": result.run_id or "", "config": config})


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def grpo_trainjob(
    config: str,
    overrides: list[str],
    experiment: str,
    max_steps: int,
    group_size: int,
    reward_weights: dict[str, float],
    attention_ratio: float,
    image: str,
    nodes: int,
    gpus_per_node: int,
    job_kind: str,
    trainer_api: str,
    deepspeed_config: str,
    staging_uri: str,
    checkpoint_uri: str,
    pipeline_run: str,
    dataset: Input[Dataset],
    sft_model: Input[Model],
    model: Output[Model],
):
    """Create a TrainJob/PyTorchJob of `nodes` × `gpus_per_node` GPUs running `sayo grpo`, await it.

    `trainer_api`: the TrainJob form, `v2.2` (Kubeflow Trainer 2.2 and later) or `v2.1`; with
    `checkpoint_uri`, every node's checkpoints go to `<checkpoint_uri>/<pipeline_run>/grpo/` and a
    retry resumes from them.
    """
    import os

    from sayo.kubeflow.steps import checkpoint_mirror, train_overrides
    from sayo.kubeflow.trainjob import JobRequest, current_namespace, run_grpo_job

    knobs = train_overrides(
        list(overrides),
        experiment=experiment,
        max_steps=max_steps,
        stage="grpo",
        group_size=group_size,
        reward_weights=dict(reward_weights),
        attention_ratio=attention_ratio,
    )
    if deepspeed_config:
        knobs.append(f"deepspeed.config={deepspeed_config}")
    run_name = os.environ.get("KFP_POD_NAME", "sayo-grpo")[:50].rstrip("-")
    request = JobRequest(
        name=f"{run_name}-job",
        namespace=current_namespace(),
        image=image,
        config=config,
        overrides=knobs,
        staging_uri=f"{staging_uri.rstrip('/')}/{run_name}",
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        kind=job_kind,
        trainer_api=trainer_api,
        checkpoint_mirror=checkpoint_mirror(checkpoint_uri, pipeline_run),
    )
    run_grpo_job(request, dataset.path, sft_model.path, model.path)
    model.metadata.update({"stage": "grpo", "nodes": nodes, "job": request.name, "config": config})


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

    from sayo.config import finite_numbers, flatten
    from sayo.kubeflow.steps import copy_file, run_evaluate, train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment)
    checkpoints = {"sft": sft_model.path, "grpo": grpo_model.path}
    result = run_evaluate(config, knobs, dataset.path, checkpoints, evaluation.path)
    for key, value in finite_numbers(flatten(result, sep="/")).items():
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

    from sayo.kubeflow.steps import run_register, train_overrides

    knobs = train_overrides(list(overrides), experiment=experiment)
    metrics_file = str(Path(evaluation.path) / "metrics.json")
    result = run_register(config, knobs, grpo_model.path, metrics_file, list(gate_metrics))
    decision.log_metric("promoted", 1.0 if result["promote"] else 0.0)
    decision.log_metric("version", float(result["version"]))
    decision.metadata.update({k: str(v) for k, v in result.items()})
