"""The end-to-end demo on the embedded defaults: tiny model → synthetic data → scored rollouts.

For each synthetic sample, a GRPO group of four completions is scored with every reward: the
reference answer in the template, a wrong answer in the template, the reference answer without
the template, and one completion sampled from the policy. One no-grad forward gives log-probs,
entropies and the captured attention (`sayo.scoring`); the region-attention reward averages the
region share over the top-ρ high-entropy tokens (docs/method.md), as the recipe's
`rewards` section says. It prints a table, writes
`scores.jsonl`, and draws `heatmaps.png`: each image with its region box and where the reference
completion's selected tokens look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from sayo.atomic import write_jsonl
from sayo.attention_capture import AttentionCapture
from sayo.data.schema import AnswerType, Sample
from sayo.data.synthetic import SyntheticConfig, generate
from sayo.loss import group_advantages
from sayo.models import load_policy
from sayo.prompts import OPTION_LETTERS, build_prompt_batch, formatted_answer, prompt_region_mask
from sayo.regions import batch_merge_size, token_grid_shape
from sayo.rewards import accuracy_reward, combine_rewards
from sayo.rewards.attention import attention_on_region
from sayo.rewards.config import RewardConfig
from sayo.rewards.format import format_rewards
from sayo.sampling import decode_completions, encode_completions, generate_completions, stop_and_suppress
from sayo.scoring import attention_map, score_rollouts
from sayo.viz import heatmap_grid, save_png

KINDS = ("reference", "wrong", "unformatted", "sampled")


@dataclass
class DemoConfig:
    """Knobs of the demo (all have CPU-friendly defaults)."""

    model: str = "tiny"  # `tiny`, `tiny-qwen3-vl`, a checkpoint directory, or a cached hub id
    num_samples: int = 4  # synthetic samples, one GRPO group each
    seed: int = 0
    max_new_tokens: int = 24  # length of the sampled completion
    out_dir: Path = Path("outputs/demo")
    rewards: RewardConfig = field(default_factory=RewardConfig)  # the recipe's reward weights and attention


def _wrong_answer(sample: Sample) -> str:
    """A plausible but wrong answer of the same type (another option, another number, another word)."""
    answer = sample.answer
    if sample.answer_type is AnswerType.CHOICE and sample.choices:
        letter = OPTION_LETTERS.index(answer) if answer in OPTION_LETTERS[: len(sample.choices)] else -1
        return OPTION_LETTERS[(letter + 1) % len(sample.choices)]
    if answer.replace(".", "", 1).lstrip("-").isdigit():
        return (
            str(int(float(answer)) + 7)
            if len(answer) > 1 or sample.answer_type is AnswerType.NUMBER
            else (str((int(answer) + 3) % 10))
        )
    return "purple" if answer.lower() != "purple" else "orange"


def _completions(samples: list[Sample], sampled: list[str]) -> list[str]:
    texts = []
    for sample, policy_text in zip(samples, sampled, strict=True):
        reasoning = f"I look at the {sample.regions[0].label or 'region'}." if sample.regions else ""
        texts += [
            formatted_answer(sample.answer, reasoning),
            formatted_answer(_wrong_answer(sample), reasoning),
            sample.answer,
            policy_text,
        ]
    return texts


def run_demo(config: DemoConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """Run the demo; returns one record per scored completion (also written to scores.jsonl)."""
    console = console or Console(width=None if Console().is_terminal else 150)
    torch.manual_seed(config.seed)
    group = len(KINDS)
    with console.status("loading the policy"):
        model, processor = load_policy(config.model, device="cpu")
    pairs = list(generate(SyntheticConfig(num_samples=config.num_samples, seed=config.seed)))
    samples, images = [p[0] for p in pairs], [p[1] for p in pairs]
    tokenizer = processor.tokenizer
    with console.status("sampling one completion per prompt"):
        single = build_prompt_batch(processor, samples, images)
        ids, mask = generate_completions(
            model, single, max_new_tokens=config.max_new_tokens, **stop_and_suppress(tokenizer, model)
        )
    texts = _completions(samples, decode_completions(tokenizer, ids, mask))
    prompts = build_prompt_batch(processor, samples, images, repeat=group)
    merge = batch_merge_size(prompts["input_ids"], model.config.image_token_id, prompts["image_grid_thw"])
    _, region_mask = prompt_region_mask(prompts, samples, images, model.config.image_token_id, group, merge)
    completion_ids, completion_mask = encode_completions(tokenizer, texts)
    attention = config.rewards.attention
    capture = AttentionCapture(model, attention.layers, attention.heads)
    with console.status("scoring: one forward with attention capture"):
        scores = score_rollouts(
            model,
            prompts,
            completion_ids,
            completion_mask,
            image_token_id=model.config.image_token_id,
            capture=capture,
            region_mask=region_mask,
            query=attention.query,
        )
    assert scores.region is not None  # capture was given
    selected, measures = attention_on_region(scores.entropy, completion_mask, scores.region, attention)
    rows = [s for s in samples for _ in range(group)]
    components = {
        "accuracy": accuracy_reward(
            texts, [s.answer for s in rows], [s.answer_type.value for s in rows], [s.choices for s in rows]
        ),
        "format": format_rewards(config.rewards.format.form, texts, completion_mask.sum(dim=1)),
        "region_attention": measures.reward,
    }
    total, components = combine_rewards(components, config.rewards.weights)
    advantages = group_advantages(total, group)
    records = _records(rows, texts, components, total, advantages)
    console.print(_table(records, config.model))
    _write(config.out_dir, records, samples, images, prompts, scores, selected, group, merge)
    console.print(f"wrote {config.out_dir / 'scores.jsonl'} and {config.out_dir / 'heatmaps.png'}")
    return records


def _records(
    rows: list, texts: list[str], components: dict, total: torch.Tensor, adv: torch.Tensor
) -> list[dict]:
    return [
        {
            "id": sample.id,
            "question": sample.question,
            "answer": sample.answer,
            "kind": KINDS[i % len(KINDS)],
            "completion": text,
            **{name: round(float(value[i]), 4) for name, value in components.items()},
            "total": round(float(total[i]), 4),
            "advantage": round(float(adv[i]), 4),
        }
        for i, (sample, text) in enumerate(zip(rows, texts, strict=True))
    ]


def _table(records: list[dict], model: str) -> Table:
    table = Table(title=f"sayo demo: rewards of one GRPO group per synthetic sample ({model})")
    numbers = ("accuracy", "format", "region_attention", "total", "advantage")
    for column in ("sample", "answer", "kind", "completion"):
        table.add_column(
            column, overflow="ellipsis", no_wrap=True, max_width=48 if column == "completion" else None
        )
    for column in numbers:
        table.add_column(column.replace("region_attention", "r_attn"), justify="right")
    for i, r in enumerate(records):
        table.add_row(
            r["id"] if r["kind"] == KINDS[0] else "",
            r["answer"],
            r["kind"],
            r["completion"].replace("\n", " "),
            *(f"{r[k]:.3f}" for k in numbers),
            end_section=i % len(KINDS) == len(KINDS) - 1,
        )
    return table


def _write(
    out_dir: Path,
    records: list[dict],
    samples: list,
    images: list,
    prompts: Any,
    scores: Any,
    selected: torch.Tensor,
    group: int,
    merge: int,
) -> None:
    write_jsonl(out_dir / "scores.jsonl", records)
    panels = []
    for i, (sample, image) in enumerate(zip(samples, images, strict=True)):
        row = i * group  # the reference completion of this group
        grid = token_grid_shape(prompts["image_grid_thw"][row], merge)
        heat = attention_map(scores, selected, row, grid).numpy()
        share = records[row]["region_attention"]
        panels.append(
            (image, heat, [r.bbox for r in sample.regions], f"{sample.question[:40]}  r_attn={share:.2f}")
        )
    save_png(heatmap_grid(panels, columns=min(4, len(panels))), out_dir / "heatmaps.png")
