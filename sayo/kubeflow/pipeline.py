"""The sayo Kubeflow pipeline: the same stages as `dvc repro`, placed on a cluster.

Stages (docs/architecture.md, "The stages"):
    1. data      sources → validated `Dataset` (+ stats `Metrics`, dataset card `Markdown`); cached.
    2. sft       `Dataset` → warm-started `Model` on a GPU node; retried with backoff, resuming
                 from its durable checkpoints (`checkpoint_uri`) when it has any.
    3. grpo      `Dataset` + SFT `Model` → RL `Model`: one GPU pod, or, when `grpo_nodes > 1`, a
                 Kubeflow Trainer job of `grpo_nodes` × `gpus_per_node` GPUs (torchrun + DeepSpeed).
    4. evaluate  SFT and GRPO `Model`s → `Metrics` + HTML report on a GPU node.
    5. register  metrics + GRPO `Model` → MLflow model version `challenger`, `champion` if it
                 passes the gate metrics.

Placement lives here, not in the components: GPU stages get a node selector for the
GPU pool, a toleration for the `nvidia.com/gpu` taint, an accelerator type and limit, CPU/memory
requests and a memory-backed /dev/shm (NCCL and data loaders need more than Docker's 64 MB).
Every stage receives the MLflow and S3 credentials from Kubernetes secrets as environment
variables; no credential is a parameter or appears in the compiled YAML.
"""

from typing import Any

from kfp import dsl, kubernetes

from sayo.kubeflow.components import GPU_IMAGE, IMAGE
from sayo.kubeflow.components import data as data_op
from sayo.kubeflow.components import evaluate as evaluate_op
from sayo.kubeflow.components import grpo as grpo_op
from sayo.kubeflow.components import grpo_trainjob as grpo_trainjob_op
from sayo.kubeflow.components import register as register_op
from sayo.kubeflow.components import sft as sft_op
from sayo.kubeflow.secrets import SECRET_ENV

PIPELINE_NAME = "sayo"
GPU_NODE_SELECTOR = ("sayo.dev/node-pool", "gpu")  # label of the GPU node pool (infra/k8s/gpu-nodepool)
GPU_RESOURCES = {"cpu": "8", "memory": "64Gi", "shm": "16Gi", "accelerator": "nvidia.com/gpu"}
RETRY = {"num_retries": 2, "backoff_duration": "120s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}


def with_secrets(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MLflow and S3 credentials from the Kubernetes secrets, as environment variables."""
    for secret, env in SECRET_ENV.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=env)
    return task


def on_gpu(task: dsl.PipelineTask, gpus: int = 1) -> dsl.PipelineTask:
    """Place a task on the GPU node pool with `gpus` GPUs, CPU/memory requests and a large /dev/shm."""
    task.set_accelerator_type(GPU_RESOURCES["accelerator"]).set_accelerator_limit(gpus)
    task.set_cpu_request(GPU_RESOURCES["cpu"]).set_memory_request(GPU_RESOURCES["memory"])
    kubernetes.add_node_selector(task, label_key=GPU_NODE_SELECTOR[0], label_value=GPU_NODE_SELECTOR[1])
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=GPU_RESOURCES["shm"]
    )
    return task


def assess(
    grpo_model: Any, data_task: dsl.PipelineTask, sft_task: dsl.PipelineTask, knobs: dict[str, Any]
) -> None:
    """Stages 4-5 after either GRPO branch (one copy per branch: `dsl.OneOf` does not run in kfp.local)."""
    evaluate_task = evaluate_op(
        config=knobs["config"],
        overrides=knobs["overrides"],
        experiment=knobs["experiment"],
        dataset=data_task.outputs["dataset"],
        sft_model=sft_task.outputs["model"],
        grpo_model=grpo_model,
    )
    evaluate_task.set_display_name("evaluate").set_caching_options(False)
    on_gpu(with_secrets(evaluate_task.set_container_image(knobs["gpu_image"])))

    register_task = register_op(
        config=knobs["config"],
        overrides=knobs["overrides"],
        experiment=knobs["experiment"],
        gate_metrics=knobs["gate_metrics"],
        grpo_model=grpo_model,
        evaluation=evaluate_task.outputs["evaluation"],
    )
    register_task.set_display_name("register").set_caching_options(False)
    with_secrets(register_task.set_container_image(knobs["image"]))


def grpo_branches(
    grpo_nodes: Any,
    grpo_knobs: dict[str, Any],
    job_knobs: dict[str, Any],
    assess_knobs: dict[str, Any],
    durable_knobs: dict[str, Any],
    data_task: dsl.PipelineTask,
    sft_task: dsl.PipelineTask,
) -> None:
    """Stage 3 as a Trainer job when `grpo_nodes > 1`, else one GPU pod (either with durable
    checkpoints under `durable_knobs`); then stages 4-5."""
    image, gpu_image = assess_knobs["image"], assess_knobs["gpu_image"]
    with dsl.If(grpo_nodes > 1, name="multi-node-grpo"):
        job_task = grpo_trainjob_op(**grpo_knobs, **job_knobs, **durable_knobs, image=gpu_image)
        job_task.set_display_name("grpo (Trainer job)").set_caching_options(False).set_retry(**RETRY)
        with_secrets(job_task.set_container_image(image))
        assess(job_task.outputs["model"], data_task, sft_task, assess_knobs)
    with dsl.Else(name="single-pod-grpo"):
        grpo_task = grpo_op(**grpo_knobs, **durable_knobs)
        grpo_task.set_display_name("grpo").set_caching_options(False).set_retry(**RETRY)
        on_gpu(with_secrets(grpo_task.set_container_image(gpu_image)))
        assess(grpo_task.outputs["model"], data_task, sft_task, assess_knobs)


@dsl.pipeline(
    name=PIPELINE_NAME, description="SAYO: data → SFT → attention-reward GRPO → evaluate → register"
)
def sayo_pipeline(
    config: str = "tiny",
    overrides: list[str] = [],  # noqa: B006 - KFP parameter defaults are literals
    data_sources: list[dict] = [],  # noqa: B006
    sft_steps: int = 0,
    grpo_steps: int = 0,
    group_size: int = 0,
    reward_weights: dict[str, float] = {},  # noqa: B006
    attention_ratio: float = 0.0,
    gate_metrics: list[str] = [],  # noqa: B006
    mlflow_experiment: str = "sayo",
    image: str = IMAGE,
    gpu_image: str = GPU_IMAGE,
    grpo_nodes: int = 1,
    gpus_per_node: int = 8,
    grpo_job_kind: str = "trainjob",
    trainer_api: str = "v2.2",
    deepspeed_config: str = "zero3",
    staging_uri: str = "s3://sayo-artifacts/trainjobs",
    checkpoint_uri: str = "",
):
    """Parameters: 0 / 0.0 / [] / {} keep the recipe's own value.

    Args:
        config: the recipe every stage reads: a built-in name (tiny, qwen2_5_vl_7b, …) or a YAML
            file in the image.
        overrides: `key=value` recipe overrides for every stage (e.g. data.synthetic.num_samples=64).
        data_sources: a list of source mappings that replaces the recipe's `data.sources`.
        sft_steps, grpo_steps, group_size (G), reward_weights, attention_ratio (ρ): the main knobs.
        gate_metrics: metrics the GRPO model must improve to become `champion`.
        mlflow_experiment: MLflow experiment of every stage's run.
        image, gpu_image: the sayo images (infra/docker/) of the CPU and the GPU steps.
        grpo_nodes: > 1 runs GRPO as a Trainer job of `grpo_nodes` × `gpus_per_node` GPUs.
        grpo_job_kind: `trainjob` (Kubeflow Trainer v2) or `pytorchjob` (Training Operator v1).
        trainer_api: the TrainJob form, `v2.2` (Trainer 2.2 and later: runtimePatches) or `v2.1`
            (Trainer 2.1: podTemplateOverrides).
        deepspeed_config, staging_uri: the multi-node job's ZeRO JSON and S3 hand-over prefix.
        checkpoint_uri: s3://bucket/prefix for durable checkpoints of the sft and grpo steps
            (the Trainer job's every node too), under `<checkpoint_uri>/<pipeline job id>/<stage>/`: a retried or preempted step
            of the same run resumes from the newest complete one. Empty: scratch checkpoints only.
    """
    data_task = data_op(config=config, overrides=overrides, sources=data_sources)
    data_task.set_display_name("data").set_caching_options(True).set_container_image(image)
    with_secrets(data_task)

    # the job id is the same for every retry of a task in this run, so a retry finds its checkpoints
    durable_knobs = {"checkpoint_uri": checkpoint_uri, "pipeline_run": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    sft_task = sft_op(
        config=config,
        overrides=overrides,
        experiment=mlflow_experiment,
        max_steps=sft_steps,
        dataset=data_task.outputs["dataset"],
        **durable_knobs,
    )
    sft_task.set_display_name("sft").set_caching_options(False).set_retry(**RETRY)
    on_gpu(with_secrets(sft_task.set_container_image(gpu_image)))

    grpo_knobs = {
        "config": config,
        "overrides": overrides,
        "experiment": mlflow_experiment,
        "max_steps": grpo_steps,
        "group_size": group_size,
        "reward_weights": reward_weights,
        "attention_ratio": attention_ratio,
        "dataset": data_task.outputs["dataset"],
        "sft_model": sft_task.outputs["model"],
    }
    assess_knobs = {
        "config": config,
        "overrides": overrides,
        "experiment": mlflow_experiment,
        "gate_metrics": gate_metrics,
        "image": image,
        "gpu_image": gpu_image,
    }
    job_knobs = {
        "nodes": grpo_nodes,
        "gpus_per_node": gpus_per_node,
        "job_kind": grpo_job_kind,
        "trainer_api": trainer_api,
        "deepspeed_config": deepspeed_config,
        "staging_uri": staging_uri,
    }
    grpo_branches(grpo_nodes, grpo_knobs, job_knobs, assess_knobs, durable_knobs, data_task, sft_task)
