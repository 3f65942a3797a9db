"""`sayo pipeline compile | run-local | submit`: thin commands over `sayo.kubeflow`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

ArgumentsOption = Annotated[
    list[str] | None,
    typer.Option("--arg", "-a", help="pipeline argument name=value (YAML value), e.g. -a grpo_steps=200"),
]
RootOption = Annotated[Path, typer.Option(help="repository root holding pipelines/sayo_pipeline.yaml")]


def register(app: typer.Typer) -> None:
    """Add `sayo pipeline ...` to the `sayo` app."""
    pipeline_app = typer.Typer(
        help="The Kubeflow pipeline: compile, run locally, submit.", no_args_is_help=True
    )
    app.add_typer(pipeline_app, name="pipeline")

    @pipeline_app.command("compile")
    def compile_command(
        out: Annotated[
            Path | None, typer.Option(help="output YAML (default pipelines/sayo_pipeline.yaml)")
        ] = None,
        image: Annotated[str | None, typer.Option(help="component image (default: components.IMAGE)")] = None,
        check: Annotated[
            bool, typer.Option(help="only check that the checked-in YAML is up to date")
        ] = False,
        root: RootOption = Path("."),
    ) -> None:
        """Compile the pipeline to YAML (or, with --check, exit 1 if the checked-in YAML is stale)."""
        from sayo.kubeflow.compile import compile_pipeline, is_stale

        if image:
            os.environ["SAYO_IMAGE"] = image
        if check:
            if is_stale(root):
                typer.secho("pipelines/sayo_pipeline.yaml is stale: run `sayo pipeline compile`", err=True)
                raise typer.Exit(1)
            typer.echo("pipelines/sayo_pipeline.yaml is up to date")
            return
        typer.echo(f"compiled {compile_pipeline(out, root)}")

    @pipeline_app.command("run-local")
    def run_local_command(
        arguments: ArgumentsOption = None,
        pipeline_root: Annotated[Path, typer.Option(help="where task artifacts go")] = Path(
            "outputs/kfp-local"
        ),
    ) -> None:
        """Run the whole pipeline here with kfp.local (no Docker) on the tiny settings (+ --arg)."""
        from sayo.kubeflow.local import run_local
        from sayo.kubeflow.submit import parse_arguments

        run_local(parse_arguments(arguments or []), pipeline_root)
        typer.echo(f"pipeline finished; artifacts under {pipeline_root}")

    @pipeline_app.command("submit")
    def submit_command(
        host: Annotated[
            str, typer.Option(help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
        ],
        arguments: ArgumentsOption = None,
        experiment: Annotated[str, typer.Option(help="KFP experiment")] = "sayo",
        run_name: Annotated[str | None, typer.Option(help="run (or recurring run) name")] = None,
        recurring: Annotated[
            str | None, typer.Option(help="6-field cron (e.g. '0 0 3 * * 1'): create a recurring run instead")
        ] = None,
        wait: Annotated[
            bool, typer.Option(help="wait for the run to finish; exit 1 unless it succeeded")
        ] = False,
        timeout: Annotated[int, typer.Option(help="seconds to wait")] = 24 * 3600,
        namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user clusters)")] = None,
        service_account: Annotated[
            str | None, typer.Option(help="run as this service account (infra/k8s: sayo-pipeline)")
        ] = None,
    ) -> None:
        """Compile and submit the pipeline with kfp.Client (token from $KFP_TOKEN); print the run URL."""
        from sayo.kubeflow.submit import parse_arguments, submit

        done = submit(
            host,
            parse_arguments(arguments or []),
            experiment=experiment,
            run_name=run_name,
            recurring=recurring,
            wait=wait,
            timeout_s=timeout,
            namespace=namespace,
            service_account=service_account,
        )
        typer.echo(f"{done.kind} {done.id}: {done.url}" + (f" ({done.state})" if done.state else ""))
        if wait and done.state != "SUCCEEDED":
            raise typer.Exit(1)
