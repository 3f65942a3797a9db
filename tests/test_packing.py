"""Fast paths of the GRPO step give the values of the plain one-row-per-rollout forward.

- `sayo.models.patch_embed`: the Conv3d patch embedding as a matmul (values and gradients);
- `sayo.vision.SharedImages`: each distinct image through the vision tower once (values,
  gradients, sampled generation);
- `sayo.packing`: each group's prompt once, its completions behind it under a block mask
  (log-probs, entropies, attention capture, gradients; SDPA and eager; LoRA);
- `sayo.sampling.generate_groups`: one prefill per prompt, the same samples as `generate`.

Each runs on both tiny architectures (Qwen2.5-VL; Qwen3-VL with DeepStack features and its own
rope index) in float64, so the comparisons are tight and hold on any CPU and thread count.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import as_float64, assert_equivalent, chat_prompt, tiny_policy
from PIL import Image

from sayo.attention_capture import AttentionCapture
from sayo.logprobs import token_logprobs
from sayo.models.patch_embed import LinearPatchConv3d, use_linear_patch_embed
from sayo.packing import pack_groups, packable
from sayo.prompts import select_rows
from sayo.sampling import generate_completions, generate_groups, stop_and_suppress
from sayo.scoring import completion_logits, packed_completion_logits, score_rollouts
from sayo.vision import SharedImages, encoder_inputs, vision_trains

pytestmark = pytest.mark.equivalence

GROUP = 3


@pytest.fixture(scope="module")
def grouped(policy64):
    """Two noisy images of different sizes, prompts of different lengths, 3 rollouts each; pixels
    in float64 like the model."""
    _, processor = policy64
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (140, 112, 3), dtype=np.uint8)),
    ]
    texts = [
        chat_prompt(processor, "What colour is the square in the top left?"),
        chat_prompt(processor, "Hi"),
    ]
    processor.tokenizer.padding_side = "left"
    unique = processor(text=texts, images=images, padding=True, return_tensors="pt")
    unique["pixel_values"] = unique["pixel_values"].double()
    rows = [i // GROUP for i in range(2 * GROUP)]
    prompts = select_rows(unique, rows)
    shared = SharedImages.select(unique, rows)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 300, (2 * GROUP, 6), generator=gen)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 3:] = False  # completions of different lengths (right padding)
    mask[4, 1:] = False
    ids = ids.masked_fill(~mask, processor.tokenizer.pad_token_id)
    return unique, prompts, shared, ids, mask


def _text(prompts):
    return {k: v for k, v in prompts.items() if k != "pixel_values"}


def _packed(model, prompts, shared, features, ids, mask):
    first, size = shared.groups()
    per_prompt = {k: v[first] for k, v in _text(prompts).items()}
    return pack_groups(model, per_prompt, features, ids, mask, size)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# Gradients: transformers' RMSNorm and vision rotary compute in float32 also in a float64 model,
# so their backward rounds the incoming gradient to float32 (~6e-8 relative): float64 noise of the
# two layouts surfaces as float32 ulps, ~1e-7 of a gradient's scale. A layout bug is O(1e-2).
GRAD_REL = 1e-6


def _assert_same_grads(a, b):
    assert a.keys() == b.keys() and a
    for name in a:
        assert_equivalent(a[name], b[name], rel=GRAD_REL, msg=name)


# --- the patch embedding --------------------------------------------------------------------


def test_linear_patch_embed_equals_the_conv(policy64, grouped):
    model, _ = policy64
    fast = copy.deepcopy(model)
    assert use_linear_patch_embed(fast) == 1  # Qwen2.5-VL's 2×14×14 and Qwen3-VL's 2×16×16 conv
    assert isinstance(fast.model.visual.patch_embed.proj, LinearPatchConv3d)
    assert fast.state_dict().keys() == model.state_dict().keys()  # checkpoints are unaffected
    unique = grouped[0]
    fast.train()
    model.train()
    outputs = []
    for m in (model, fast):
        m.zero_grad()
        feats = m.model.get_image_features(unique["pixel_values"], unique["image_grid_thw"], return_dict=True)
        out = torch.cat(feats.pooler_output)
        out.square().mean().backward()
        outputs.append((out.detach(), m.model.visual.patch_embed.proj.weight.grad.clone()))
    model.eval()
    assert_equivalent(outputs[1][0], outputs[0][0])
    assert_equivalent(outputs[1][1], outputs[0][1])
    model.zero_grad()


def test_linear_patch_conv_falls_back_and_leaves_other_convs_alone():
    overlapping = torch.nn.Conv3d(3, 4, (2, 4, 4), stride=(1, 2, 2))
    net = torch.nn.Sequential(overlapping, torch.nn.Conv3d(3, 4, (2, 4, 4), stride=(2, 4, 4), bias=True))
    assert use_linear_patch_embed(net) == 1 and type(overlapping) is torch.nn.Conv3d
    patch = net[1]
    patch.double()
    x = torch.randn(5, 3, 2, 8, 8, dtype=torch.float64)  # more than one kernel per input: the convolution
    assert torch.equal(patch(x), torch.nn.functional.conv3d(x, patch.weight, patch.bias, stride=(2, 4, 4)))
    one = torch.randn(5, 3, 2, 4, 4, dtype=torch.float64)  # one kernel per input, with bias: the matmul
    want = torch.nn.functional.conv3d(one, patch.weight, patch.bias, stride=(2, 4, 4))
    assert_equivalent(patch(one), want)


# --- shared images --------------------------------------------------------------------------


def test_shared_images_give_the_pixel_forward_and_its_gradients(policy64, grouped, arch):
    model, _ = policy64
    _, prompts, shared, ids, mask = grouped
    assert shared.pixel_values.shape[0] * GROUP == prompts["pixel_values"].shape[0]
    assert vision_trains(model)
    features = shared.encode(model)
    if arch == "tiny-qwen3-vl":  # main features and two DeepStack levels per image
        assert [tuple(f.shape[:1]) for f in features] == [(3,), (3,)]
    model.train()
    results = []
    for inputs in (
        prompts,
        lambda: {**_text(prompts), **encoder_inputs(shared.per_row(shared.encode(model)))},
    ):
        model.zero_grad()
        logits = completion_logits(model, inputs() if callable(inputs) else inputs, ids, mask)
        logps = token_logprobs(logits, ids)
        (logps * mask).sum().backward()
        results.append((logps.detach(), _grads(model)))
    model.eval()
    assert results[0][0].dtype == torch.float64
    assert_equivalent(results[1][0][mask], results[0][0][mask])
    _assert_same_grads(results[0][1], results[1][1])
    assert any(".visual." in name for name in results[0][1])  # through the tower, DeepStack mergers too
    model.zero_grad()


def test_shared_images_sample_the_same_completions(policy64, grouped):
    model, processor = policy64
    _, prompts, shared, _, _ = grouped
    stop = stop_and_suppress(processor.tokenizer, model)
    sampled = []
    for inputs in (prompts, {**_text(prompts), **encoder_inputs(shared.per_row(shared.encode(model)))}):
        torch.manual_seed(3)
        sampled.append(generate_completions(model, inputs, max_new_tokens=8, temperature=1.0, **stop)[0])
    assert torch.equal(sampled[0], sampled[1])
    assert len({tuple(r.tolist()) for r in sampled[0]}) > 1  # sampled, not one repeated row


def test_encoder_inputs_split_deepstack_levels():
    plain = [torch.zeros(4, 8), torch.ones(2, 8)]  # Qwen2.5-VL: [tokens, hidden] per image
    out = encoder_inputs(plain)["mm_encoder_outputs"]["image"]
    assert [t.shape for t in out.pooler_output] == [(4, 8), (2, 8)] and out.deepstack_features == []
    stacked = [
        torch.arange(3.0)[:, None, None].expand(3, 4, 8),
        torch.arange(3.0)[:, None, None].expand(3, 2, 8),
    ]
    out = encoder_inputs(stacked)["mm_encoder_outputs"]["image"]  # Qwen3-VL: main + 2 levels
    assert [float(t[0, 0]) for t in out.pooler_output] == [0.0, 0.0]
    assert [[float(t[0, 0]) for t in level] for level in out.deepstack_features] == [[1.0, 1.0], [2.0, 2.0]]
    with pytest.raises(ValueError, match="DeepStack levels"):
        encoder_inputs([torch.zeros(3, 4, 8), torch.zeros(2, 4, 8)])
    with pytest.raises(ValueError, match="dims"):
        encoder_inputs([torch.zeros(4, 8), torch.zeros(3, 4, 8)])


def test_groups_need_contiguous_equal_rows(grouped):
    unique = grouped[0]
    assert SharedImages.select(unique, [0, 0, 1, 1]).groups() == ([0, 2], 2)
    assert SharedImages.select(unique, [0, 0, 0, 1]).groups() is None  # a partial group
    assert SharedImages.select(unique, [0, 1, 0, 1]).groups() is None  # interleaved
    with pytest.raises(ValueError, match="one image per row"):
        SharedImages.select(
            {"image_grid_thw": unique["image_grid_thw"][:1], "input_ids": unique["input_ids"]}, [0]
        )


# --- packed groups --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attn", "query"),
    [("sdpa", "predicting"), ("eager", "predicting"), ("sdpa", "own")],  # own: the token's own position
)
def test_packed_groups_score_like_one_row_per_rollout(policy64, grouped, attn, query):
    model = policy64[0]
    if attn == "eager":
        model = copy.deepcopy(model)
        model.set_attn_implementation("eager")
    _, prompts, shared, ids, mask = grouped
    assert packable(model)
    features = shared.encode(model)
    rows = {**_text(prompts), **encoder_inputs(shared.per_row(features))}
    packed = _packed(model, prompts, shared, features, ids, mask)
    assert packed.inputs["input_ids"].shape[0] == 2  # one sequence per prompt
    key = rows["input_ids"] == model.config.image_token_id
    kwargs = {"image_token_id": model.config.image_token_id, "region_mask": key, "query": query}
    # the plain reference on SDPA: float64 eager attention gives NaN on a left-padded row (its
    # float64 mask minimum becomes -inf in eager's float32 softmax), which packing never builds
    sdpa = policy64[0]
    plain = score_rollouts(sdpa, rows, ids, mask, capture=AttentionCapture(sdpa, layers="all"), **kwargs)
    capture = AttentionCapture(model, layers="all")
    fast = score_rollouts(model, rows, ids, mask, packed=packed, capture=capture, **kwargs)
    # eager attention takes its softmax in float32 (also in a float64 model): ~1e-7, not ~1e-15
    rel = 1e-9 if attn == "sdpa" else 1e-5
    for name in ("logps", "entropy", "region_share", "attention"):
        assert_equivalent(getattr(fast, name)[mask], getattr(plain, name)[mask], rel=rel, msg=name)
    assert torch.equal(fast.image_keys, plain.image_keys)
    assert not fast.logps.isnan().any()


def test_packed_groups_give_the_same_gradients(policy64, grouped):
    model, _ = policy64
    _, prompts, shared, ids, mask = grouped
    model.train()
    results = []
    for packed in (False, True):
        model.zero_grad()
        features = shared.encode(model)
        if packed:
            logits = packed_completion_logits(
                model, _packed(model, prompts, shared, features, ids, mask), 0.7
            )
        else:
            rows = {**_text(prompts), **encoder_inputs(shared.per_row(features))}
            logits = completion_logits(model, rows, ids, mask, 0.7)
        logps = token_logprobs(logits, ids)
        (logps * mask * torch.linspace(-1, 1, ids.shape[0])[:, None]).sum().backward()
        results.append(_grads(model))
    model.eval()
    _assert_same_grads(results[0], results[1])
    model.zero_grad()


def test_packed_groups_through_lora(policy64, grouped):
    from sayo.models.config import LoraConfig
    from sayo.train.lora import apply_lora, reference_policy

    model = apply_lora(copy.deepcopy(policy64[0]), LoraConfig(enabled=True)).eval()
    _, prompts, shared, ids, mask = grouped
    assert packable(model) and not vision_trains(model)
    with torch.no_grad():  # non-zero adapters, so "adapters off" differs from "on"
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    features = shared.encode(model)
    rows = {**_text(prompts), **encoder_inputs(shared.per_row(features))}
    packed = _packed(model, prompts, shared, features, ids, mask)
    with torch.no_grad():
        got = packed_completion_logits(model, packed)[mask]
        assert got.dtype == torch.float64
        assert_equivalent(got, completion_logits(model, rows, ids, mask)[mask])
        stop = stop_and_suppress(policy64[1].tokenizer, model)
        sampled = []
        for generate in (
            lambda: generate_completions(model, rows, max_new_tokens=5, **stop),
            lambda: generate_groups(model, _text(grouped[0]), features, GROUP, max_new_tokens=5, **stop),
        ):
            torch.manual_seed(1)
            sampled.append(generate()[0])
        assert torch.equal(sampled[0], sampled[1])
        with reference_policy(model) as ref:
            assert_equivalent(
                packed_completion_logits(ref, packed)[mask], completion_logits(ref, rows, ids, mask)[mask]
            )


def test_packing_needs_a_mask_taking_kernel(arch, monkeypatch):
    model = as_float64(tiny_policy(arch)[0])
    monkeypatch.setattr(model.config.text_config, "_attn_implementation", "flash_attention_2")
    assert not packable(model)


# --- one prefill per group --------------------------------------------------------------------


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_generate_groups_samples_what_generate_samples(policy64, grouped, top_p):
    model, processor = policy64
    unique, prompts, _, _, _ = grouped
    stop = stop_and_suppress(processor.tokenizer, model)
    per_prompt = _text(unique)
    features = SharedImages.select(unique, [0, 1]).encode(model)

    def both(**stop):
        torch.manual_seed(7)
        want = generate_completions(model, prompts, max_new_tokens=9, temperature=0.8, top_p=top_p, **stop)
        torch.manual_seed(7)
        got = generate_groups(
            model, per_prompt, features, GROUP, max_new_tokens=9, temperature=0.8, top_p=top_p, **stop
        )
        return want, got

    (want_ids, want_mask), (ids, mask) = both(**stop)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    assert len({tuple(r.tolist()) for r in ids}) == ids.shape[0]  # G different samples per prompt
    stop["eos_token_id"] = int(want_ids[0, 2])  # a token row 0 samples: rows now stop early
    (want_ids, want_mask), (ids, mask) = both(**stop)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    assert not mask[0].all() and (ids[~mask] == stop["pad_token_id"]).all()
