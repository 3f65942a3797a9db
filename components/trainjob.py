"""The multi-node `grpo` component: runs GRPO as a Kubeflow Trainer job and waits for it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def grpo_trainjob(
    config: str,
    overrides: list[str],
    experiment: str,
    max_steps: int,
    group_size: int,
    reward_weights: dict[str, float],
    entropy_ratio: float,
    image: str,
    nodes: int,
    gpus_per_node: int,
    job_kind: str,
    deepspeed_config: str,
    staging_uri: str,
    dataset: Input[Dataset],
    sft_model: Input[Model],
    model: Output[Model],
):
    """Create a TrainJob/PyTorchJob of `nodes` × `gpus_per_node` GPUs running `sayo grpo`, await it."""
    import os

    from sayo.pipeline.steps import train_overrides
    from sayo.pipeline.trainjob import JobRequest, current_namespace, run_grpo_job

    knobs = train_overrides(
        list(overrides),
        experiment=experiment,
        max_steps=max_steps,
        stage="grpo",
        group_size=group_size,
        reward_weights=dict(reward_weights),
        entropy_ratio=entropy_ratio,
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
    )
    run_grpo_job(request, dataset.path, sft_model.path, model.path)
    model.metadata.update({"stage": "grpo", "nodes": nodes, "job": request.name, "config": config})
