"""Answer a batch of benchmark questions and measure where the answers looked.

Why one function for evaluation, the training probes and the registered model: "does it really
see it" must be measured the same way during training and in the final report — generation
(greedy, or sampled n times), the scoring forward with the attention capture, the top-ρ entropy
selection and the region share of docs/method.md ("The attention reward"), reported for evaluation
apart from the training reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sayo.attention_capture import AttentionCapture
from sayo.data.schema import Sample
from sayo.logprobs import token_kl
from sayo.looking import Looking, answer_steps, looking_measures
from sayo.prompts import PromptConfig, build_prompt_batch
from sayo.regions import batch_merge_size, token_grid_shape
from sayo.rewards import accuracy_reward, extract_answer, format_reward
from sayo.rewards.attention import attention_on_region
from sayo.rewards.config import AttentionConfig
from sayo.sampling import decode_completions, generate_completions, stop_and_suppress
from sayo.scoring import attention_map, completion_logits, score_on_regions
from sayo.vision import blank_patches


@dataclass
class Answers:
    """Per-answer results of one batch; with `n` answers per sample, rows are sample-major.

    correct, formatted, lengths: [B·n]. With capture (else None), as `rewards.attention` defines
    them: region_attention, the share of the selected tokens' visual attention on the region;
    attention_lift, that share minus the region's area fraction (0 = uniform attention);
    attention_reward, the configured reward form; heatmaps, one [rows, cols] grid per row (mean
    attention of the selected tokens over the image).
    """

    texts: list[str]
    extracted: list[str | None]
    correct: Tensor
    formatted: Tensor
    lengths: Tensor
    region_attention: Tensor | None = None
    attention_lift: Tensor | None = None
    attention_reward: Tensor | None = None
    heatmaps: list[np.ndarray] | None = None
    looking: Looking | None = None  # measures that read fixed steps, not the selection (`sayo.looking`)
    completion_ids: Tensor | None = None  # [B·n, T] the generated tokens (−1 after each one's end)
    selected: Tensor | None = None  # [B·n, T] bool: the tokens the attention measure averaged (with capture)


@dataclass
class AnswerOptions:
    """How to answer: decoding and the attention-on-region measurement."""

    max_new_tokens: int = 32
    do_sample: bool = False
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    tolerance: float = 0.05
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)  # the recipe's `prompt:` section


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def answer_batch(
    model: Any,
    processor: Any,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    options: AnswerOptions,
    capture: AttentionCapture | None = None,
    generation_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Answers:
    """Generate `options.n` answers per sample, score them, and (with `capture`) their attention."""
    tokenizer = processor.tokenizer
    prompts = build_prompt_batch(processor, samples, images, options.n, options.prompt).to(_device(model))
    model.eval()
    with generation_context():
        ids, mask = generate_completions(
            model,
            prompts,
            max_new_tokens=options.max_new_tokens,
            do_sample=options.do_sample,
            temperature=options.temperature,
            top_p=options.top_p,
            **stop_and_suppress(tokenizer, model),
        )  # [B·n, T] each
    texts = decode_completions(tokenizer, ids, mask)
    rows = [s for s in samples for _ in range(options.n)]
    references = [s.answer for s in rows], [s.answer_type.value for s in rows], [s.choices for s in rows]
    answers = Answers(
        texts=texts,
        extracted=[extract_answer(t) for t in texts],
        correct=accuracy_reward(texts, *references, options.tolerance),  # [B·n]
        formatted=format_reward(texts),  # [B·n]
        lengths=mask.sum(dim=1).cpu(),  # [B·n]
        completion_ids=ids.masked_fill(mask == 0, -1).cpu(),
    )
    if capture is not None:
        steps = answer_steps(tokenizer, ids.cpu(), mask.cpu())  # [B·n] first answer token (−1: none)
        _attention(model, prompts, ids, mask, samples, images, options, capture, answers, steps)
    return answers


def _attention(
    model: Any,
    prompts: Any,
    ids: Tensor,
    mask: Tensor,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    options: AnswerOptions,
    capture: AttentionCapture,
    answers: Answers,
    steps: Tensor,
) -> None:
    """Fill `answers.region_attention` and `answers.heatmaps` from one captured scoring forward."""
    image_token_id = model.config.image_token_id
    merge = batch_merge_size(prompts["input_ids"], image_token_id, prompts["image_grid_thw"])
    scores = score_on_regions(
        model, prompts, ids, mask, samples, images, capture,
        query=options.attention.query, repeat=options.n, merge_size=merge,
    )  # fmt: skip
    assert scores.region is not None
    sensitivity = None
    if options.attention.select != "entropy":  # the image blanked: how much each token depends on it
        blank = {**prompts, "pixel_values": blank_patches(prompts["pixel_values"], prompts["image_grid_thw"])}
        sensitivity = token_kl(
            completion_logits(model, prompts, ids, mask), completion_logits(model, blank, ids, mask)
        )
    selected, measures = attention_on_region(
        scores.entropy, mask, scores.region, options.attention, sensitivity
    )
    answers.region_attention = measures.share.cpu()  # [B·n]
    answers.attention_lift = measures.lift.cpu()  # [B·n]
    answers.attention_reward = measures.reward.cpu()  # [B·n]
    answers.selected = selected.bool().cpu()  # [B·n, T]
    assert scores.attention is not None and scores.image_keys is not None and scores.region_keys is not None
    answers.looking = looking_measures(
        scores.region_share.cpu(),  # type: ignore[union-attr]
        scores.attention.cpu(),
        scores.region_keys.cpu(),
        scores.image_keys.cpu(),
        mask.cpu(),
        steps,
    )
    answers.heatmaps = [
        attention_map(scores, selected, row, token_grid_shape(prompts["image_grid_thw"][row], merge))
        .cpu()
        .numpy()
        for row in range(ids.shape[0])
    ]
