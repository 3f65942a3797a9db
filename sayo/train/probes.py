"""Periodic pictures of where the policy looks: a fixed probe set, greedy answers, heatmaps.

Every `grpo.probe_every` steps the same probe samples (the first of the eval split) are answered
greedily and scored with the attention capture; the heatmaps of the selected high-entropy tokens
and a completions table go to MLflow, so a run shows attention moving onto the regions over time.
"""

from __future__ import annotations

from typing import Any

import torch

from sayo.attention import AttentionCapture
from sayo.prompts import build_prompt_batch, prompt_region_mask
from sayo.regions import token_grid_shape
from sayo.rewards import accuracy_reward, region_attention_reward, select_high_entropy_tokens
from sayo.rollout import decode_completions, generate_completions, stop_and_suppress
from sayo.scoring import attention_map, score_rollouts
from sayo.train.config import TrainConfig
from sayo.train.data import GroundedDataset
from sayo.viz import heatmap_grid


@torch.no_grad()
def log_probes(
    run: Any, policy: Any, probes: GroundedDataset, capture: AttentionCapture, cfg: TrainConfig, step: int
) -> None:
    """Answer the probe samples greedily; log a heatmap gallery and a completions table."""
    model, processor, tokenizer = policy.model, policy.processor, policy.processor.tokenizer
    samples, images = probes.batch(list(range(len(probes))))
    prompts = build_prompt_batch(processor, samples, images).to(policy.device)
    image_token_id = model.config.image_token_id
    _, region_mask = prompt_region_mask(prompts, samples, images, image_token_id)
    model.eval()
    with policy.engine.generation_context():
        ids, mask = generate_completions(
            model,
            prompts,
            max_new_tokens=cfg.grpo.max_new_tokens,
            do_sample=False,
            **stop_and_suppress(tokenizer, model),
        )
    scores = score_rollouts(
        model,
        prompts,
        ids,
        mask,
        image_token_id=image_token_id,
        capture=capture,
        region_mask=region_mask.to(policy.device),
    )
    assert scores.region_share is not None
    selected = select_high_entropy_tokens(scores.entropy, mask, cfg.rewards.entropy_ratio)
    share = region_attention_reward(scores.region_share, selected)
    texts = decode_completions(tokenizer, ids, mask)
    correct = accuracy_reward(
        texts,
        [s.answer for s in samples],
        [s.answer_type.value for s in samples],
        [s.choices for s in samples],
    )
    panels = []
    for row, (sample, image) in enumerate(zip(samples, images, strict=True)):
        heat = attention_map(scores, selected, row, token_grid_shape(prompts["image_grid_thw"][row]))
        caption = f"{sample.question[:36]} → {texts[row][-24:]!r} r_attn={float(share[row]):.2f}"
        panels.append((image, heat.cpu().numpy(), [r.bbox for r in sample.regions], caption))
    run.log_image(heatmap_grid(panels, columns=min(4, len(panels))), f"probes/heatmaps_step{step:06d}.png")
    records = [
        {
            "step": step,
            "id": s.id,
            "question": s.question,
            "answer": s.answer,
            "completion": t,
            "correct": float(c),
            "region_attention": float(a),
        }
        for s, t, c, a in zip(samples, texts, correct.tolist(), share.tolist(), strict=True)
    ]
    run.log_table(records, f"probes/completions_step{step:06d}.json")
