"""The GPU benchmark script runs end to end (CPU smoke shape) and its 3B shape is Qwen2.5-VL-3B's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_3b_shape_has_qwen2_5_vl_3b_parameter_count():
    from grpo_gpu import SHAPES
    from transformers import Qwen2_5_VLForConditionalGeneration

    from sayo.models.tiny import TinySpec, tiny_config
    from sayo.models.tokenizer import build_tokenizer

    spec = TinySpec(**SHAPES["3b"]["spec"])
    config = tiny_config(spec, build_tokenizer(spec.vocab_size))
    config.text_config.vocab_size = SHAPES["3b"]["vocab"]
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(3.755e9, rel=1e-3)


@pytest.mark.slow
def test_grpo_gpu_benchmark_smoke_runs_on_cpu(tmp_path):
    pytest.importorskip("deepspeed")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    cmd = [
        sys.executable, str(ROOT / "benchmarks/grpo_gpu.py"), "--shape", "tiny", "--steps", "1",
        "--max-new-tokens", "6", "--image-size", "112", "--group-size", "2",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "tiny shape" in out and "ZeRO-2" in out
    for line in ("step time", "rollouts/s", "update MFU", "peak GPU memory"):
        assert line in out, out
