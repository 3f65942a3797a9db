"""Checks of sayo.rewards.format on hand-made completions."""

from __future__ import annotations

import pytest
import torch

from sayo.rewards import format_reward

FORMAT_CASES = [
    # (completion, reward with require_think, reward without)
    ("<think>the square is red</think><answer>red</answer>", 1.0, 1.0),  # the template
    ("\n <think>a\nb</think>\n\n<answer> 12.5 </answer>\n", 1.0, 1.0),  # whitespace around and inside
    ("<think>x</think><answer>red</answer><|im_end|>", 1.0, 1.0),  # a chat end token after is fine
    ("<think></think><answer>red</answer>", 1.0, 1.0),  # empty reasoning is allowed
    ("<answer>red</answer>", 0.0, 1.0),  # missing think
    ("I think it is red. <answer>red</answer>", 0.0, 1.0),  # free reasoning before a lone answer
    ("<think>x</think><answer>  </answer>", 0.0, 0.0),  # empty answer
    ("<think>x</think><answer>1</answer><answer>2</answer>", 0.0, 0.0),  # two answers
    ("<think>x</think><answer>red</answer> because it is warm", 0.0, 0.0),  # trailing junk
    ("<think>x</think>so<answer>red</answer>", 0.0, 1.0),  # text between think and answer
    ("<answer>red</answer><think>x</think>", 0.0, 0.0),  # wrong order / text after the answer
    ("<think>x</think><think>y</think><answer>red</answer>", 0.0, 1.0),  # two thinks
    ("<think>x<answer>red</answer>", 0.0, 1.0),  # unclosed think
    ("<think>x</think><answer>red", 0.0, 0.0),  # unclosed answer
    ("<think>x</think><ANSWER>red</ANSWER>", 0.0, 0.0),  # tags are case-sensitive
    ("", 0.0, 0.0),  # empty completion
]


@pytest.mark.parametrize(("completion", "with_think", "without_think"), FORMAT_CASES)
def test_format_reward_cases(completion: str, with_think: float, without_think: float) -> None:
    assert format_reward([completion]).item() == with_think
    assert format_reward([completion], require_think=False).item() == without_think


def test_format_reward_batch_shape_and_dtype() -> None:
    reward = format_reward([case[0] for case in FORMAT_CASES])
    assert reward.shape == (len(FORMAT_CASES),) and reward.dtype == torch.float32
    assert reward.tolist() == [case[1] for case in FORMAT_CASES]
    assert format_reward([]).shape == (0,)


# The authors' answer_format_reward (Cratileo/Sayo train/reward/format_rewards.py) computed by hand:
# (completion, length in tokens, reward). The last <answer> must be closed; the length factor is
# 0.6·100/L above 100 tokens, 0.6·L/60 below 60 tokens, 1 in between.
OFFICIAL_CASES = [
    ("<think>x</think><answer>red</answer>", 80, 1.0),
    ("reasoning without tags, then <answer>red</answer> and more text", 80, 1.0),  # anything around
    ("<answer></answer>", 80, 1.0),  # an empty answer counts
    ("<answer>1</answer> then <answer>2</answer>", 80, 1.0),  # the last one is closed
    ("<answer>1</answer> then <answer>2", 80, 0.0),  # the last one is open
    ("</answer><answer>", 80, 0.0),  # closed before it opens
    ("<answer>red", 80, 0.0),
    ("<ANSWER>red</ANSWER>", 80, 0.0),  # case-sensitive
    ("", 80, 0.0),
    ("<answer>red</answer>", 60, 1.0),  # the band's edges
    ("<answer>red</answer>", 100, 1.0),
    ("<answer>red</answer>", 101, 0.6 * 100 / 101),  # 0.594059…
    ("<answer>red</answer>", 110, 0.6 * 100 / 110),  # 0.545454… (max_completion_length 110)
    ("<answer>red</answer>", 200, 0.3),
    ("<answer>red</answer>", 59, 0.59),  # 0.6·59/60
    ("<answer>red</answer>", 30, 0.3),
    ("<answer>red</answer>", 6, 0.06),
    ("<answer>red", 110, 0.0),  # no answer: 0 whatever the length
]


@pytest.mark.parametrize(("completion", "length", "expected"), OFFICIAL_CASES)
def test_official_format_reward_matches_the_hand_table(completion: str, length: int, expected: float) -> None:
    from sayo.rewards.format import official_format_reward

    reward = official_format_reward([completion], [length])
    assert reward.dtype == torch.float32
    assert reward.item() == pytest.approx(expected, rel=1e-6)


def test_official_format_reward_batch_and_lengths_as_tensor() -> None:
    from sayo.rewards.format import format_rewards

    texts = [case[0] for case in OFFICIAL_CASES]
    lengths = torch.tensor([case[1] for case in OFFICIAL_CASES])
    expected = torch.tensor([case[2] for case in OFFICIAL_CASES])
    torch.testing.assert_close(format_rewards("official", texts, lengths), expected)
    template = format_rewards("template", texts, lengths)  # sayo's form ignores the lengths
    assert template.tolist() == format_reward(texts).tolist()
    with pytest.raises(ValueError, match="2 completions but 1 lengths"):
        format_rewards("official", texts[:2], [80])
    with pytest.raises(ValueError, match=r"rewards\.format\.form='x'"):
        format_rewards("x", texts, lengths)


def test_official_recipes_use_the_official_format_reward() -> None:
    from sayo.recipe import load_recipe

    for name in ("sayo_official_qwen3_vl_8b", "tiny_official"):
        assert load_recipe(name).rewards.format.form == "official", name
    assert load_recipe("tiny").rewards.format.form == "template"


def test_grpo_rewards_use_the_recipes_format_form_with_token_lengths() -> None:
    """`compute_rewards` scores format in `rewards.format.form`, L = each completion's mask sum."""
    from types import SimpleNamespace

    from sayo.data.schema import Sample
    from sayo.rewards.config import FormatConfig, RewardConfig
    from sayo.train.grpo_step import compute_rewards

    texts = ["<answer>red</answer>", "<think>x</think><answer>red</answer>", "<answer>red"]
    mask = torch.zeros(3, 120, dtype=torch.bool)
    for row, length in enumerate((30, 110, 80)):
        mask[row, :length] = True
    sample = Sample(id="s", image="s.png", question="q?", answer="red")
    chunk = SimpleNamespace(
        sampled=SimpleNamespace(prompt=SimpleNamespace(samples=[sample] * 3), texts=texts, mask=mask),
        attention=None,
        rows=3,
    )
    official = compute_rewards([chunk], RewardConfig(format=FormatConfig(form="official")))
    torch.testing.assert_close(official.components["format"], torch.tensor([0.3, 0.6 * 100 / 110, 0.0]))
    template = compute_rewards([chunk], RewardConfig())
    assert template.components["format"].tolist() == [0.0, 1.0, 0.0]
