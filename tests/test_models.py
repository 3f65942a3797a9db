"""The tiny policy: deterministic, offline, and loadable through the same path as real checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from sayo.models import TinySpec, build_tiny, load_policy, save_tiny, tiny_path
from sayo.models.tokenizer import SPECIAL_TOKENS, TEMPLATE_TOKENS, build_tokenizer


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_is_deterministic_per_seed(tiny):
    model, _ = tiny
    again, _ = build_tiny(TinySpec(seed=0))
    other, _ = build_tiny(TinySpec(seed=1))
    assert _same_weights(model, again)
    assert not _same_weights(model, other)


def test_tiny_is_a_few_million_parameters(tiny):
    model, _ = tiny
    n = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < n < 5e6, n
    assert model.config.model_type == "qwen2_5_vl"


def test_tokenizer_is_deterministic_and_covers_any_text():
    first, second = build_tokenizer(), build_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    for text in ["héllo 世界 1,234.5%", "<think>red</think><answer>7</answer>", "tabs\tand\nnewlines"]:
        assert first.decode(first(text)["input_ids"]) == text
    for token in (*SPECIAL_TOKENS, *TEMPLATE_TOKENS):  # each is one id, never split
        assert len(first(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_chat_template_matches_qwen_layout(tiny):
    _, processor = tiny
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_processor_expands_image_tokens_to_the_grid(tiny, two_prompt_batch):
    model, _ = tiny
    batch, _, _ = two_prompt_batch
    per_row = (batch["input_ids"] == model.config.image_token_id).sum(dim=1)
    expected = batch["image_grid_thw"].prod(dim=1) // 4
    assert torch.equal(per_row, expected)


def test_saved_model_loads_through_load_policy(tmp_path, tiny, two_prompt_batch):
    model, _ = tiny
    path = save_tiny(tmp_path / "tiny")
    assert (
        json.loads((path / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    )
    loaded, loaded_processor = load_policy(path, device="cpu")
    assert _same_weights(model, loaded)
    batch, images, texts = two_prompt_batch
    again = loaded_processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert torch.equal(again["pixel_values"], batch["pixel_values"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**again).logits, model(**batch).logits, rtol=1e-5, atol=1e-5)


def test_name_tiny_resolves_to_a_cached_checkpoint(tiny):
    path = tiny_path()
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    loaded, _ = load_policy("tiny", device="cpu")
    assert _same_weights(tiny[0], loaded)


def test_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(OSError, match="no-such-model"):
        load_policy(tmp_path / "no-such-model", device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("text_heads", 5),  # 192 is not divisible by 5
        ("text_kv_heads", 4),  # 6 heads are not divisible by 4 KV heads
        ("mrope_section", [4, 4, 4]),  # must sum to head_dim/2 = 16
        ("min_pixels", 0),  # resize bounds must be positive
    ],
)
def test_bad_spec_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TinySpec(**{field: value})
