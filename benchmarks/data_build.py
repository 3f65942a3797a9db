"""Benchmark of the `data` stage: samples/s and peak memory of `sayo.data.build.build`.

Two workloads:

- `--source synthetic` (default): N synthetic samples end to end (the issue's budget: 10k in under
  a minute on a 2-core CPU).
- `--source hf`: a GQA-sized Hugging Face parquet generated here (never kept in the repo): N
  questions over N/10 distinct images (as GQA has about ten questions per image), the images
  (96x72 PNGs) stored as files next to the parquet and referred to by relative path, ten questions of an image in a row,
  one xywh box per question. Each size runs in a fresh process, so its peak RSS (the build's
  process and, separately, the largest checking worker) is its own; memory should not grow with N
  beyond the manifest itself (the samples the build keeps to split and write them).

    python benchmarks/data_build.py [--num-samples 10000]
    python benchmarks/data_build.py --source hf --sizes 20000 200000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS_PER_IMAGE = 10


def write_gqa_sized(directory: Path, num_questions: int) -> Path:
    """A parquet of `num_questions` rows over num_questions / 10 PNG files; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    images = directory / "images"
    images.mkdir(parents=True)
    num_images = max(1, num_questions // QUESTIONS_PER_IMAGE)
    for k in range(num_images):
        buffer = io.BytesIO()
        colour = (k % 256, k // 256 % 256, k // 65536 % 256)  # lossless PNG: distinct bytes per image
        Image.new("RGB", (96, 72), colour).save(buffer, format="PNG")
        (images / f"{k:07d}.png").write_bytes(buffer.getvalue())
    path = directory / "questions.parquet"
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("bbox", pa.list_(pa.float64())),
        ]
    )
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, num_questions, 10_000):
            rows = [
                {
                    "id": f"q{n:08d}",
                    "image": f"images/{n // QUESTIONS_PER_IMAGE % num_images:07d}.png",
                    "question": f"What is the object number {n % QUESTIONS_PER_IMAGE}?",
                    "answer": f"object{n % QUESTIONS_PER_IMAGE}",
                    "bbox": [float(n % 40), float(n % 30), 20.0, 16.0],
                }
                for n in range(start, min(start + 10_000, num_questions))
            ]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return path


def run_one(source: str, num_samples: int) -> dict[str, float]:
    """Build `num_samples` of `source` in this process; time, rate and peak RSS."""
    from sayo.data.build import build
    from sayo.data.config import DataConfig, SourceConfig
    from sayo.data.synthetic import SyntheticConfig

    with tempfile.TemporaryDirectory() as tmp:
        if source == "hf":
            parquet = write_gqa_sized(Path(tmp) / "gqa", num_samples)
            sources = [SourceConfig(type="hf", path=str(parquet), bbox_format="xywh", name="gqa")]
        else:
            sources = [SourceConfig(type="synthetic")]
        config = DataConfig(
            sources=sources,
            synthetic=SyntheticConfig(num_samples=num_samples),
            path=str(Path(tmp) / "dataset"),
        )
        start = time.perf_counter()
        result = build(config, progress=False)
        seconds = time.perf_counter() - start
        num_images = len(list((Path(tmp) / "dataset" / "images").iterdir()))
    return {
        "samples": result.num_samples,
        "images": num_images,
        "seconds": seconds,
        "samples_per_s": result.num_samples / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["synthetic", "hf"], default="synthetic")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="*", help="several sizes, each in a fresh process")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run: print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.source, args.num_samples)))
        return
    print(f"cpus: {os.cpu_count()}  source: {args.source}")
    print(
        f"{'N':>8} {'images':>7} {'seconds':>8} {'samples/s':>10} {'peak RSS MB':>12} {'worker RSS MB':>14}"
    )
    for n in args.sizes or [args.num_samples]:
        command = [sys.executable, __file__, "--one", "--source", args.source, "--num-samples", str(n)]
        out = json.loads(
            subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        print(
            f"{out['samples']:>8.0f} {out['images']:>7.0f} {out['seconds']:>8.1f} {out['samples_per_s']:>10.0f} "
            f"{out['peak_rss_mb']:>12.0f} {out['peak_worker_rss_mb']:>14.0f}"
        )
        if args.source == "synthetic":
            print(
                f"under one minute for 10k: {'yes' if out['seconds'] * 10_000 / out['samples'] < 60 else 'NO'}"
            )


if __name__ == "__main__":
    main()
