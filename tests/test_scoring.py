"""The GRPO scoring forward: log-probs/entropies as from a full forward, attention shares in [0, 1].

The equivalences run on both tiny architectures in float64.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivalent

from sayo.attention_capture import AttentionCapture
from sayo.sampling import completion_mask, encode_completions, generate_completions
from sayo.scoring import score_rollouts


def _completions(processor):
    return encode_completions(
        processor.tokenizer, ["<think>red</think><answer>red</answer>", "<answer>7</answer>"]
    )


def _float64(batch):
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


@pytest.mark.equivalence
def test_logps_and_entropy_match_a_full_forward(policy64, arch_batch):
    model, processor = policy64
    batch = _float64(arch_batch[0])
    ids, mask = _completions(processor)
    scores = score_rollouts(model, batch, ids, mask, image_token_id=model.config.image_token_id)
    joint = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    joint["input_ids"] = torch.cat([batch["input_ids"], ids], 1)
    joint["attention_mask"] = torch.cat([batch["attention_mask"], mask.long()], 1)
    # without mm_token_type_ids the model cannot place the image in its 3-D (M-RoPE) positions
    joint["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(ids)], 1)
    with torch.no_grad():
        logits = model(**joint).logits[:, batch["input_ids"].shape[1] - 1 : -1]  # [B, T, V]
    logp = logits.log_softmax(-1)
    want_logps = logp.gather(-1, ids[..., None]).squeeze(-1)
    want_entropy = -(logp.exp() * logp).sum(-1)
    assert scores.logps.dtype == torch.float64
    assert_equivalent(scores.logps[mask], want_logps[mask])
    assert_equivalent(scores.entropy[mask], want_entropy[mask])


@pytest.mark.equivalence
def test_capture_does_not_change_logps(policy64, arch_batch):
    model, processor = policy64
    batch = _float64(arch_batch[0])
    ids, mask = _completions(processor)
    plain = score_rollouts(model, batch, ids, mask, image_token_id=model.config.image_token_id)
    image_mask = batch["input_ids"] == model.config.image_token_id
    captured = score_rollouts(
        model,
        batch,
        ids,
        mask,
        image_token_id=model.config.image_token_id,
        capture=AttentionCapture(model),
        region_mask=image_mask,
    )
    assert torch.equal(plain.logps, captured.logps)  # the hooks only read
    # the region is the whole image: every valid token puts all of its visual attention on it
    assert_equivalent(captured.region_share[mask], torch.ones(int(mask.sum()), dtype=torch.float64))
    visual = captured.attention.sum(-1)  # [B, T] share of all attention that goes to the image
    assert ((visual > 0) & (visual <= 1 + 1e-12))[mask].all()


def test_region_share_is_a_fraction(policy, arch_batch):
    model, processor = policy
    batch, _, _ = arch_batch
    ids, mask = _completions(processor)
    image_mask = batch["input_ids"] == model.config.image_token_id
    first_half = image_mask & (image_mask.cumsum(1) <= image_mask.sum(1, keepdim=True) // 2)
    scores = score_rollouts(
        model,
        batch,
        ids,
        mask,
        image_token_id=model.config.image_token_id,
        capture=AttentionCapture(model),
        region_mask=first_half,
    )
    share = scores.region_share[mask]
    assert ((share > 0) & (share < 1)).all()
    assert scores.region_keys.sum(1).tolist() == (image_mask.sum(1) // 2).tolist()


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5], [2, 9, 9, 9, 9]])
    assert completion_mask(ids, 2).int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert completion_mask(ids, [6, 2]).int().tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_generate_pads_after_eos(policy, arch_batch):
    model, processor = policy
    batch, _, _ = arch_batch
    torch.manual_seed(0)
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, mask = generate_completions(
        model, batch, max_new_tokens=6, eos_token_id=eos, pad_token_id=processor.tokenizer.pad_token_id
    )
    assert ids.shape[0] == 2 and ids.shape[1] <= 6
    assert (ids[~mask] == processor.tokenizer.pad_token_id).all()


def test_select_rows_equals_processing_the_repeated_rows(policy, arch_batch):
    from sayo.prompts import select_rows

    _, processor = policy
    batch, images, texts = arch_batch
    rows = [1, 1, 0, 1]  # repeats, reordering, and a subset where the longest prompt is absent below
    direct = processor(
        text=[texts[i] for i in rows], images=[images[i] for i in rows], padding=True, return_tensors="pt"
    )
    picked = select_rows(batch, rows)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "pixel_values"):
        assert torch.equal(picked[key], direct[key]), key
    only_short = processor(text=[texts[1]] * 2, images=[images[1]] * 2, padding=True, return_tensors="pt")
    assert torch.equal(select_rows(batch, [1, 1])["input_ids"], only_short["input_ids"])  # padding trimmed


@pytest.mark.equivalence
def test_own_query_reads_each_tokens_own_position(tiny, two_prompt_batch):
    """`query=own` is the attention of the row after `predicting`'s: shifting the query by one position."""
    model, processor = tiny
    batch, _, _ = two_prompt_batch
    ids, mask = encode_completions(
        processor.tokenizer, ["<think>red</think><answer>red</answer>", "a b c d e f"]
    )
    capture = AttentionCapture(model, layers="all")
    kwargs = {"image_token_id": model.config.image_token_id, "capture": capture}
    predicting = score_rollouts(model, batch, ids, mask, **kwargs)
    own = score_rollouts(model, batch, ids, mask, query="own", **kwargs)
    assert own.attention is not None and predicting.attention is not None
    # the query that predicts token t + 1 is token t's own position
    valid = mask[:, 1:]
    assert_equivalent(
        own.attention[:, :-1][valid], predicting.attention[:, 1:][valid], rel=1e-6, msg="shifted"
    )
    assert not torch.allclose(own.attention, predicting.attention)
    with pytest.raises(ValueError, match="query='next'"):
        score_rollouts(model, batch, ids, mask, query="next", **kwargs)
