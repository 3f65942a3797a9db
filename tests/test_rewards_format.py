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
