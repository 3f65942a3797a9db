"""`tiny-qwen3-vl` through the whole stack, with the same code as the Qwen2.5-VL tiny: prompts and
regions from the processor's own grid, the fast paths the GRPO step takes (shared image features
with DeepStack, one prefill per group, packed scoring), the demo, SFT's length estimate, and SFT +
GRPO steps through the library functions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_tiny_dataset, train_recipe

from sayo.data.synthetic import SyntheticConfig, generate
from sayo.prompts import build_prompt_batch, prompt_region_mask
from sayo.recipe import Recipe
from sayo.regions import VisionGeometry, bbox_to_token_indices

ROOT = Path(__file__).resolve().parents[1]
QWEN3 = "tiny-qwen3-vl"


@pytest.fixture(scope="module")
def qwen3_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-sample synthetic dataset built by the real `data` stage."""
    return build_tiny_dataset(tmp_path_factory.mktemp("data") / "processed", 32)


def _config(tmp_path: Path, dataset: Path, *overrides: str) -> Recipe:
    return train_recipe(
        tmp_path, dataset, f"model.name_or_path={QWEN3}", "grpo.micro_batch_size=8", "grpo.max_new_tokens=8",
        "checkpoint.every=0", *overrides,
    )  # fmt: skip


def test_region_mask_follows_each_processors_grid(policy, arch):
    """Region tokens of real processor batches: 28-px cells (Qwen2.5-VL) or 32-px cells (Qwen3-VL),
    the merge size read from the batch itself."""
    model, processor = policy
    pairs = list(generate(SyntheticConfig(num_samples=3, seed=1, image_size=(250, 170))))
    samples, images = [p[0] for p in pairs], [p[1] for p in pairs]
    prompts = build_prompt_batch(processor, samples, images, repeat=2)
    image_token_id = model.config.image_token_id
    image_mask, region_mask = prompt_region_mask(prompts, samples, images, image_token_id, repeat=2)
    geometry = VisionGeometry.of(processor)
    assert geometry.cell == {"tiny": 28, QWEN3: 32}[arch]
    for row in range(len(samples) * 2):
        sample, image = samples[row // 2], images[row // 2]
        grid = prompts["image_grid_thw"][row].tolist()
        assert grid == list(geometry.grid_thw(image.size))
        want = sorted({i for r in sample.regions for i in bbox_to_token_indices(r.bbox, image.size, grid)})
        got = region_mask[row][image_mask[row]].nonzero().flatten().tolist()  # among the row's image tokens
        assert got == want and 0 < len(got) < int(image_mask[row].sum())


def test_demo_runs_on_tiny_qwen3_vl(tmp_path):
    from sayo.demo import KINDS, DemoConfig, run_demo

    records = run_demo(DemoConfig(model=QWEN3, num_samples=2, out_dir=tmp_path))
    assert len(records) == 2 * len(KINDS)
    assert all(r["accuracy"] == 1 for r in records if r["kind"] == "reference")
    assert all(0 < r["region_attention"] <= 1 for r in records)
    assert (tmp_path / "heatmaps.png").exists()


def test_sft_length_estimate_counts_qwen3_vl_tokens(qwen3_dataset):
    """`sayo.train.sft.sample_lengths` reads patch and merge size from the processor: exact for
    32-px cells too (within the chat template's few placeholder tokens)."""
    from sayo.data.dataset import GroundedDataset
    from sayo.models import load_policy
    from sayo.sampling import encode_completions
    from sayo.train.sft import sample_lengths, sft_target

    _, processor = load_policy(QWEN3, device="cpu")
    data = GroundedDataset.load(qwen3_dataset, "train", max_samples=6)
    for sample, estimate in zip(data.samples, sample_lengths(data, processor, reasoning=True), strict=True):
        prompt = build_prompt_batch(processor, [sample], [data.image(sample)])
        target, _ = encode_completions(processor.tokenizer, [sft_target(sample, True)])
        actual = int(prompt["attention_mask"].sum()) + target.shape[1]
        assert abs(estimate - actual) <= 3, (estimate, actual)


def test_grpo_chunk_takes_the_fast_paths(tmp_path, qwen3_dataset):
    """The trainer's rollout code on Qwen3-VL: DeepStack features computed once per image, one
    prefill per group, the chunk scored packed, the attention reward captured."""
    from sayo.train import grpo as grpo_module
    from sayo.train.grpo_step import make_chunks, sample, score

    cfg = _config(tmp_path, qwen3_dataset, "grpo.beta=0.1")
    session = grpo_module._setup(cfg)
    policy = session.policy
    assert policy.model.config.model_type == "qwen3_vl"
    samples, images = session.data.batch([0, 1])
    image_token_id = policy.model.config.image_token_id
    prompts = make_chunks(policy.processor, samples, images, 4, 8, image_token_id, "cpu")
    torch.manual_seed(0)
    (sampled,) = sample(policy.model, policy.processor, prompts, cfg.grpo)
    assert [tuple(f.shape[:1]) for f in sampled.features] == [(3,), (3,)]  # main + 2 DeepStack levels
    (chunk,) = score(
        policy.model, session.reference, [sampled], session.capture, cfg.rewards, 1.0, image_token_id
    )
    assert chunk.packed is not None and chunk.packed.inputs["input_ids"].shape[0] == 2
    assert chunk.ref_logps is not None and torch.isfinite(chunk.old_logps[sampled.mask]).all()
    assert chunk.attention is not None and (chunk.attention.share > 0).all()


@pytest.mark.slow
def test_sft_then_grpo_steps_on_tiny_qwen3_vl(tmp_path, qwen3_dataset):
    from sayo.models import load_policy
    from sayo.train.grpo import train_grpo
    from sayo.train.sft import train_sft

    sft = train_sft(_config(tmp_path, qwen3_dataset, "sft.max_steps=3", "sft.batch_size=4"))
    assert torch.isfinite(torch.tensor(sft.metrics["loss"]))
    grpo = train_grpo(_config(tmp_path, qwen3_dataset, "grpo.max_steps=2", "grpo.init_from=sft"))
    for key in ("loss", "kl", "reward/accuracy", "reward/format", "reward/region_attention"):
        assert torch.isfinite(torch.tensor(grpo.metrics[key])), key
    assert 0 < grpo.metrics["reward/region_attention"] <= 1
    model, processor = load_policy(grpo.final_dir, device="cpu")
    assert model.config.model_type == "qwen3_vl" and VisionGeometry.of(processor).cell == 32
