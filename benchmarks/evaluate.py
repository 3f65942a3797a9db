"""Benchmark of the `evaluate` stage: answer N synthetic samples with the tiny policy, print samples/s.

Why: issue 6 budgets "1k synthetic samples with the tiny model in minutes" on a 2-core CPU; this
times the whole `sayo.evaluate.run.evaluate` (greedy generation, the scoring forward with the
attention capture, metrics with bootstrap intervals, report and figures) into a temporary
directory, with MLflow off.

    python benchmarks/evaluate.py [--num-samples 1000] [--batch-size 16] [--max-new-tokens 24]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.synthetic import SyntheticConfig
from sayo.evaluate.run import evaluate
from sayo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument(
        "--checkpoint", default="tiny", help="name=path or path (default: the untrained tiny policy)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dataset"
        build(DataConfig(sources=[SourceConfig(type="synthetic")], synthetic=SyntheticConfig(num_samples=args.num_samples),
                         path=str(data)), progress=False)  # fmt: skip
        cfg = load_recipe("tiny", [
            f"evaluate.benchmarks=[{{name: synthetic, path: {data}, split: null}}]", f"evaluate.out_dir={tmp}/eval",
            f"evaluate.batch_size={args.batch_size}", f"evaluate.max_new_tokens={args.max_new_tokens}",
            "tracking.enabled=false", "device=cpu",
        ])  # fmt: skip
        start = time.perf_counter()
        result = evaluate(cfg, [args.checkpoint], progress=True)
        seconds = time.perf_counter() - start
    name = next(iter(result.metrics))
    print(f"cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print(f"evaluated {args.num_samples} samples in {seconds:.1f} s (load, answer, capture, report): "
          f"{args.num_samples / seconds:.1f} samples/s; answering only: {result.answers_per_s:.1f} samples/s")  # fmt: skip
    print(f"accuracy {result.metrics[name]['synthetic']['accuracy']:.3f}, "
          f"attention-on-region {result.metrics[name]['synthetic']['region_attention']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
