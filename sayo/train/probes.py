"""Periodic measurements during GRPO: pictures of where the policy looks, and its accuracy curve.

Every `grpo.probe_every` steps the same probe samples (the first of the eval split) are answered
greedily and scored with the attention capture; the heatmaps of the selected high-entropy tokens
and a completions table go to MLflow, so a run shows attention moving onto the regions over time.
The answering and the attention measurement are the `evaluate` stage's own
(`sayo.answering`, `rewards.attention`), so probe numbers and evaluation numbers mean the same thing.

Every `grpo.eval_every` steps (and before the first step and after the last) the first
`grpo.eval_samples` of the eval split are answered greedily, each rank its equal share, for the
accuracy curve (`eval/accuracy`, `eval/format`, `eval/length`): whether an arm learns faster, not
only where it ends (docs/method.md, "Accuracy over GRPO steps").
"""

from __future__ import annotations

from typing import Any

import torch

from sayo.answering import AnswerOptions, answer_batch
from sayo.attention_capture import AttentionCapture
from sayo.data.dataset import GroundedDataset
from sayo.train import distributed
from sayo.train.config import TrainRecipe
from sayo.viz import heatmap_grid


@torch.no_grad()
def log_probes(
    run: Any, policy: Any, probes: GroundedDataset, capture: AttentionCapture, cfg: TrainRecipe, step: int
) -> None:
    """Answer the probe samples greedily; log a heatmap gallery and a completions table."""
    samples, images = probes.batch(list(range(len(probes))))
    options = AnswerOptions(
        max_new_tokens=cfg.grpo.max_new_tokens,
        attention=cfg.rewards.attention,
        tolerance=cfg.rewards.numeric_tolerance,
        prompt=cfg.prompt,
    )
    answers = answer_batch(
        policy.model,
        policy.processor,
        samples,
        images,
        options,
        capture=capture,
        generation_context=policy.engine.generation_context,
    )
    assert answers.region_attention is not None and answers.heatmaps is not None
    texts, share = answers.texts, answers.region_attention
    panels = []
    for row, (sample, image) in enumerate(zip(samples, images, strict=True)):
        caption = f"{sample.question[:36]} → {texts[row][-24:]!r} r_attn={float(share[row]):.2f}"
        panels.append((image, answers.heatmaps[row], [r.bbox for r in sample.regions], caption))
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
        for s, t, c, a in zip(samples, texts, answers.correct.tolist(), share.tolist(), strict=True)
    ]
    run.log_table(records, f"probes/completions_step{step:06d}.json")


@torch.no_grad()
def eval_metrics(policy: Any, evalset: GroundedDataset, cfg: TrainRecipe) -> dict[str, float]:
    """Greedy answers to this rank's equal share of `evalset`, averaged over the ranks: accuracy,
    format and response length (tokens). Every rank must call it (the mean is a collective)."""
    world = distributed.world_size()
    rows = list(range(distributed.rank(), len(evalset) // world * world, world))  # equal shares
    if not rows:
        raise ValueError(f"grpo.eval_samples: {len(evalset)} eval samples for {world} ranks")
    options = AnswerOptions(
        max_new_tokens=cfg.grpo.max_new_tokens, tolerance=cfg.rewards.numeric_tolerance, prompt=cfg.prompt
    )
    correct, formatted, lengths = [], [], []
    size = cfg.grpo.micro_batch_size
    for start in range(0, len(rows), size):
        samples, images = evalset.batch(rows[start : start + size])
        answers = answer_batch(
            policy.model, policy.processor, samples, images, options,
            generation_context=policy.engine.generation_context,
        )  # fmt: skip
        correct += answers.correct.tolist()
        formatted += answers.formatted.tolist()
        lengths += answers.lengths.float().tolist()
    mine = {
        "eval/accuracy": sum(correct) / len(rows),
        "eval/format": sum(formatted) / len(rows),
        "eval/length": sum(lengths) / len(rows),
    }
    return distributed.mean_over_ranks(mine)
