"""Hand-computed checks of sayo.rewards.attention and of the reward combination (sayo.rewards.combine).

Also the reward forms of `rewards.attention.form` (the authors' `official_attention_reward` against a
plain-Python computation of its formula) and the reward combination (sayo.rewards.combine).
"""

from __future__ import annotations

import math

import pytest
import torch

from sayo.rewards import (
    REWARD_NAMES,
    combine_rewards,
    official_attention_reward,
    region_area_fraction,
    region_attention_reward,
    region_share,
)
from sayo.rewards.attention import attention_reward, measure_attention, region_masses

# ---------------------------------------------------------------- region_share

# one rollout, K = 4 image keys, T = 3 response tokens; region R = keys {0, 1}
ATTN = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0], [0.05, 0.0, 0.0, 0.15]]])
REGION = torch.tensor([[True, True, False, False]])
SHARE_CASES = [
    # I = all keys: token0 (0.2+0.2)/0.6 = 2/3; token1 has no mass → 0; token2 0.05/0.2 = 0.25
    (None, [[2 / 3, 0.0, 0.25]]),
    # I = keys {1, 2, 3} (key 0 is padding): R ∩ I = {1}; token0 0.2/0.4 = 0.5; token2 0/0.15 = 0
    ([[False, True, True, True]], [[0.5, 0.0, 0.0]]),
]


@pytest.mark.parametrize(("image_mask", "expected"), SHARE_CASES)
def test_region_share_hand_values(image_mask: list[list[bool]] | None, expected: list[list[float]]) -> None:
    mask = None if image_mask is None else torch.tensor(image_mask)
    torch.testing.assert_close(region_share(ATTN, REGION, mask), torch.tensor(expected))


def test_region_share_batch_and_bounds() -> None:
    attention = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    region = torch.rand(3, 7, generator=torch.Generator().manual_seed(1)) > 0.5
    share = region_share(attention, region)
    assert share.shape == (3, 5) and share.dtype == torch.float32
    assert ((share >= 0) & (share <= 1 + 1e-6)).all()
    # whole image as the region → share 1 for every token with mass
    torch.testing.assert_close(region_share(attention, torch.ones(3, 7, dtype=torch.bool)), torch.ones(3, 5))


def test_region_share_shape_errors() -> None:
    with pytest.raises(ValueError, match="region_mask"):
        region_share(torch.zeros(1, 2, 4), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="image_mask"):
        region_share(
            torch.zeros(1, 2, 4), torch.zeros(1, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)
        )


def test_region_area_fraction() -> None:
    region = torch.tensor([[True, True, False, False], [True, False, False, False]])
    image = torch.tensor([[True, True, True, True], [False, True, True, False]])
    # row 0: 2/4; row 1: R ∩ I is empty → 0/2
    assert region_area_fraction(region).tolist() == [0.5, 0.25]
    assert region_area_fraction(region, image).tolist() == [0.5, 0.0]


# ---------------------------------------------------------------- region_attention_reward

SHARE = torch.tensor([[0.6, 0.2, 0.9, 0.1], [0.3, 0.3, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]])
SELECTED = torch.tensor([[True, False, True, False], [True, True, True, True], [False, False, False, False]])
REWARD_CASES = [
    # plain mean over selected: (0.6+0.9)/2 = 0.75; 0.3; nothing selected → 0
    ({}, [0.75, 0.3, 0.0]),
    # area-normalised with fractions [0.1, 0.5, 0.2]: 0.75/0.1 = 7.5 → clipped to 5 → 5/5 = 1;
    # 0.3/0.5 = 0.6 → 0.6/5 = 0.12; nothing selected → 0
    ({"normalize_by_area": True, "region_fraction": torch.tensor([0.1, 0.5, 0.2])}, [1.0, 0.12, 0.0]),
    # a larger clip: 7.5/10 = 0.75; 0.6/10 = 0.06
    (
        {"normalize_by_area": True, "region_fraction": torch.tensor([0.1, 0.5, 0.2]), "max_normalized": 10.0},
        [0.75, 0.06, 0.0],
    ),
    # an empty region (fraction 0) gives 0, not inf
    ({"normalize_by_area": True, "region_fraction": torch.tensor([0.0, 0.5, 0.2])}, [0.0, 0.12, 0.0]),
    # region_fraction is ignored without normalize_by_area
    ({"region_fraction": torch.tensor([0.1, 0.5, 0.2])}, [0.75, 0.3, 0.0]),
]


@pytest.mark.parametrize(("kwargs", "expected"), REWARD_CASES)
def test_region_attention_reward_hand_values(kwargs: dict[str, object], expected: list[float]) -> None:
    reward = region_attention_reward(SHARE, SELECTED, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(reward, torch.tensor(expected))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"normalize_by_area": True}, "region_fraction"),  # normalising needs the fraction
        (
            {"normalize_by_area": True, "region_fraction": torch.ones(3), "max_normalized": 0.0},
            "max_normalized",
        ),
        ({"normalize_by_area": True, "region_fraction": torch.ones(2)}, "region_fraction"),  # wrong length
    ],
)
def test_region_attention_reward_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        region_attention_reward(SHARE, SELECTED, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- combine_rewards


def _components() -> dict[str, torch.Tensor]:
    return {
        "accuracy": torch.tensor([1.0, 0.0]),
        "format": torch.tensor([1.0, 1.0]),
        "region_attention": torch.tensor([0.4, 0.8]),
    }


COMBINE_CASES = [
    # the paper's reward sets as `rewards.weights` (the full-token ablation differs only in ρ)
    # sayo: 1·acc + 0.5·fmt + 1·attn = [1 + 0.5 + 0.4, 0 + 0.5 + 0.8]
    ({"accuracy": 1.0, "format": 0.5, "region_attention": 1.0}, [1.9, 1.3]),
    # accuracy only: [1 + 0.5, 0 + 0.5]
    ({"accuracy": 1.0, "format": 0.5, "region_attention": 0.0}, [1.5, 0.5]),
    # attention only: [0.5 + 0.4, 0.5 + 0.8]
    ({"accuracy": 0.0, "format": 0.5, "region_attention": 1.0}, [0.9, 1.3]),
]


@pytest.mark.parametrize(("weights", "expected"), COMBINE_CASES)
def test_combine_weights(weights: dict[str, float], expected: list[float]) -> None:
    total, parts = combine_rewards(_components(), weights)
    torch.testing.assert_close(total, torch.tensor(expected))
    assert set(parts) == set(REWARD_NAMES)  # zero-weight components are still returned


def test_component_without_weight_counts_zero() -> None:
    total, parts = combine_rewards(_components(), {"accuracy": 2.0})
    torch.testing.assert_close(total, torch.tensor([2.0, 0.0]))
    assert "format" in parts


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"acuracy": 1.0}, r"acuracy.*known: \['accuracy', 'format', 'region_attention'\]"),  # typo
        ({"accuracy": -1.0}, "accuracy"),  # negative
        ({"format": math.nan}, "format"),  # NaN
        ({"format": math.inf}, "format"),  # infinite
    ],
)
def test_combine_bad_weights(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        combine_rewards(_components(), weights)


def test_combine_bad_components() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine_rewards({}, {})
    with pytest.raises(ValueError, match="one length"):
        combine_rewards({"accuracy": torch.zeros(2), "format": torch.zeros(3)}, {})


# ---------------------------------------------------------------- the official reward and the forms


def _hand_official(attention: list[list[list[float]]], region: list[list[bool]], selected: list[list[bool]]):
    """tanh(log((ā_R + ε)/(ā_I + ε))) computed with plain Python, one rollout at a time."""
    out = []
    for attn, reg, sel in zip(attention, region, selected, strict=True):
        tokens = [row for row, chosen in zip(attn, sel, strict=True) if chosen]
        region_values = [a for row in tokens for a, r in zip(row, reg, strict=True) if r]
        image_values = [a for row in tokens for a in row]
        a_region = sum(region_values) / len(region_values) if region_values else 0.0
        a_image = sum(image_values) / len(image_values) if image_values else 0.0
        out.append(math.tanh(math.log((a_region + 1e-8) / (a_image + 1e-8))))
    return out


# two rollouts over K = 4 image keys; T = 3 tokens each
OFFICIAL_ATTENTION = [
    [[0.30, 0.10, 0.05, 0.05], [0.20, 0.20, 0.10, 0.00], [0.05, 0.05, 0.05, 0.05]],
    [[0.10, 0.10, 0.40, 0.20], [0.00, 0.30, 0.30, 0.10], [0.25, 0.25, 0.25, 0.25]],
]
OFFICIAL_REGION = [[True, False, False, False], [False, True, True, False]]  # |R| = 1 and 2 (uneven)
OFFICIAL_SELECTED = [[True, True, False], [False, False, False]]  # the second rollout selects nothing


def test_official_reward_matches_the_hand_computation() -> None:
    expected = _hand_official(OFFICIAL_ATTENTION, OFFICIAL_REGION, OFFICIAL_SELECTED)
    # rollout 0: ā_R = (0.30 + 0.20)/2 = 0.25, ā_I = (0.5 + 0.5)/8 = 0.125 -> tanh(log 2) = 0.6
    assert expected[0] == pytest.approx(0.6, abs=1e-6) and expected[1] == 0.0  # nothing selected -> 0
    got = official_attention_reward(
        torch.tensor(OFFICIAL_ATTENTION, dtype=torch.float64),
        torch.tensor(OFFICIAL_REGION),
        torch.tensor(OFFICIAL_SELECTED),
    )
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_official_reward_of_uniform_and_region_only_attention() -> None:
    region = torch.tensor([[True, True, False, False, False, False, False, False]])  # |R| = 2 of |I| = 8
    selected = torch.ones(1, 5, dtype=torch.bool)
    uniform = torch.full((1, 5, 8), 1 / 8, dtype=torch.float64)
    torch.testing.assert_close(
        official_attention_reward(uniform, region, selected), torch.zeros(1, dtype=torch.float64)
    )
    focused = torch.zeros(1, 5, 8, dtype=torch.float64)
    focused[..., :2] = 0.5
    torch.testing.assert_close(
        official_attention_reward(focused, region, selected),
        torch.tensor([math.tanh(math.log(4))], dtype=torch.float64),
    )


def test_official_reward_ignores_keys_outside_the_image_mask() -> None:
    attention = torch.tensor(OFFICIAL_ATTENTION, dtype=torch.float64)
    image = torch.tensor([[True, True, True, False], [True, True, True, True]])  # a padding key in row 0
    padded = attention.clone()
    padded[0, :, 3] = 9.0  # whatever a padding key holds must not count
    region = torch.tensor(OFFICIAL_REGION)
    selected = torch.tensor([[True, True, False], [True, False, True]])
    a_image = (attention[0, :2, :3].sum() / 6).item()
    a_region = (attention[0, :2, 0].sum() / 2).item()
    assert official_attention_reward(padded, region, selected, image)[0].item() == pytest.approx(
        math.tanh(math.log((a_region + 1e-8) / (a_image + 1e-8)))
    )


def _tlr(per_region_key: float, per_image_key: float) -> float:
    return math.tanh(math.log((per_region_key + 1e-8) / (per_image_key + 1e-8)))


@pytest.mark.parametrize(
    ("form", "aggregation", "expected"),
    [
        # share, mean of ratios: rollout 0 tokens 0, 1: 0.3/0.5 and 0.2/0.5 -> 0.5
        ("share", "mean_of_ratios", [0.5, 0.0]),
        # share, ratio of means: (0.3 + 0.2) / (0.5 + 0.5) = 0.5
        ("share", "ratio_of_means", [0.5, 0.0]),
        # area-normalised: 0.5 / (1/4) = 2, clipped at 5, / 5 = 0.4
        ("area_normalized", "mean_of_ratios", [0.4, 0.0]),
        # per token: tanh(log((0.3/1 + ε)/(0.5/4 + ε))), tanh(log((0.2/1 + ε)/(0.5/4 + ε))), averaged
        ("tanh_log_ratio", "mean_of_ratios", [(_tlr(0.3, 0.125) + _tlr(0.2, 0.125)) / 2, 0.0]),
        # ā_R = 0.25, ā_I = 0.125: the official reward (rollout 1 selects nothing: tanh(log(ε/ε)) = 0)
        ("tanh_log_ratio", "ratio_of_means", [_tlr(0.25, 0.125), 0.0]),
    ],
)
def test_reward_forms_by_hand(form: str, aggregation: str, expected: list[float]) -> None:
    masses = region_masses(
        torch.tensor(OFFICIAL_ATTENTION, dtype=torch.float64), torch.tensor(OFFICIAL_REGION)
    )
    reward = attention_reward(masses, torch.tensor(OFFICIAL_SELECTED), form=form, aggregation=aggregation)
    torch.testing.assert_close(reward, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_share_form_equals_the_mean_region_share() -> None:
    """The default form is the region share averaged over the selected tokens (the earlier reward)."""
    generator = torch.Generator().manual_seed(0)
    attention = torch.rand(3, 6, 10, generator=generator, dtype=torch.float64)
    region = torch.rand(3, 10, generator=generator) < 0.3
    selected = torch.rand(3, 6, generator=generator) < 0.5
    masses = region_masses(attention, region)
    torch.testing.assert_close(
        attention_reward(masses, selected).float(),
        region_attention_reward(region_share(attention, region), selected),
    )


def test_measured_lift_is_share_minus_area_fraction() -> None:
    region = torch.tensor([[True, True, False, False], [False, False, False, False]])  # no region in row 1
    attention = torch.tensor([[[0.4, 0.2, 0.2, 0.2]], [[0.25, 0.25, 0.25, 0.25]]], dtype=torch.float64)
    measured = measure_attention(
        region_masses(attention, region),
        torch.ones(2, 1, dtype=torch.bool),
        form="tanh_log_ratio",
        aggregation="ratio_of_means",
        max_normalized=5.0,
    )
    torch.testing.assert_close(measured.share, torch.tensor([0.6, 0.0], dtype=torch.float64))
    torch.testing.assert_close(measured.lift, torch.tensor([0.1, 0.0], dtype=torch.float64))
    assert measured.reward[1] == 0.0  # without a region the reward is 0, not tanh(log ε/ā_I) ≈ -1
