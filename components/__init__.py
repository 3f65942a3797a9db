"""Kubeflow components of the sayo pipeline: one thin wrapper per stage (architecture.md, "Orchestration").

Each component imports `sayo` inside its body (a lightweight component's body runs on its own in
the image) and calls one library entry point through `sayo.pipeline.steps`; no ML logic lives
here (style.md, "Thin components"). Resources and node placement are the pipeline's business.

The images are the ones built from `infra/docker/`: `IMAGE` (Dockerfile.cpu) for CPU steps and
`GPU_IMAGE` (Dockerfile.cuda) for GPU steps, overridable per run with the pipeline's `image` and
`gpu_image` parameters and at compile time with `SAYO_IMAGE` (`sayo pipeline compile --image`);
they already hold sayo and kfp, so components install nothing at start-up.
"""

import os

IMAGE = os.environ.get("SAYO_IMAGE", "ghcr.io/sayo-ml/sayo:0.1.0")
GPU_IMAGE = f"{IMAGE}-cuda"
