"""Turning samples into model inputs: the question template and batched, region-aware prompts.

The recipe's `prompt:` section (`PromptConfig`) says what the model is told: by default the answer
template (`<think>…</think><answer>…</answer>`, docs/method.md "Total reward") is asked for in the
user turn, so a real instruct checkpoint can follow it zero-shot and the tiny model learns it in
SFT; the official recipes instead give the authors' system prompt and the bare question
(docs/method.md, "sayo's defaults and the authors' code"). Every stage (SFT, GRPO, probes,
evaluation) builds its prompts from the same section, so a model is evaluated as it was trained.
Region boxes travel with the prompt as a mask over its image tokens, built from the processor's
actual `image_grid_thw` (`sayo.regions`), so the mapping never drifts from what the model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from transformers import BatchFeature

from sayo.data.schema import AnswerType, Sample
from sayo.prompt_config import INSTRUCTION, PromptConfig
from sayo.regions import batch_merge_size, sequence_region_mask
from sayo.vision import row_patches

OPTION_LETTERS = "ABCDEFGHIJ"


def question_text(sample: Sample, instruction: str = INSTRUCTION) -> str:
    """The user text for a sample: question, options for multiple choice, and the instruction."""
    text = sample.question.strip()
    if sample.answer_type is AnswerType.CHOICE and sample.choices:
        options = " ".join(f"{OPTION_LETTERS[i]}. {c}" for i, c in enumerate(sample.choices))
        text = f"{text}\nOptions: {options}"
    return f"{text}\n{instruction}" if instruction else text


def chat_messages(
    sample: Sample, answer: str | None = None, prompt: PromptConfig | None = None
) -> list[dict[str, Any]]:
    """Chat messages: `prompt`'s system turn if any, the image and the question; with `answer`,
    the assistant turn too."""
    prompt = prompt or PromptConfig()
    text = question_text(sample, prompt.instruction)
    messages: list[dict[str, Any]] = []
    if prompt.system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def formatted_answer(answer: str, reasoning: str = "") -> str:
    """A completion in the answer template."""
    return f"<think>{reasoning}</think><answer>{answer}</answer>"


def build_prompt_batch(
    processor: Any,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    repeat: int = 1,
    prompt: PromptConfig | None = None,
) -> Any:
    """Processor inputs for `samples`, each repeated `repeat` times (adjacent: one GRPO group).

    Prompts are left-padded so that completions can be appended on the right; `prompt` is the
    recipe's `prompt:` section (default: sayo's instruction, no system turn).
    """
    if len(samples) != len(images):
        raise ValueError(f"{len(samples)} samples but {len(images)} images")
    if repeat < 1:
        raise ValueError(f"repeat={repeat} must be >= 1")
    texts = [
        processor.apply_chat_template(
            chat_messages(s, prompt=prompt), tokenize=False, add_generation_prompt=True
        )
        for s in samples
    ]
    texts = [t for t in texts for _ in range(repeat)]
    batch_images = [img.convert("RGB") for img in images for _ in range(repeat)]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=batch_images, padding=True, return_tensors="pt")


def prompt_region_mask(
    prompt_inputs: Any,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    image_token_id: int,
    repeat: int = 1,
    merge_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(image_mask, region_mask), each [B, P]: image tokens, and those inside the samples' regions.

    `merge_size` defaults to the one the batch itself shows (`sayo.regions.batch_merge_size`: its
    image-token count against `image_grid_thw`), so any Qwen-VL processor's batch maps correctly.
    """
    ids, grids = prompt_inputs["input_ids"], prompt_inputs["image_grid_thw"]
    boxes = [[r.bbox for r in s.regions] for s in samples for _ in range(repeat)]
    sizes = [img.size for img in images for _ in range(repeat)]
    merge = merge_size if merge_size is not None else batch_merge_size(ids, image_token_id, grids)
    return sequence_region_mask(ids, image_token_id, grids, boxes, sizes, merge)


def select_rows(prompts: Any, rows: Sequence[int]) -> BatchFeature:
    """Rows (repeats allowed) of a one-image-per-row processor batch, without re-processing images.

    GRPO repeats each prompt G times; processing its image once and repeating the tensors gives
    exactly what processing the repeated rows would (tested), at 1/G of the image-processing cost.
    Leading columns that are padding in every selected row are dropped.
    """
    patches = row_patches(prompts)
    index = torch.as_tensor(list(rows), dtype=torch.long)
    first = int(prompts["attention_mask"][index].any(dim=0).nonzero()[0])  # first column any row uses
    out = {
        key: prompts[key][index, first:]
        for key in ("input_ids", "attention_mask", "mm_token_type_ids")
        if key in prompts
    }
    out["image_grid_thw"] = prompts["image_grid_thw"][index]
    out["pixel_values"] = torch.cat([prompts["pixel_values"][patches[i]] for i in rows])
    return BatchFeature(out)
