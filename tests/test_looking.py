"""The looking measures (`sayo.looking`): hand-computed on small tensors, and the answer step read
from the generated tokens with the tiny tokenizer."""

from __future__ import annotations

import math

import pytest
import torch

from sayo.looking import answer_steps, looking_measures

NAN = float("nan")


def _case() -> dict[str, torch.Tensor]:
    # 2 rollouts, 4 response steps, 4 image keys; the region is key 0 (area fraction 1/4)
    attention = torch.tensor(
        [
            [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]],
            [[0.1, 0.1, 0.1, 0.7], [0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )  # [B=2, T=4, K=4]
    return {
        "share": attention[..., 0] / attention.sum(-1).clamp(min=1e-12),  # [2, 4]
        "attention": attention,
        "region_keys": torch.tensor([[True, False, False, False]] * 2),
        "image_keys": torch.ones(2, 4, dtype=torch.bool),
        "mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "answer_step": torch.tensor([2, -1]),
    }


def test_measures_by_hand() -> None:
    c = _case()
    look = looking_measures(**c, bins=2)
    # row 0: shares 0.7, 0.1, 0.4, 0.25 → lifts 0.45, −0.15, 0.15, 0.0
    assert look.all_lift[0].item() == pytest.approx((0.45 - 0.15 + 0.15 + 0.0) / 4)
    assert look.answer_lift[0].item() == pytest.approx(0.15)  # step 2 produces the first answer token
    # peaks: key 0, key 1, key 0, key 0 (a tie resolves to the first key) → 3 of 4 steps in the region
    assert look.peak_in_region[0].item() == pytest.approx(0.75)
    assert look.position_lift[0].tolist() == pytest.approx([0.15, 0.075])  # first half, second half
    assert look.token_lift[0].tolist() == pytest.approx([0.45, -0.15, 0.15, 0.0])  # each step's own
    # row 1: two valid steps (shares 0.1, 0.9), no answer tag
    assert look.all_lift[1].item() == pytest.approx(((0.1 - 0.25) + (0.9 - 0.25)) / 2)
    assert math.isnan(look.answer_lift[1].item())
    assert look.peak_in_region[1].item() == pytest.approx(0.5)
    assert look.position_lift[1].tolist() == pytest.approx([-0.15, 0.65])
    assert look.token_lift[1, :2].tolist() == pytest.approx([-0.15, 0.65])
    assert look.token_lift[1, 2:].isnan().all()  # padding


def test_padding_and_missing_image_keys_are_ignored() -> None:
    c = _case()
    c["image_keys"] = torch.tensor([[True, True, True, False], [True, True, True, True]])
    c["attention"][0, :, 3] = 5.0  # a key outside the image never wins the peak
    look = looking_measures(**c)
    assert look.peak_in_region[0].item() == pytest.approx(0.75)
    empty = {**c, "mask": torch.zeros(2, 4, dtype=torch.long)}
    look = looking_measures(**empty)
    assert math.isnan(look.all_lift[0].item()) and math.isnan(look.peak_in_region[1].item())
    assert math.isnan(look.answer_lift[0].item())  # the answer step is padding


def test_answer_steps_from_generated_tokens(tiny) -> None:
    _, processor = tiny
    tokenizer = processor.tokenizer
    texts = ["<think> red blue.</think><answer> blue</answer>", "<think> red</think> no tag", "<answer>"]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, encoded)) + 2
    ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded])
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded])
    steps = answer_steps(tokenizer, ids, mask).tolist()
    first = steps[0]
    assert tokenizer.decode(encoded[0][:first]).endswith("<answer>")
    assert tokenizer.decode(encoded[0][first : first + 1]).strip() == "blue"
    assert steps[1:] == [-1, -1]  # no tag; a tag with nothing after it
