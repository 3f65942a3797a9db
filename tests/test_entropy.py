"""Checks of sayo.logprobs and sayo.rewards.selection: entropies, log-probs and top-entropy token selection."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_equivalent
from hypothesis import given, settings
from hypothesis import strategies as st

from sayo.logprobs import token_entropy, token_logprobs
from sayo.rewards import select_high_entropy_tokens

# ---------------------------------------------------------------- token_entropy / token_logprobs


# float32 logits are computed in float32 (a few ulps from the float64 truth); float64 in float64
PRECISION = [(torch.float32, 1e-5), (torch.float64, 1e-12)]


@pytest.mark.equivalence
@pytest.mark.parametrize(("dtype", "rel"), PRECISION)
@pytest.mark.parametrize("chunk_size", [1, 2, 1024])  # chunk smaller than, dividing, larger than T
def test_token_entropy_matches_direct_computation(chunk_size: int, dtype: torch.dtype, rel: float) -> None:
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    probs = torch.softmax(logits, dim=-1)
    expected = -(probs * probs.log()).sum(-1)
    got = token_entropy(logits.to(dtype), chunk_size=chunk_size)
    assert got.dtype == dtype and got.shape == (2, 5)
    assert_equivalent(got, expected, rel=rel)


def test_uniform_logits_give_log_vocab() -> None:
    # p = 1/V everywhere → H = log V
    assert torch.allclose(token_entropy(torch.zeros(1, 3, 50)), torch.full((1, 3), math.log(50)))


def test_token_entropy_is_stable_for_extreme_logits_and_bf16() -> None:
    # a near one-hot distribution with huge logits: entropy ~0, never NaN
    logits = torch.tensor([[[1e4, -1e4, 0.0]]])
    assert token_entropy(logits).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        out = token_entropy(torch.zeros(1, 2, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full((1, 2), math.log(8)))


@pytest.mark.equivalence
@pytest.mark.parametrize(("dtype", "rel"), PRECISION)
@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_token_logprobs_equals_log_softmax_gather(chunk_size: int, dtype: torch.dtype, rel: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 9, generator=gen, dtype=torch.float64)
    tokens = torch.randint(0, 9, (2, 4), generator=gen)
    expected = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits.to(dtype), tokens, chunk_size=chunk_size)
    assert got.dtype == dtype
    assert_equivalent(got, expected, rel=rel)


@pytest.mark.equivalence
def test_token_logprobs_supports_backward() -> None:
    logits = torch.randn(1, 3, 5, dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[0, 4, 2]])
    token_logprobs(logits, tokens, chunk_size=2).sum().backward()
    # d log p_y / d logits = onehot(y) − softmax
    expected = torch.nn.functional.one_hot(tokens, 5).double() - torch.softmax(logits.detach(), -1)
    assert logits.grad is not None
    assert_equivalent(logits.grad, expected, rel=1e-12)


def test_half_precision_logits_are_computed_in_float32() -> None:
    logits = torch.randn(1, 2, 6, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    assert token_logprobs(logits, torch.tensor([[1, 5]])).dtype == torch.float32
    assert token_entropy(logits).dtype == torch.float32


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="tokens shape"):
        token_logprobs(torch.zeros(1, 3, 5), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        token_entropy(torch.zeros(3, 5))


# ---------------------------------------------------------------- select_high_entropy_tokens

SELECTION_CASES = [
    # all masked → nothing selected
    ([[0.5, 0.9, 0.1]], [[False, False, False]], 0.5, [[False, False, False]]),
    # ratio 1.0 → every valid token
    ([[0.5, 0.9, 0.1, 0.3]], [[True, False, True, True]], 1.0, [[True, False, True, True]]),
    # tiny ratio → exactly one (the highest) per sequence with a valid token
    (
        [[0.5, 0.9, 0.1], [0.2, 0.1, 0.3]],
        [[True, True, True], [True, True, False]],
        1e-6,
        [[False, True, False], [True, False, False]],
    ),
    # ceil(0.5 · 3) = 2: the highest masked entropy (0.9) is skipped
    ([[0.5, 0.9, 0.1, 0.7]], [[True, False, True, True]], 0.5, [[True, False, False, True]]),
    # ties: equal entropies, the earlier positions win
    ([[0.4, 0.4, 0.4, 0.4]], [[True, True, True, True]], 0.5, [[True, True, False, False]]),
    # 0.28 · 25 = 7.000000000000001 in floating point must still give 7, not 8
    ([[float(i) for i in range(25)]], [[True] * 25], 0.28, [[False] * 18 + [True] * 7]),
    # many ties (longer than small-sort paths): the first half by position wins
    ([[1.0] * 64], [[True] * 64], 0.5, [[True] * 32 + [False] * 32]),
    # NaN entropy ranks below every real value
    ([[float("nan"), 0.1, 0.2]], [[True, True, True]], 0.5, [[False, True, True]]),
    # -inf entropy on a valid token still beats a masked token
    ([[float("-inf"), 5.0, 1.0]], [[True, False, False]], 1.0, [[True, False, False]]),
]


@pytest.mark.parametrize(("entropy", "mask", "ratio", "expected"), SELECTION_CASES)
def test_select_high_entropy_tokens_cases(
    entropy: list[list[float]], mask: list[list[bool]], ratio: float, expected: list[list[bool]]
) -> None:
    got = select_high_entropy_tokens(torch.tensor(entropy), torch.tensor(mask), ratio)
    assert got.dtype == torch.bool
    assert got.tolist() == expected


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
def test_bad_ratio_raises_with_value(ratio: float) -> None:
    with pytest.raises(ValueError, match=repr(ratio)):
        select_high_entropy_tokens(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), ratio)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 4),
    length=st.integers(0, 12),
    ratio=st.floats(min_value=1e-6, max_value=1.0),
)
def test_selection_properties(data: st.DataObject, batch: int, length: int, ratio: float) -> None:
    values = st.floats(-5, 5) | st.sampled_from([0.0, 1.0])  # sampled values force ties
    entropy = torch.tensor(
        data.draw(
            st.lists(st.lists(values, min_size=length, max_size=length), min_size=batch, max_size=batch)
        ),
        dtype=torch.float32,
    )
    mask = torch.tensor(
        data.draw(
            st.lists(
                st.lists(st.booleans(), min_size=length, max_size=length), min_size=batch, max_size=batch
            )
        ),
        dtype=torch.bool,
    )
    entropy, mask = entropy.reshape(batch, length), mask.reshape(batch, length)
    selected = select_high_entropy_tokens(entropy, mask, ratio)
    assert not (selected & ~mask).any()  # masked tokens are never selected
    for row in range(batch):
        n_valid = int(mask[row].sum())
        k = int(selected[row].sum())
        assert k == (max(1, math.ceil(ratio * n_valid - 1e-9)) if n_valid else 0)
        if 0 < k < n_valid:  # every selected token is at least as uncertain as every unselected valid one
            assert entropy[row][selected[row]].min() >= entropy[row][mask[row] & ~selected[row]].max()


# A padded batch of two rollouts, width T = 11: row 0 uses every column (its EOS at 10), row 1 stops
# at column 2 (its EOS); columns 3..10 of row 1 are padding whose entropies are still computed.
PADDED_ENTROPY = torch.tensor(
    [
        [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5, 0.05, 5.0],
        [0.2, 0.3, 0.1, 0.9, 0.1, 0.8, 0.1, 0.1, 0.7, 0.1, 9.0],
    ]
)
PADDED_MASK = torch.tensor([[True] * 11, [True] * 3 + [False] * 8])


def test_batch_width_count_is_the_authors_rule_on_a_padded_batch() -> None:
    """k = max(1, ⌊0.3·(11 − 1)⌋) = 3 in every row, over columns 0..9 of the padded batch — row 1's
    picks are all after its EOS (columns 3, 5, 8), and column 10 (the batch's last) is never picked."""
    selected = select_high_entropy_tokens(
        PADDED_ENTROPY, PADDED_MASK, 0.3, exclude_last=True, count="batch_width"
    )
    assert selected.nonzero().tolist() == [[0, 1], [0, 3], [0, 5], [1, 3], [1, 5], [1, 8]]
    # the authors' get_top_entropy_indices_list, written out: topk over entropies[:, :-1]
    width = PADDED_ENTROPY.shape[1] - 1
    top = torch.topk(PADDED_ENTROPY[:, :-1], max(1, int(width * 0.3)), dim=-1).indices
    assert [sorted(row) for row in top.tolist()] == [[1, 3, 5], [3, 5, 8]]


def test_per_row_count_is_sayos_rule_on_the_same_batch() -> None:
    """sayo's default: k = ⌈0.3·n⌉ of each row's valid tokens, its last one dropped: row 0 ⌈3.0⌉ = 3
    of columns 0..9, row 1 ⌈0.6⌉ = 1 of columns 0..1."""
    selected = select_high_entropy_tokens(PADDED_ENTROPY, PADDED_MASK, 0.3, exclude_last=True)
    assert selected.nonzero().tolist() == [[0, 1], [0, 3], [0, 5], [1, 1]]


@pytest.mark.parametrize(
    ("width", "exclude_last", "ratio", "k"),
    [(11, True, 0.3, 3), (11, False, 0.3, 3), (111, True, 0.3, 33), (4, True, 0.3, 1), (2, True, 1.0, 1)],
)
def test_batch_width_k_is_one_number_for_the_batch(
    width: int, exclude_last: bool, ratio: float, k: int
) -> None:
    entropy = torch.rand(3, width, generator=torch.Generator().manual_seed(width))
    mask = torch.zeros(3, width, dtype=torch.bool)
    mask[:, :1] = True  # one valid token per row: the count does not depend on it
    selected = select_high_entropy_tokens(
        entropy, mask, ratio, exclude_last=exclude_last, count="batch_width"
    )
    assert selected.sum(dim=1).tolist() == [k] * 3
    assert not exclude_last or not selected[:, -1].any()


def test_batch_width_of_one_column_without_its_last_selects_nothing() -> None:
    selected = select_high_entropy_tokens(
        torch.ones(2, 1), torch.ones(2, 1, dtype=torch.bool), 0.3, exclude_last=True, count="batch_width"
    )
    assert not selected.any()
    with pytest.raises(ValueError, match="count='x'"):
        select_high_entropy_tokens(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), 0.3, count="x")


def test_official_recipes_count_over_the_batch_width() -> None:
    from sayo.recipe import load_recipe

    for name in ("sayo_official_qwen3_vl_8b", "tiny_official"):
        assert load_recipe(name).rewards.attention.count == "batch_width", name
    assert load_recipe("tiny").rewards.attention.count == "per_row"


def test_the_attention_config_applies_its_count() -> None:
    """`rewards.attention.count` reaches the selection the reward, probes and evaluation share."""
    from sayo.rewards.attention import select_tokens
    from sayo.rewards.config import AttentionConfig

    authors = AttentionConfig(ratio=0.3, exclude_last=True, count="batch_width")
    expected = select_high_entropy_tokens(PADDED_ENTROPY, PADDED_MASK, 0.3, True, count="batch_width")
    assert torch.equal(select_tokens(PADDED_ENTROPY, PADDED_MASK, authors), expected)
    ours = AttentionConfig(ratio=0.3, exclude_last=True)
    assert torch.equal(
        select_tokens(PADDED_ENTROPY, PADDED_MASK, ours),
        select_high_entropy_tokens(PADDED_ENTROPY, PADDED_MASK, 0.3, True),
    )
