"""`sayo pipeline submit`: compile the pipeline and start it (once, or on a cron) on a KFP cluster.

Why compile at submit time: what runs is exactly the checked-out sources (the CI workflow
submits after the staleness test passed, so it equals the checked-in YAML). The KFP API token
comes from the environment only (`KFP_TOKEN`, e.g. a service-account token the workflow reads
from its secrets), never from an argument, so it cannot end up in shell history or CI logs.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayo.config import parse_yaml
from sayo.kubeflow.compile import compile_pipeline, load_pipeline

TOKEN_ENV = "KFP_TOKEN"
# pipeline parameters an earlier version had -> what replaced them
RENAMED_ARGUMENTS = {
    "data_config": "config (one recipe configures every stage)",
    "data_overrides": "overrides (recipe keys, e.g. data.synthetic.num_samples=64)",
    "train_overrides": "overrides (recipe keys, e.g. grpo.group_size=8)",
    "entropy_ratio": "attention_ratio (rewards.attention.ratio)",
}


@dataclass
class Submission:
    """What was started: a run (with its UI address) or a recurring run."""

    kind: str  # run | recurring
    id: str
    url: str
    state: str | None = None  # the final state when waited for


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """Pipeline arguments from `name=value` strings; values are parsed as YAML (`grpo_steps=200`)."""
    arguments: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"argument {item!r} is invalid: must be name=value (e.g. grpo_steps=200)")
        arguments[name] = parse_yaml(text) if text else ""
    return arguments


def check_arguments(arguments: dict[str, Any]) -> None:
    """Refuse argument names the pipeline does not have, naming the replacement of renamed ones."""
    spec = getattr(load_pipeline(), "component_spec")  # noqa: B009 - a kfp GraphComponent
    known = set(spec.inputs or {})
    problems = []
    for name in sorted(set(arguments) - known):
        moved = RENAMED_ARGUMENTS.get(name)
        problems.append(f"{name} was replaced by {moved}" if moved else f"{name} is not a pipeline parameter")
    if problems:
        raise ValueError("; ".join(problems) + f" (parameters: {sorted(known)})")


def make_client(host: str, namespace: str | None = None) -> Any:
    """A `kfp.Client` for `host`, authenticated with `$KFP_TOKEN` when set."""
    import kfp

    return kfp.Client(
        host=host, existing_token=os.environ.get(TOKEN_ENV) or None, namespace=namespace or "kubeflow"
    )


def run_url(host: str, run_id: str) -> str:
    """The KFP UI page of a run."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def submit(
    host: str,
    arguments: dict[str, Any] | None = None,
    *,
    experiment: str = "sayo",
    run_name: str | None = None,
    recurring: str | None = None,
    wait: bool = False,
    timeout_s: int = 24 * 3600,
    namespace: str | None = None,
    service_account: str | None = None,
) -> Submission:
    """Compile and submit the pipeline; `recurring` (a 6-field KFP cron) makes it a recurring run."""
    check_arguments(arguments or {})
    client = make_client(host, namespace)
    name = run_name or "sayo"
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(Path(tmp) / "sayo_pipeline.yaml"))
        if recurring:
            exp = client.create_experiment(experiment, namespace=namespace)
            job = client.create_recurring_run(
                experiment_id=exp.experiment_id,
                job_name=name,
                cron_expression=recurring,
                params=arguments or {},
                pipeline_package_path=package,
                service_account=service_account,
            )
            job_id = job.recurring_run_id
            return Submission("recurring", job_id, f"{host.rstrip('/')}/#/recurringrun/details/{job_id}")
        result = client.create_run_from_pipeline_package(
            package,
            arguments=arguments or {},
            run_name=name,
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    submission = Submission("run", result.run_id, run_url(host, result.run_id))
    if wait:
        submission.state = str(client.wait_for_run_completion(result.run_id, timeout=timeout_s).state)
    return submission
