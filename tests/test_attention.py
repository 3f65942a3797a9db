"""Attention capture must equal the model's own attention weights (eager) without eager attention."""

from __future__ import annotations

import pytest
import torch

from sayo.attention import AttentionCapture, positions_from_mask, resolve_layers
from sayo.models import build_tiny


@pytest.fixture(scope="module")
def eager(tiny):
    """The same weights with eager attention, to read reference weights via output_attentions."""
    model, _ = build_tiny()
    model.set_attn_implementation("eager")
    return model


def _queries_and_keys(model, batch):
    seq = batch["input_ids"].shape[1]
    key_index, key_valid = positions_from_mask(batch["input_ids"] == model.config.image_token_id)
    query_index = torch.arange(seq - 8, seq).expand(batch["input_ids"].shape[0], -1)  # last 8 positions
    return query_index, key_index, key_valid


def _reference(eager_model, batch, layers, query_index, key_index, reduce="mean"):
    with torch.no_grad():
        attentions = eager_model(**batch, output_attentions=True).attentions  # L x [B, H, S, S]
    per_layer = []
    for i in layers:
        heads = attentions[i].mean(1) if reduce == "mean" else attentions[i].amax(1)  # [B, S, S]
        rows = heads.gather(1, query_index[:, :, None].expand(-1, -1, heads.shape[-1]))  # [B, Q, S]
        per_layer.append(rows.gather(2, key_index[:, None, :].expand(-1, query_index.shape[1], -1)))
    return torch.stack(per_layer).mean(0)  # [B, Q, K]


@pytest.mark.parametrize(
    ("layers", "reduce", "which"),
    [
        ("last_half", "mean", "sdpa"),  # the default, on the fast kernel
        ([0, -1], "mean", "sdpa"),  # first and last layer, negative index
        (1, "max", "sdpa"),  # last layer only, max over heads
        ("all", "mean", "eager"),  # hooks work whatever the kernel
    ],
)
def test_capture_equals_eager_attention(tiny, eager, two_prompt_batch, layers, reduce, which):
    model = tiny[0] if which == "sdpa" else eager
    batch, _, _ = two_prompt_batch  # row 0 longer prompt; row 1 left-padded
    query_index, key_index, key_valid = _queries_and_keys(model, batch)
    capture = AttentionCapture(model, layers=layers, head_reduce=reduce)
    with torch.no_grad(), capture.record(query_index, key_index, batch["attention_mask"]) as request:
        model(**batch)
    got = capture.result(request) * key_valid[:, None, :]
    resolved = resolve_layers(layers, model.config.text_config.num_hidden_layers)
    want = _reference(eager, batch, resolved, query_index, key_index, reduce) * key_valid[:, None, :]
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-5
    assert got.sum() > 0  # not trivially zero


def test_hooks_are_removed_even_on_error(tiny, two_prompt_batch):
    model, _ = tiny
    batch, _, _ = two_prompt_batch
    query_index, key_index, _ = _queries_and_keys(model, batch)
    capture = AttentionCapture(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        capture.record(query_index, key_index, batch["attention_mask"]),
    ):
        raise RuntimeError("boom")
    attn = capture.attn_modules[0]
    assert not attn._forward_hooks and not attn._forward_pre_hooks and not attn.q_proj._forward_hooks


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
