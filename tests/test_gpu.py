"""The CUDA paths, on a machine with a GPU (`pytest -m gpu`; skipped without one, see conftest).

`make gpu-check` runs these first (benchmarks/gpu_check.py). What differs on CUDA: SDPA runs the
flash / memory-efficient kernels instead of the CPU math kernel, the policy loads in bf16
(`model.dtype=auto`), and the GRPO step generates, scores and updates on the device.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_dataset
from PIL import Image

from sayo.attention_capture import AttentionCapture, positions_from_mask, resolve_layers
from sayo.models import build_tiny
from sayo.recipe import load_recipe

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cuda_models():
    """The tiny policy twice on the GPU: SDPA (captured) and eager (the reference weights)."""
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the float32 comparison
    torch.backends.cudnn.allow_tf32 = False
    model, processor = build_tiny()
    eager, _ = build_tiny()
    eager.set_attn_implementation("eager")
    return model.cuda(), eager.cuda(), processor


def _batch(processor):
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}] for q in ("What colour is the square?", "Hi")]  # fmt: skip
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    images = [Image.new("RGB", (300, 200), "red"), Image.new("RGB", (112, 140), "blue")]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


@pytest.mark.parametrize(("dtype", "relative"), [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_capture_equals_eager_attention_on_cuda(cuda_models, dtype: torch.dtype, relative: float) -> None:
    """Tolerance relative to the largest weight: bf16 rounds the scores of eager (and the flash kernel's
    hidden states) to 8 bits of mantissa; on the CPU in bf16 the difference is ~0.2 % of the largest."""
    model, eager, processor = cuda_models
    model, eager = model.to(dtype), eager.to(dtype)
    batch = {k: v.cuda() for k, v in _batch(processor).items()}
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    seq = batch["input_ids"].shape[1]
    key_index, key_valid = positions_from_mask(batch["input_ids"] == model.config.image_token_id)
    query_index = torch.arange(seq - 8, seq, device="cuda").expand(2, -1)  # [B, 8] the last 8 positions
    capture = AttentionCapture(model, layers="last_half")
    with torch.no_grad(), capture.record(query_index, key_index, batch["attention_mask"]) as request:
        model(**batch)
    got = capture.result(request).float() * key_valid[:, None, :]  # [B, Q, K]
    with torch.no_grad():
        attentions = eager(**batch, output_attentions=True).attentions  # L x [B, H, S, S]
    rows = []
    for i in resolve_layers("last_half", model.config.text_config.num_hidden_layers):
        heads = attentions[i].float().mean(1)  # [B, S, S]
        picked = heads.gather(1, query_index[:, :, None].expand(-1, -1, seq))  # [B, Q, S]
        rows.append(picked.gather(2, key_index[:, None, :].expand(-1, query_index.shape[1], -1)))
    want = torch.stack(rows).mean(0) * key_valid[:, None, :]  # [B, Q, K]
    assert got.device.type == "cuda" and got.shape == want.shape
    scale = want.abs().max().item()
    assert scale > 0
    assert (got - want).abs().max().item() <= relative * scale


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("data") / "processed", 48)


def _config(tmp_path: Path, dataset: Path, *overrides: str):
    base = [
        f"data.path={dataset}",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        "tracking.enabled=false",
        "device=cuda",
        "checkpoint.every=0",
        "sft.eval_every=0",
        "grpo.probe_every=0",
        "grpo.prompts_per_step=2",
        "grpo.group_size=4",
        "grpo.micro_batch_size=8",
        "grpo.max_new_tokens=16",
        "grpo.init_from=model",
    ]
    return load_recipe("tiny", [*base, *overrides])


def test_sft_steps_on_cuda(tmp_path: Path, small_dataset: Path) -> None:
    from sayo.train.sft import train_sft

    result = train_sft(_config(tmp_path, small_dataset, "sft.max_steps=3", "sft.log_every=1"))
    assert math.isfinite(result.metrics["loss"]) and result.metrics["loss"] > 0
    assert (result.final_dir / "config.yaml").exists()


def test_grpo_step_on_cuda(tmp_path: Path, small_dataset: Path) -> None:
    """Generation, the scoring forward with the capture hooks, rewards and the update, on the GPU in bf16."""
    from sayo.train.grpo import train_grpo

    torch.cuda.reset_peak_memory_stats()
    result = train_grpo(_config(tmp_path, small_dataset, "grpo.max_steps=2"))
    metrics = result.metrics
    for key in ("reward/total_mean", "kl", "entropy_mean", "clip_fraction", "tokens_per_s"):
        assert math.isfinite(metrics[key]), key
    assert 0 < metrics["reward/region_attention"] <= 1  # captured attention reached the reward
    assert torch.cuda.max_memory_allocated() > 0  # the step really ran on the device
