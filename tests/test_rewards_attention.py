"""Hand-computed checks of sayo.rewards.attention and of the reward combination (sayo.rewards.combine).

The combination tests live here because the brief assigned no separate test file for combine.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from sayo.rewards import (
    PRESET_ENTROPY_RATIO,
    PRESETS,
    REWARD_NAMES,
    combine_rewards,
    region_area_fraction,
    region_attention_reward,
    region_share,
)

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
    # sayo: 1·acc + 0.5·fmt + 1·attn = [1 + 0.5 + 0.4, 0 + 0.5 + 0.8]
    ("sayo", [1.9, 1.3]),
    # accuracy only: [1 + 0.5, 0 + 0.5]
    ("accuracy_only", [1.5, 0.5]),
    # attention only: [0.5 + 0.4, 0.5 + 0.8]
    ("attention_only", [0.9, 1.3]),
    # full token: same weights as sayo
    ("full_token", [1.9, 1.3]),
]


@pytest.mark.parametrize(("preset", "expected"), COMBINE_CASES)
def test_combine_presets(preset: str, expected: list[float]) -> None:
    total, parts = combine_rewards(_components(), PRESETS[preset])
    torch.testing.assert_close(total, torch.tensor(expected))
    assert set(parts) == set(REWARD_NAMES)  # zero-weight components are still returned


def test_presets_and_ratios_cover_the_same_names() -> None:
    assert set(PRESETS) == set(PRESET_ENTROPY_RATIO)
    assert PRESET_ENTROPY_RATIO["full_token"] == 1.0 and PRESET_ENTROPY_RATIO["sayo"] == 0.2
    assert all(set(weights) == set(REWARD_NAMES) for weights in PRESETS.values())


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
