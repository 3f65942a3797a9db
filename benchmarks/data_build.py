"""Benchmark of the `data` stage: build N synthetic samples end to end and print samples/s.

Why: the issue's budget is 10k synthetic samples in under a minute on a 2-core CPU; this times the
whole `sayo.data.build.build` (generate, encode, validate, content-address, split, stats, card,
preview) into a temporary directory.

    python benchmarks/data_build.py [--num-samples 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.synthetic import SyntheticConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = DataConfig(
            sources=[SourceConfig(type="synthetic")],
            synthetic=SyntheticConfig(num_samples=args.num_samples),
            path=str(Path(tmp) / "dataset"),
        )
        start = time.perf_counter()
        result = build(config, progress=False)
        seconds = time.perf_counter() - start
    print(f"cpus: {os.cpu_count()}")
    print(
        f"built {result.num_samples} synthetic samples in {seconds:.1f} s: {result.num_samples / seconds:.0f} samples/s"
    )
    print(f"under one minute for 10k: {'yes' if seconds * 10_000 / result.num_samples < 60 else 'NO'}")


if __name__ == "__main__":
    main()
