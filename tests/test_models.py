"""The tiny policies (Qwen2.5-VL `tiny` and `tiny-qwen3-vl`): deterministic, offline, and loadable
through the same path as real checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SPECS, as_float64, assert_equivalent

from sayo.models import TinyQwen3VLSpec, TinySpec, build_tiny, load_policy, save_tiny, tiny_path
from sayo.models.processor import ImageOnlyQwen2_5_VLProcessor, ImageOnlyQwen3VLProcessor
from sayo.models.tokenizer import SPECIAL_TOKENS, TEMPLATE_TOKENS, build_tokenizer
from sayo.regions import VisionGeometry

MODEL_TYPES = {"tiny": "qwen2_5_vl", "tiny-qwen3-vl": "qwen3_vl"}
PROCESSORS = {"tiny": "Qwen2_5_VLProcessor", "tiny-qwen3-vl": "Qwen3VLProcessor"}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_is_deterministic_per_seed(policy, arch):
    model, _ = policy
    spec = SPECS[arch]
    again, _ = build_tiny(spec(seed=0))
    other, _ = build_tiny(spec(seed=1))
    assert _same_weights(model, again)
    assert not _same_weights(model, other)


def test_tiny_is_a_few_million_parameters(policy, arch):
    model, _ = policy
    n = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < n < 5e6, n
    assert model.config.model_type == MODEL_TYPES[arch]
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        192,
        4,
        6,
        2,
    )


def test_tiny_qwen3_vl_has_qwen3_vl_geometry(policy, arch):
    """16-px patches merged 2 × 2 (32-px cells) in the processor and the tower, DeepStack levels, and
    q/k norms in every decoder layer; the Qwen2.5-VL tiny keeps 14-px patches."""
    model, processor = policy
    geometry = VisionGeometry.of(processor)
    vision = model.config.vision_config
    assert (geometry.patch_size, geometry.merge_size) == (vision.patch_size, vision.spatial_merge_size)
    if arch == "tiny":
        assert geometry.cell == 28 and isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
        return
    assert geometry.cell == 32 and isinstance(processor, ImageOnlyQwen3VLProcessor)
    assert list(vision.deepstack_visual_indexes) == [0, 1]
    assert all(hasattr(layer.self_attn, "q_norm") for layer in model.model.language_model.layers)


def test_tokenizer_is_deterministic_and_covers_any_text():
    first, second = build_tokenizer(), build_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    for text in ["héllo 世界 1,234.5%", "<think>red</think><answer>7</answer>", "tabs\tand\nnewlines"]:
        assert first.decode(first(text)["input_ids"]) == text
    for token in (*SPECIAL_TOKENS, *TEMPLATE_TOKENS):  # each is one id, never split
        assert len(first(token, add_special_tokens=False)["input_ids"]) == 1, token


QWEN2_5_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
)
QWEN3_VL_PROMPT = (  # Qwen3-VL writes no default system turn
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
)


def test_chat_template_matches_qwen_layout(policy, arch):
    _, processor = policy
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == {"tiny": QWEN2_5_PROMPT, "tiny-qwen3-vl": QWEN3_VL_PROMPT}[arch]
    answered = processor.apply_chat_template(
        [*messages, {"role": "assistant", "content": "A"}], tokenize=False
    )
    assert answered == text + "A<|im_end|>\n"  # SFT's target follows the generation prompt


def test_processor_expands_image_tokens_to_the_grid(policy, arch_batch):
    model, processor = policy
    batch, images, _ = arch_batch
    per_row = (batch["input_ids"] == model.config.image_token_id).sum(dim=1)
    expected = batch["image_grid_thw"].prod(dim=1) // 4
    assert torch.equal(per_row, expected)
    geometry = VisionGeometry.of(processor)
    assert [list(geometry.grid_thw(img.size)) for img in images] == batch["image_grid_thw"].tolist()


@pytest.mark.equivalence
def test_saved_model_loads_through_load_policy(tmp_path, policy, arch, arch_batch):
    """A checkpoint of either architecture saved to a directory loads back by path through
    `load_policy` with the same weights, processor output and (float64) logits."""
    model, _ = policy
    path = save_tiny(tmp_path / arch, SPECS[arch]())
    processor_class = json.loads((path / "processor_config.json").read_text())["processor_class"]
    assert processor_class == PROCESSORS[arch]  # AutoProcessor loads it where torchvision exists
    loaded, loaded_processor = load_policy(path, device="cpu", dtype="float64")
    assert type(loaded) is type(model) and loaded.dtype == torch.float64
    assert _same_weights(as_float64(model), loaded)
    batch, images, texts = arch_batch
    again = loaded_processor(text=texts, images=images, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        assert torch.equal(again[key], batch[key]), key
    with torch.no_grad():  # the loaded model embeds patches as a matmul, the built one as a conv
        assert_equivalent(loaded(**again).logits, as_float64(model)(**batch).logits)


def test_name_resolves_to_a_cached_checkpoint(policy, arch):
    path = tiny_path(SPECS[arch]())
    assert path.name.startswith(f"{arch}-")
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    loaded, _ = load_policy(arch, device="cpu")
    assert _same_weights(policy[0], loaded)


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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deepstack_blocks", [2]),  # the tower has blocks 0 and 1
        ("deepstack_blocks", [0, 1, 0, 1, 0]),  # more levels than decoder layers
        ("vision_positions", 500),  # the learned position grid is square
        ("mrope_section", [4, 6, 6, 1]),  # must sum to head_dim/2 = 16
    ],
)
def test_bad_qwen3_vl_spec_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TinyQwen3VLSpec(**{field: value})
