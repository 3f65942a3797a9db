"""The official recipes against the authors' code (Cratileo/Sayo): the system prompt the model is
given, and `tiny_official` as the official recipe with only its sizes shrunk."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import tiny_policy
from PIL import Image

from sayo.data.schema import AnswerType, Region, Sample
from sayo.models import TINY_QWEN3_VL_NAME
from sayo.prompts import INSTRUCTION, PromptConfig, build_prompt_batch
from sayo.recipe import load_recipe

# train/main.py's SYSTEM_PROMPT, copied by hand (its Python string pieces join without spaces).
AUTHORS_SYSTEM_PROMPT = (
    "A conversation between a user and an assistant. The user asks a question, and the assistant must answer it."
    "The assistant first conducts internal reasoning, followed immediately by the final answer enclosed within "
    "<answer>...</answer> tags."
    "Requirements:"
    "1. The reasoning outside <answer></answer> should be concise, minimal, and essential.\n"
    "2. The final answer must be correct, complete, and directly address the user\u2019s question.\n"
    "3. When reasoning, focus on the areas of aim object in the image.\n"
    "4. You MUST HAVE thinking process before the final answer.\n"
)
QUESTION = "What colour is the square?"


def _rendered(prompt: PromptConfig | None) -> str:
    """The text the tiny Qwen3-VL policy is given for one sample under `prompt`."""
    _, processor = tiny_policy(TINY_QWEN3_VL_NAME)
    sample = Sample(
        id="s0",
        image="s0.png",
        question=QUESTION,
        answer="red",
        answer_type=AnswerType.EXACT,
        regions=[Region(bbox=(0.0, 0.0, 10.0, 10.0))],
    )
    batch = build_prompt_batch(processor, [sample], [Image.new("RGB", (64, 64), "red")], prompt=prompt)
    return processor.tokenizer.decode(batch["input_ids"][0])


def test_official_prompt_is_the_authors_system_turn_and_the_bare_question() -> None:
    prompt = load_recipe("sayo_official_qwen3_vl_8b").prompt
    assert prompt.system == AUTHORS_SYSTEM_PROMPT and prompt.instruction == ""
    text = _rendered(prompt)
    assert text.startswith(f"<|im_start|>system\n{AUTHORS_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert "focus on the areas of aim object in the image" in text
    assert text.endswith(f"<|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert INSTRUCTION not in text


def test_default_prompt_is_unchanged() -> None:
    """No system turn of sayo's own; the instruction after the question, as before the field existed."""
    assert load_recipe("tiny").prompt == PromptConfig(system=None, instruction=INSTRUCTION)
    text = _rendered(None)
    assert text == _rendered(PromptConfig())
    assert AUTHORS_SYSTEM_PROMPT not in text and text.endswith(
        f"{QUESTION}\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    )


def _differences(a: Any, b: Any, path: str = "") -> set[str]:
    if isinstance(a, dict):
        return set().union(*(_differences(a[k], b[k], f"{path}.{k}") for k in a))
    return {path.lstrip(".")} if a != b else set()


def test_tiny_official_is_the_official_recipe_with_only_sizes_shrunk() -> None:
    tiny = load_recipe("tiny_official")
    official = load_recipe("sayo_official_qwen3_vl_8b")
    assert (tiny.model.name_or_path, tiny.grpo.init_from) == (TINY_QWEN3_VL_NAME, "model")
    shrunk = {
        "description",
        "device",
        "model.name_or_path",
        "model.dtype",
        "model.gradient_checkpointing",
        "data.sources",
        "grpo.max_steps",
        "grpo.group_size",
        "grpo.micro_batch_size",
        "grpo.probe_every",
        "checkpoint.every",
        "checkpoint.keep_last",
        "deepspeed.config",
        "tracking.experiment",
        "evaluate.checkpoints",
        "evaluate.gallery_samples",
        "register.model_name",
    }
    assert _differences(dataclasses.asdict(tiny), dataclasses.asdict(official)) == shrunk
    # one micro-batch holds the whole step, so the padded width is the step's, as in the authors' batch
    assert tiny.grpo.micro_batch_size == tiny.grpo.prompts_per_step * tiny.grpo.group_size
