"""Attention capture must equal the model's own attention weights (eager) without eager attention.

Both tiny architectures, in float64: Qwen2.5-VL (the capture keeps the q/k projections) and
Qwen3-VL (it keeps the per-head RMS-normalised q/k), each with left padding and grouped-query heads.
"""

from __future__ import annotations

import pytest
import torch
from conftest import as_float64, assert_equivalent

import sayo.attention_capture
from sayo.attention_capture import AttentionCapture, _query_key_modules, positions_from_mask, resolve_layers
from sayo.packing import rope_positions


@pytest.fixture(scope="module")
def float64_pair(policy64, arch_batch):
    """(sdpa model, eager model) in float64 with the same weights, and the batch in float64."""
    model, _ = policy64
    eager = as_float64(model)
    eager.set_attn_implementation("eager")
    batch, _, _ = arch_batch
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    return model, eager, batch


def _queries_and_keys(model, batch):
    seq = batch["input_ids"].shape[1]
    key_index, key_valid = positions_from_mask(batch["input_ids"] == model.config.image_token_id)
    query_index = torch.arange(seq - 8, seq).expand(batch["input_ids"].shape[0], -1)  # last 8 positions
    return query_index, key_index, key_valid


def eager_inputs(model, batch):
    """`batch` with the [B, 1, S, S] additive causal + padding mask that eager attention builds for
    float32, given explicitly (with the M-RoPE positions the model would compute from the 2-D mask):
    transformers builds float64's with float64's minimum, which its float32 softmax turns into
    -inf, so a padding query that sees no key would give NaN that the next layer's value matmul
    spreads to every row (0 · NaN)."""
    mask = batch["attention_mask"].bool()  # [B, S]
    seq = mask.shape[1]
    visible = mask[:, None, :] & torch.ones(seq, seq, dtype=torch.bool).tril()  # [B, S, S]
    bias = torch.zeros(visible.shape, dtype=torch.float64)
    bias = bias.masked_fill(~visible, torch.finfo(torch.float32).min)
    return {**batch, "attention_mask": bias[:, None], "position_ids": rope_positions(model, batch)}


def _reference(eager_model, batch, layers, query_index, key_index, reduce="mean"):
    with torch.no_grad():
        attentions = eager_model(
            **eager_inputs(eager_model, batch), output_attentions=True
        ).attentions  # L x [B, H, S, S]
    per_layer = []
    for i in layers:
        heads = attentions[i].mean(1) if reduce == "mean" else attentions[i].amax(1)  # [B, S, S]
        rows = heads.gather(1, query_index[:, :, None].expand(-1, -1, heads.shape[-1]))  # [B, Q, S]
        per_layer.append(rows.gather(2, key_index[:, None, :].expand(-1, query_index.shape[1], -1)))
    return torch.stack(per_layer).mean(0)  # [B, Q, K]


def _captured_and_eager(model, eager, batch, layers, reduce):
    query_index, key_index, key_valid = _queries_and_keys(model, batch)
    capture = AttentionCapture(model, layers=layers, head_reduce=reduce)
    with torch.no_grad(), capture.record(query_index, key_index, batch["attention_mask"]) as request:
        model(**(eager_inputs(eager, batch) if model is eager else batch))
    got = capture.result(request) * key_valid[:, None, :]
    resolved = resolve_layers(layers, model.config.text_config.num_hidden_layers)
    want = _reference(eager, batch, resolved, query_index, key_index, reduce) * key_valid[:, None, :]
    return got, want


@pytest.mark.equivalence
@pytest.mark.parametrize(
    ("layers", "reduce", "which"),
    [
        ("last_half", "mean", "sdpa"),  # the default, on the fast kernel
        ([0, -1], "mean", "sdpa"),  # first and last layer, negative index
        (1, "max", "sdpa"),  # last layer only, max over heads
        ("all", "mean", "eager"),  # hooks work whatever the kernel
    ],
)
def test_capture_equals_eager_attention(float64_pair, layers, reduce, which):
    model, eager, batch = float64_pair  # row 0 longer prompt; row 1 left-padded
    assert model.dtype == torch.float64
    got, want = _captured_and_eager(model if which == "sdpa" else eager, eager, batch, layers, reduce)
    assert got.shape == want.shape and got.dtype == torch.float64
    # probabilities in [0, 1]: an absolute bound; eager's own softmax runs in float32 (~1e-7)
    assert (got - want).abs().max().item() < 1e-5
    assert got.sum() > 0  # not trivially zero


@pytest.mark.equivalence
def test_capture_of_normalised_heads_needs_the_norm_outputs(float64_pair, arch, monkeypatch):
    """Qwen3-VL: keeping the projections instead of the per-head norms gives other attention, so
    the test above can tell."""
    model, eager, batch = float64_pair
    if arch != "tiny-qwen3-vl":
        pytest.skip("Qwen2.5-VL has no per-head q/k norms")
    attn = model.model.language_model.layers[0].self_attn
    assert _query_key_modules(attn) == (attn.q_norm, attn.k_norm)
    monkeypatch.setattr(sayo.attention_capture, "_query_key_modules", lambda a: (a.q_proj, a.k_proj))
    got, want = _captured_and_eager(model, eager, batch, "all", "mean")
    assert (got - want).abs().max().item() > 1e-3


def test_hooks_are_removed_even_on_error(policy, arch_batch):
    model, _ = policy
    batch, _, _ = arch_batch
    query_index, key_index, _ = _queries_and_keys(model, batch)
    capture = AttentionCapture(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        capture.record(query_index, key_index, batch["attention_mask"]),
    ):
        raise RuntimeError("boom")
    attn = capture.attn_modules[0]
    q_module, k_module = _query_key_modules(attn)
    assert not attn._forward_hooks and not attn._forward_pre_hooks
    assert not q_module._forward_hooks and not k_module._forward_hooks


def test_result_without_forward_is_an_error(tiny, two_prompt_batch):
    model, _ = tiny
    batch, _, _ = two_prompt_batch
    query_index, key_index, _ = _queries_and_keys(model, batch)
    capture = AttentionCapture(model)
    with capture.record(query_index, key_index, batch["attention_mask"]) as request:
        pass
    with pytest.raises(RuntimeError, match="exactly one model forward"):
        capture.result(request)


def test_capture_carries_no_gradient(tiny, two_prompt_batch):
    model, _ = tiny
    batch, _, _ = two_prompt_batch
    query_index, key_index, _ = _queries_and_keys(model, batch)
    capture = AttentionCapture(model, layers=1)
    with capture.record(query_index, key_index, batch["attention_mask"]) as request:
        model(**batch).logits.sum().backward()
    model.zero_grad(set_to_none=True)
    assert not capture.result(request).requires_grad


@pytest.mark.equivalence
def test_differentiable_capture_has_eager_attentions_gradient(float64_pair):
    """`differentiable=True` (SFT's attention term): the captured attention's gradient with respect
    to the weights equals that of eager attention's probabilities, in float64."""
    model, eager, batch = float64_pair
    query_index, key_index, key_valid = _queries_and_keys(model, batch)
    weights = torch.rand(
        query_index.shape + key_index.shape[1:],
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    layer = model.config.text_config.num_hidden_layers - 1
    capture = AttentionCapture(model, layers=1, differentiable=True)
    with capture.record(query_index, key_index, batch["attention_mask"]) as request:
        model(**batch)
    (capture.result(request) * key_valid[:, None, :] * weights).sum().backward()
    got = _q_weight(model, layer).grad.clone()
    model.zero_grad(set_to_none=True)
    attentions = eager(**eager_inputs(eager, batch), output_attentions=True).attentions  # L x [B, H, S, S]
    heads = attentions[layer].mean(1)  # [B, S, S]
    rows = heads.gather(1, query_index[:, :, None].expand(-1, -1, heads.shape[-1]))  # [B, Q, S]
    want = rows.gather(2, key_index[:, None, :].expand(-1, query_index.shape[1], -1))  # [B, Q, K]
    (want * key_valid[:, None, :] * weights).sum().backward()
    expected = _q_weight(eager, layer).grad.clone()
    eager.zero_grad(set_to_none=True)
    assert float(expected.abs().max()) > 0
    # eager's softmax runs in float32 (see eager_inputs): its precision, scaled to the gradient
    assert_equivalent(got, expected, rel=1e-5, msg="d attention / d q_proj")


def _q_weight(model, layer: int) -> torch.nn.Parameter:
    attn = sayo.attention_capture.decoder_layers(model)[layer].get_submodule("self_attn")
    return attn.get_submodule("q_proj").weight


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("last_half", [2, 3]),  # docs/method.md default: the last half of 4 layers
        ("all", [0, 1, 2, 3]),
        (1, [3]),  # last k
        ([0, -1], [0, 3]),  # negative indices count from the end
        ([2, 2, 1], [1, 2]),  # duplicates removed, sorted
    ],
)
def test_resolve_layers(spec, expected):
    assert resolve_layers(spec, 4) == expected


@pytest.mark.parametrize("spec", [0, 5, [4], [-5], [], "first_half", True])
def test_resolve_layers_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        resolve_layers(spec, 4)


def test_bad_head_reduce_is_named(tiny):
    with pytest.raises(ValueError, match="median"):
        AttentionCapture(tiny[0], head_reduce="median")


def test_positions_from_mask():
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    index, valid = positions_from_mask(mask)
    assert index.tolist() == [[1, 2, 4], [0, 0, 0], [0, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False], [False, False, False]]
