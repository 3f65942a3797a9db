"""`sayo pipeline run-local`: the whole Kubeflow pipeline on this machine with `kfp.local`.

Why: the pipeline's wiring (artifact passing, parameters, the single-pod/multi-node branch) is
exercised without a cluster or Docker. `kfp.local.SubprocessRunner(use_venv=False)` runs each
lightweight component in this Python environment, so sayo must be installed here; placement
(node selectors, GPUs, secrets) is ignored locally and the stages read `MLFLOW_TRACKING_URI`
and the S3 variables from this environment. Paths in the arguments (a recipe file) are relative to
the working directory, as in the image; built-in recipe names work from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sayo.kubeflow.compile import load_pipeline
from sayo.kubeflow.submit import check_arguments

# The tiny CPU settings: a few minutes end to end (the `slow` test and `make` users run these).
TINY_ARGUMENTS: dict[str, Any] = {
    "config": "tiny",
    "overrides": [
        "data.synthetic.num_samples=48",
        "sft.eval_every=0",
        "sft.batch_size=4",
        "sft.log_every=5",
        "grpo.probe_every=0",
        "grpo.prompts_per_step=2",
        "checkpoint.every=0",
        "evaluate.bootstrap_samples=100",
        "evaluate.gallery_samples=1",
    ],
    "sft_steps": 6,
    "grpo_steps": 2,
    "mlflow_experiment": "sayo-local",
}


def run_local(
    arguments: dict[str, Any] | None = None,
    pipeline_root: str | Path = "outputs/kfp-local",
) -> dict[str, Any]:
    """Run the pipeline with `kfp.local`; returns the pipeline task's outputs (artifact objects).

    Args:
        arguments: pipeline parameters; None uses `TINY_ARGUMENTS`, a dict is merged over them.
        pipeline_root: where kfp.local writes every task's artifacts.
    """
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(pipeline_root).resolve())
    )
    check_arguments(arguments or {})
    pipeline = load_pipeline()
    task = pipeline(**{**TINY_ARGUMENTS, **(arguments or {})})
    outputs: dict[str, Any] = dict(task.outputs) if task.outputs else {}
    return outputs
