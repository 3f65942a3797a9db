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


def test_selection_token_roles(tiny):
    """benchmarks/selection.py: each token's role in a search-task response, read from its spans."""
    from selection import _spans, token_roles

    _, processor = tiny
    tokenizer = processor.tokenizer
    text = "<think> orange green, red blue.</think><answer> blue</answer>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded, spans = _spans(tokenizer, ids)
    roles = token_roles(decoded, spans, "red")
    words = [decoded[a:b].strip() for a, b in spans]
    by_word = dict(zip(words, roles, strict=True))
    assert by_word["orange"] == "other name" and by_word["green"] == "other attribute"  # the look-alike
    assert by_word["red"] == "target name"  # the asked object's step, second
    assert roles[words.index("blue", words.index("<answer>"))] == "answer"
    assert roles[words.index("blue")] == "target attribute"  # the reasoning's "blue": read off the target
    assert by_word["<think>"] == by_word["</answer>"] == by_word[","] == "format"
    decoded, spans = _spans(
        tokenizer, tokenizer("<answer> blue</answer>", add_special_tokens=False)["input_ids"]
    )
    roles = token_roles(decoded, spans, "red")
    assert "answer" in roles and not any(r.startswith(("target", "other")) for r in roles)  # no reasoning
