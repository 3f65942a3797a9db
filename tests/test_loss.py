"""Hand-computed checks of sayo.loss: advantages, clipped loss per aggregation, KL, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from sayo.loss import advantage_parts, combined_advantages, flat_group_metrics, group_advantages, policy_loss

# ---------------------------------------------------------------- group_advantages

R = torch.tensor([1.0, 0.0, 3.0, 1.0])  # two groups of G=2: [1, 0] and [3, 1]
# group std (unbiased): [1,0] → sqrt(0.5) = 0.7071068; [3,1] → sqrt(2) = 1.4142136
# batch std of [1,0,3,1]: mean 1.25, squared deviations 4.75 / 3 = 1.5833333 → 1.2583057
ADVANTAGE_CASES = [
    # centred only: group means 0.5 and 2.0
    ("none", [0.5, -0.5, 1.0, -1.0]),
    # each group divided by its own std + 1e-4
    ("group", [0.5 / 0.7072068, -0.5 / 0.7072068, 1.0 / 1.4143136, -1.0 / 1.4143136]),
    # all divided by the batch std + 1e-4
    ("batch", [0.5 / 1.2584057, -0.5 / 1.2584057, 1.0 / 1.2584057, -1.0 / 1.2584057]),
]


@pytest.mark.parametrize(("scale", "expected"), ADVANTAGE_CASES)
def test_group_advantages_hand_values(scale: str, expected: list[float]) -> None:
    torch.testing.assert_close(group_advantages(R, 2, scale), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_group_advantages_zero_variance_group_is_zero() -> None:
    # group [2, 2] has std 0: centred values are 0, so the advantage is 0 (not NaN)
    adv = group_advantages(torch.tensor([2.0, 2.0, 0.0, 1.0]), 2, "group")
    assert adv[:2].tolist() == [0.0, 0.0]
    assert torch.isfinite(adv).all()


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_size_one_gives_zero_advantages(scale: str) -> None:
    # one rollout per prompt: no baseline to compare with, defined as 0 (unbiased std would be NaN)
    adv = group_advantages(torch.tensor([1.0, 5.0, -2.0]), 1, scale)
    assert adv.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("batch", "group_size"),
    [
        (6, 4),  # 6 % 4 != 0
        (4, 0),  # group size below 1
        (4, -2),  # negative group size
    ],
)
def test_bad_group_size_names_both_values(batch: int, group_size: int) -> None:
    with pytest.raises(ValueError, match=rf"group_size={group_size}.*B={batch}"):
        group_advantages(torch.zeros(batch), group_size)


def test_unknown_scale_lists_allowed() -> None:
    with pytest.raises(ValueError, match=r"'std'.*'group', 'batch', 'none'"):
        group_advantages(torch.zeros(4), 2, "std")


# ---------------------------------------------------------------- policy_loss values

# ratios r = exp(logp - old): seq0 [1.1, 1.5, 3.0(masked)], seq1 [1.1, 0.7, 0.9]; A = [+1, -2]; ε = 0.2
RATIOS = torch.tensor([[1.1, 1.5, 3.0], [1.1, 0.7, 0.9]])
MASK = torch.tensor([[True, True, False], [True, True, True]])
ADV = torch.tensor([1.0, -2.0])
OLD = torch.full((2, 3), -1.0)
# per-token −min(r·A, clip(r, 0.8, 1.2)·A):
#   seq0: r=1.1 → −1.1; r=1.5 → −min(1.5, 1.2) = −1.2            (sum −2.3, 2 tokens)
#   seq1: r=1.1 → −min(−2.2, −2.2) = 2.2; r=0.7 → −min(−1.4, −1.6) = 1.6; r=0.9 → 1.8  (sum 5.6, 3 tokens)
LOSS_CASES = [
    # mean per sequence, then over sequences: (−2.3/2 + 5.6/3) / 2 = (−1.15 + 1.8666667) / 2
    ("grpo", None, (-1.15 + 5.6 / 3) / 2),
    # sum over valid tokens / valid tokens: 3.3 / 5
    ("bnpo", None, 0.66),
    # identical to bnpo in a single process
    ("dapo", None, 0.66),
    # sum / (B · T) = 3.3 / (2 · 3)
    ("dr_grpo", None, 0.55),
    # sum / (B · max_completion_length) = 3.3 / (2 · 4)
    ("dr_grpo", 4, 0.4125),
]


@pytest.mark.parametrize(("loss_type", "max_len", "expected"), LOSS_CASES)
def test_policy_loss_hand_values(loss_type: str, max_len: int | None, expected: float) -> None:
    logps = OLD + RATIOS.log()
    loss, _ = policy_loss(logps, OLD, ADV, MASK, loss_type=loss_type, max_completion_length=max_len)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_policy_loss_stats_hand_values() -> None:
    _, stats = policy_loss(OLD + RATIOS.log(), OLD, ADV, MASK)
    # 5 valid tokens; low clip: A<0 and r<0.8 → seq1 r=0.7 (not 0.9); high clip: A>0 and r>1.2 → seq0 r=1.5 (not 1.1)
    assert stats["clip_fraction_low"].item() == pytest.approx(0.2)
    assert stats["clip_fraction_high"].item() == pytest.approx(0.2)
    assert stats["clip_fraction"].item() == pytest.approx(0.4)
    # (1.1 + 1.5 + 1.1 + 0.7 + 0.9) / 5; the masked r=3.0 is ignored in mean and max
    assert stats["ratio_mean"].item() == pytest.approx(1.06, rel=1e-5)
    assert stats["ratio_max"].item() == pytest.approx(1.5, rel=1e-5)
    assert stats["kl"].item() == 0.0  # no reference given
    assert all(not value.requires_grad and value.dim() == 0 for value in stats.values())


@pytest.mark.parametrize(
    ("ratio", "advantage", "low", "high"),
    [
        (0.5, 1.0, 0.0, 0.0),  # below the bound but A>0: the unclipped term is used, not clipped
        (1.5, -1.0, 0.0, 0.0),  # above the bound but A<0: not clipped
        (0.5, -1.0, 1.0, 0.0),  # below 1−ε_low with A<0: low clip
        (1.5, 1.0, 0.0, 1.0),  # above 1+ε_high with A>0: high clip
        (1.5, 0.0, 0.0, 0.0),  # zero advantage never counts as clipped
    ],
)
def test_clip_fractions_follow_advantage_sign(
    ratio: float, advantage: float, low: float, high: float
) -> None:
    logps = torch.full((1, 1), math.log(ratio))
    _, stats = policy_loss(
        logps, torch.zeros(1, 1), torch.tensor([advantage]), torch.ones(1, 1, dtype=torch.bool)
    )
    assert (stats["clip_fraction_low"].item(), stats["clip_fraction_high"].item()) == (low, high)
    assert stats["clip_fraction"].item() == low + high


def test_kl_term_hand_value() -> None:
    # ratio 1 and A = 0, so the loss is β · mean k3. ref − logp = log 2 and log 4:
    #   k3 = 2 − log 2 − 1 = 0.3068528 and 4 − log 4 − 1 = 1.6137056; mean = 0.9602792
    logps = torch.log(torch.tensor([[0.25, 0.125]]))
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = policy_loss(logps, logps, torch.zeros(1), mask, ref, beta=0.1)
    assert loss.item() == pytest.approx(0.09602792, rel=1e-5)
    assert stats["kl"].item() == pytest.approx(0.9602792, rel=1e-5)
    # with β = 0 the KL is still reported but not added
    loss0, stats0 = policy_loss(logps, logps, torch.zeros(1), mask, ref, beta=0.0)
    assert loss0.item() == 0.0
    assert stats0["kl"].item() == pytest.approx(0.9602792, rel=1e-5)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    ("ratio", "advantage", "zero_grad"),
    [
        (1.5, 1.0, True),  # above 1+ε_high with A>0: clipped branch, no gradient
        (0.5, -1.0, True),  # below 1−ε_low with A<0: clipped branch, no gradient
        (1.1, 1.0, False),  # inside the bounds: gradient −r·A
        (0.9, -1.0, False),  # inside the bounds, negative advantage
        (1.5, -1.0, False),  # above the bound but A<0: the unclipped term is the minimum
        (0.5, 1.0, False),  # below the bound but A>0: the unclipped term is the minimum
    ],
)
def test_clipping_gradients(ratio: float, advantage: float, zero_grad: bool) -> None:
    old = torch.zeros(1, 1)
    logps = torch.full((1, 1), math.log(ratio), requires_grad=True)
    loss, _ = policy_loss(logps, old, torch.tensor([advantage]), torch.ones(1, 1, dtype=torch.bool))
    loss.backward()
    assert logps.grad is not None
    if zero_grad:
        assert logps.grad.item() == 0.0
    else:
        # d/dlogp of −r·A is −r·A
        assert logps.grad.item() == pytest.approx(-ratio * advantage, rel=1e-5)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_masked_tokens_get_zero_finite_gradients(loss_type: str) -> None:
    # garbage log-probs at masked positions (exp(100) overflows float32) must not leak
    logps = torch.tensor([[-1.0, 100.0], [-0.5, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.2, -50.0], [-0.4, -1.0]])
    ref = torch.tensor([[-1.1, -90.0], [-0.6, -1.5]])
    mask = torch.tensor([[True, False], [True, True]])
    loss, stats = policy_loss(
        logps, old, torch.tensor([1.0, -1.0]), mask, ref, beta=0.04, loss_type=loss_type
    )
    loss.backward()
    assert logps.grad is not None
    assert torch.isfinite(loss) and torch.isfinite(logps.grad).all()
    assert logps.grad[0, 1].item() == 0.0
    assert (logps.grad[mask] != 0).all()
    assert all(torch.isfinite(value) for value in stats.values())


def test_all_masked_gives_zero_loss() -> None:
    logps = torch.zeros(2, 3, requires_grad=True)
    loss, stats = policy_loss(logps, logps.detach(), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    assert stats["ratio_max"].item() == 0.0


# ---------------------------------------------------------------- errors


def test_beta_without_reference_raises() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logps"):
        policy_loss(x, x, torch.zeros(1), torch.ones(1, 2, dtype=torch.bool), beta=0.04)


def test_unknown_loss_type_lists_allowed() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"'ppo'.*'grpo', 'bnpo', 'dapo', 'dr_grpo'"):
        policy_loss(x, x, torch.zeros(1), torch.ones(1, 2, dtype=torch.bool), loss_type="ppo")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"advantages": torch.zeros(3)}, "advantages"),  # wrong batch size
        ({"old_logps": torch.zeros(1, 3)}, "old_logps"),  # wrong length
        ({"beta": -0.1, "ref_logps": torch.zeros(1, 2)}, "beta"),  # negative β
        ({"epsilon_low": 1.0}, "epsilon_low"),  # lower bound would be 0
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "logps": torch.zeros(1, 2),
        "old_logps": torch.zeros(1, 2),
        "advantages": torch.zeros(1),
        "mask": torch.ones(1, 2, dtype=torch.bool),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        policy_loss(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- noise-robust advantages


def test_std_floor_keeps_noise_from_becoming_unit_advantages():
    # one group whose rewards tie up to 0.0004 (accuracy and format equal, attention noise)
    rewards = torch.tensor([1.5000, 1.5004, 1.4998, 1.5002])
    plain = group_advantages(rewards, 4)  # ~unit advantages out of 0.0004 of noise
    assert float(plain.abs().max()) > 0.5
    floored = group_advantages(rewards, 4, std_floor=0.1)  # centred / (max(std, 0.1) + 1e-4)
    centred = rewards - rewards.mean()
    torch.testing.assert_close(floored, centred / (0.1 + 1e-4))
    assert float(floored.abs().max()) < 0.005
    wide = torch.tensor([0.0, 1.0, 0.0, 1.0])  # a real signal (std 0.577) is untouched by a 0.1 floor
    torch.testing.assert_close(group_advantages(wide, 4, std_floor=0.1), group_advantages(wide, 4))
    with pytest.raises(ValueError, match="std_floor"):
        group_advantages(rewards, 4, std_floor=-1.0)


def test_combined_advantages_normalise_each_component_then_weight():
    accuracy = torch.tensor([1.0, 0.0, 1.0, 1.0])  # mean 0.75, std 0.5
    attention = torch.tensor([0.2, 0.4, 0.2, 0.2])  # mean 0.25, std 0.1
    components = {"accuracy": accuracy, "region_attention": attention, "format": torch.ones(4)}
    weights = {"accuracy": 1.0, "region_attention": 0.5}  # format has no weight: adds nothing
    expected = (accuracy - 0.75) / (0.5 + 1e-4) + 0.5 * (attention - 0.25) / (0.1 + 1e-4)
    got = combined_advantages(components, weights, group_size=4)
    torch.testing.assert_close(got, expected)
    # the total's own normalisation would let accuracy's larger scale drown the attention term
    total = accuracy + 0.5 * attention
    assert not torch.allclose(group_advantages(total, 4), got)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("per_component", [False, True])
def test_advantage_parts_sum_to_the_trainers_advantages(scale: str, per_component: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    components = {
        "accuracy": torch.randint(0, 2, (8,), generator=generator).double(),
        "region_attention": torch.rand(8, generator=generator, dtype=torch.float64) * 0.1,
        "format": torch.ones(8, dtype=torch.float64),
    }
    weights = {"accuracy": 1.0, "region_attention": 0.5, "format": 0.25}
    parts = advantage_parts(components, weights, 4, scale, std_floor=0.0, per_component=per_component)
    if per_component:
        want = combined_advantages(components, weights, 4, scale)
    else:
        total = sum(w * components[name] for name, w in weights.items())
        want = group_advantages(total, 4, scale)
    # both sides centre float32 rewards in a different order: tolerance scaled to the values
    torch.testing.assert_close(sum(parts.values()), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert float(parts["format"].abs().max()) == 0.0  # constant in every group: no part of any advantage


def test_the_recipe_offers_the_loss_choices() -> None:
    """sayo.train.config spells the loss's choices out (reading a recipe must not import torch)."""
    from sayo import loss
    from sayo.train import config

    assert config.LOSS_TYPES == loss.LOSS_TYPES
    assert config.ADVANTAGE_SCALES == loss.ADVANTAGE_SCALES


def test_flat_group_metrics_by_hand() -> None:
    """Two groups of 2: the first ties on accuracy (only attention ranks it), the second does not."""
    components = {
        "accuracy": torch.tensor([1.0, 1.0, 1.0, 0.0]),
        "region_attention": torch.tensor([0.2, 0.6, 0.3, 0.3]),
    }
    weights = {"accuracy": 1.0, "region_attention": 0.5}
    out = flat_group_metrics(components["accuracy"], advantage_parts(components, weights, 2, "none"), 2)
    # centred parts (scale none, the total's scheme): accuracy 0, 0, +0.5, −0.5; attention 0.5·(∓0.2), 0, 0
    assert out["groups/accuracy_flat"] == 0.5
    assert out["advantage_share/accuracy"] == pytest.approx(1.0 / 1.2)
    assert out["advantage_share/region_attention"] == pytest.approx(0.2 / 1.2)
    assert out["advantage_share_flat/region_attention"] == pytest.approx(1.0)
    assert out["advantage_share_flat/accuracy"] == 0.0
    # no flat group: no flat shares; no accuracy term: nothing
    spread = {**components, "accuracy": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    parts = advantage_parts(spread, weights, 2, "group", per_component=True)
    out = flat_group_metrics(spread["accuracy"], parts, 2)
    assert out["groups/accuracy_flat"] == 0.0 and not any(k.startswith("advantage_share_flat") for k in out)
    assert flat_group_metrics(None, {"format": torch.zeros(4)}, 2) == {}  # the recipe has no accuracy term
