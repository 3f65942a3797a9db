"""LoRA on the tiny policy: where adapters go, reference = base, merge = adapters, capture still works."""

from __future__ import annotations

import contextlib
import copy
import re

import pytest
import torch
from conftest import as_float64, assert_equivalent, prompt_batch

from sayo.attention_capture import AttentionCapture, decoder_layers
from sayo.models.config import LoraConfig
from sayo.train.config import OptimConfig
from sayo.train.engine import build_engine
from sayo.train.lora import apply_lora, frozen_copy, merged_copy, reference_policy, target_regex

pytest.importorskip("peft")

IDS = torch.tensor([[5, 17, 42, 99, 7, 3]])  # [1, 6] text-only input


@pytest.fixture
def base(tiny):
    """A private copy of the tiny policy (apply_lora modifies its argument in place)."""
    return copy.deepcopy(tiny[0]).eval()


@pytest.fixture
def base64(policy):
    """A private float64 copy of the tiny policy of each architecture (equivalence tests)."""
    return as_float64(policy[0]).eval()


def logits(model: torch.nn.Module, **inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**(inputs or {"input_ids": IDS})).logits  # [B, S, V]


def randomise_adapters(model: torch.nn.Module) -> None:
    """Non-zero B matrices, so the adapted model differs from the base."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (["q_proj", "k_proj", "v_proj", "o_proj"], 16),  # default: 4 projections × 4 decoder layers
        (["q_proj"], 4),  # one per decoder layer
        (["gate_proj", "down_proj"], 8),  # MLP names also exist in the vision tower: still 4 layers × 2
    ],
)
def test_adapters_only_on_language_model(policy, targets: list[str], expected: int) -> None:
    model = apply_lora(copy.deepcopy(policy[0]), LoraConfig(target_modules=targets, dropout=0.0))
    adapted = [
        name for name, module in model.named_modules() if hasattr(module, "lora_A") and "lora_A" not in name
    ]
    assert len(adapted) == expected
    assert all(".language_model.layers." in name and "visual" not in name for name in adapted)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("model.language_model.layers.0.self_attn.q_proj", True),  # decoder projection
        ("model.language_model.layers.12.mlp.gate_proj", False),  # not a requested name
        ("model.visual.blocks.0.attn.q_proj", False),  # vision tower
        ("model.language_model.layers.0.self_attn.q_proj.base_layer", False),  # only the linear itself
    ],
)
def test_target_regex(name: str, matches: bool) -> None:
    assert bool(re.fullmatch(target_regex(["q_proj", "k_proj"]), name)) is matches


def test_unknown_target_is_an_error(base) -> None:
    with pytest.raises(ValueError, match=r"model.lora.target_modules.*\['qkv'\]"):
        apply_lora(base, LoraConfig(target_modules=["q_proj", "qkv"]))  # qkv is vision-only


def test_fresh_adapters_equal_base(base) -> None:
    expected = logits(base)
    model = apply_lora(base, LoraConfig(dropout=0.0))
    torch.testing.assert_close(logits(model), expected)


def test_training_step_changes_adapters_not_base(base) -> None:
    model = apply_lora(base, LoraConfig(dropout=0.0)).train()
    before = logits(model)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    engine = build_engine(model, OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant"), max_steps=1)
    engine.backward(model(input_ids=IDS).logits.float().pow(2).mean())
    assert engine.step() > 0
    assert not torch.allclose(logits(model), before)
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    with reference_policy(model) as ref:
        torch.testing.assert_close(logits(ref), before)  # adapters off = the untouched base


def test_reference_policy_is_base_output(base) -> None:
    expected = logits(base)
    model = apply_lora(base, LoraConfig(dropout=0.0))
    randomise_adapters(model)
    assert not torch.allclose(logits(model), expected)
    with reference_policy(model) as ref:
        torch.testing.assert_close(logits(ref), expected)
    assert not torch.allclose(logits(model), expected)  # adapters back on after the block


def test_reference_policy_needs_peft(base) -> None:
    with pytest.raises(TypeError, match="frozen_copy"), reference_policy(base):
        pass


def test_frozen_copy(base) -> None:
    ref = frozen_copy(base.train())
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in base.parameters())  # the original is untouched
    torch.testing.assert_close(logits(ref), logits(base.eval()))


@pytest.mark.equivalence
def test_merged_copy_equals_adapters(base64, policy) -> None:
    model = apply_lora(base64, LoraConfig(dropout=0.0)).eval()
    randomise_adapters(model)
    merged = merged_copy(model)
    assert type(merged) is type(policy[0])  # Qwen2_5_VL / Qwen3VL ForConditionalGeneration
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert_equivalent(logits(merged), logits(model))  # W + s·BA vs W x + s·B(A x), in float64
    assert any("lora_" in name for name, _ in model.named_parameters())  # the original keeps its adapters


@pytest.mark.equivalence
def test_attention_capture_through_peft(base64, policy) -> None:
    batch, _, _ = prompt_batch(policy[1])
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    base = base64
    model = apply_lora(base, LoraConfig(dropout=0.0)).eval()
    randomise_adapters(model)
    merged = merged_copy(model)
    assert len(decoder_layers(model)) == len(decoder_layers(merged)) == 4
    seq = batch["input_ids"].shape[1]
    query_index = torch.tensor([[seq - 2, seq - 1]] * 2)  # [2, 2] the last two tokens
    key_index = torch.tensor([list(range(8))] * 2)  # [2, 8]
    results = []
    for net in (model, merged, base):  # base: peft injected the adapters into it, so switch them off
        capture = AttentionCapture(net, layers="all")
        off = reference_policy(model) if net is base else contextlib.nullcontext()
        with torch.no_grad(), off, capture.record(query_index, key_index, batch["attention_mask"]) as request:
            net(**batch)
        results.append(capture.result(request))  # [2, 2, 8]
    assert_equivalent(results[0], results[1])  # capture through peft's wrappers = merged weights
    assert (results[0] - results[2]).abs().max() > 1e-4  # the adapters do move the attention


def test_gradient_checkpointing_then_lora_trains_every_adapter(base) -> None:
    base.gradient_checkpointing_enable()  # before apply_lora, as sayo.train.policy does
    model = apply_lora(base, LoraConfig(dropout=0.0)).train()
    randomise_adapters(model)  # B != 0, so A gets a gradient too
    model(input_ids=IDS, labels=IDS).loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 32  # A and B of 16 adapted projections
    assert all(
        g is not None and bool(g.abs().sum() > 0) for g in grads.values()
    )  # peft made inputs require grad


def adapted_names(model: torch.nn.Module) -> set[str]:
    """Names of the modules peft wrapped, as the base model names them."""
    return {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "lora_A" not in name
    }


def test_all_linear_adapts_every_linear_but_the_head_vision_tower_included(policy) -> None:
    """`model.lora.targets: all-linear` is the authors' `--lora_target_modules all-linear`."""
    from sayo.vision import vision_trains

    base_model = copy.deepcopy(policy[0])
    linears = {name for name, m in base_model.named_modules() if isinstance(m, torch.nn.Linear)}
    model = apply_lora(base_model, LoraConfig(targets="all-linear", dropout=0.0))
    adapted = adapted_names(model)
    assert adapted == linears - {"lm_head"}
    vision = {name for name in adapted if ".visual." in f".{name}"}
    assert any(".blocks." in name for name in vision) and any("merger" in name for name in vision)
    assert not any("patch_embed" in name for name in adapted)  # a Conv3d, in sayo as in HF
    assert vision_trains(model)  # GRPO re-encodes images with grad and for the reference
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    torch.testing.assert_close(logits(model), logits(policy[0]))  # fresh adapters: the base


def test_language_targets_are_the_default_and_unchanged(policy) -> None:
    """The default adapts exactly the decoder projections the explicit `targets: language` does."""
    assert LoraConfig().targets == "language"
    default = adapted_names(apply_lora(copy.deepcopy(policy[0]), LoraConfig(dropout=0.0)))
    explicit = adapted_names(
        apply_lora(copy.deepcopy(policy[0]), LoraConfig(targets="language", dropout=0.0))
    )
    layers = {
        name
        for name, _ in policy[0].named_modules()
        if re.fullmatch(r"model\.language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj", name)
    }
    assert default == explicit == layers


def test_official_recipe_adapts_all_linear_layers() -> None:
    from sayo.recipe import load_recipe

    assert load_recipe("sayo_official_qwen3_vl_8b").model.lora.targets == "all-linear"
    with pytest.raises(ValueError, match=r"model\.lora\.targets"):
        load_recipe("tiny", ["model.lora.targets=vision"])
