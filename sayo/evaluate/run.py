"""The `evaluate` stage: answer every benchmark with every checkpoint, score, write and log it all.

Why several checkpoints in one call : base vs SFT vs GRPO is the paper's
table (docs/method.md, "Evaluation"); answering the same samples in the same order with the same
decoding makes the columns comparable and the heatmap gallery show the same images side by side.

Answers are scored with each benchmark's metric (`sayo.evaluate.scorers`: its official metric by
default), not with the training reward; `metrics.json` names the metric of every benchmark.

Outputs under `evaluate.out_dir`: `metrics.json` (nested checkpoint → benchmark → metric, plus
`metric`, `categories` and, for We-Math and MMBench, `wemath` and `circular`; DVC shows it flattened as
`grpo.synthetic.accuracy`), `per_sample.jsonl` (with the prediction each metric read),
`report.html`, `report.md` and `figures/*.png`. MLflow: one `evaluate` run with every metric as
`<checkpoint>/<benchmark>/<metric>` and the report as artifacts, and one nested run per checkpoint
(`evaluate-<name>`, metrics `<benchmark>/<metric>`) so the UI's run comparison lines them up.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sayo.answering import AnswerOptions, Answers, answer_batch
from sayo.atomic import write_json, write_jsonl, write_text
from sayo.attention_capture import AttentionCapture
from sayo.config import finite_numbers, flatten, to_dict
from sayo.evaluate.benchmarks import Benchmark
from sayo.evaluate.config import EvaluateRecipe
from sayo.evaluate.curves import training_curves
from sayo.evaluate.metrics import (
    accuracy_rows,
    benchmark_metrics,
    circular_scores,
    hallusion_scores,
    json_safe,
    wemath_scores,
)
from sayo.evaluate.missing import NotRun, load_present
from sayo.evaluate.report import GalleryItem, write_report
from sayo.evaluate.scorers import metric_meta, score_completion
from sayo.models import load_policy
from sayo.runtime import resolve_device, seed_everything
from sayo.tracking import StageRun


@dataclass
class CheckpointEval:
    """What one checkpoint produced: a record per answer and its gallery heatmaps."""

    name: str
    path: str
    records: list[dict[str, Any]] = field(default_factory=list)
    gallery: list[GalleryItem] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class EvalResult:
    """The stage's result: where the files are, the metrics, every answer's record, the heatmaps
    and the MLflow run ids."""

    out_dir: Path
    metrics: dict[str, Any]
    run_id: str | None
    checkpoint_run_ids: dict[str, str | None]
    answers_per_s: float
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # checkpoint -> answers
    galleries: dict[str, list[GalleryItem]] = field(default_factory=dict)  # checkpoint -> heatmap tiles
    not_run: list[NotRun] = field(default_factory=list)  # sets skipped as missing (--allow-missing)


def parse_checkpoints(specs: Sequence[str]) -> dict[str, str]:
    """`["base=tiny", "outputs/checkpoints/grpo/final"]` → `{"base": "tiny", "grpo": "outputs/…/final"}`.

    Without `name=`, the name is the directory name (its parent's for `final` and `step-*`).
    """
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path, parts = spec, Path(spec.rstrip("/")).parts
            name = (
                parts[-2]
                if len(parts) > 1 and (parts[-1] == "final" or parts[-1].startswith("step-"))
                else parts[-1]
            )
        if not name or "/" in name or not path:
            raise ValueError(f"--checkpoint {spec!r}: expected name=path or path (names without '/')")
        if name in out:
            raise ValueError(f"--checkpoint name {name!r} is given twice; name them: name=path")
        out[name] = path
    if not out:
        raise ValueError("no checkpoint to evaluate: pass --checkpoint name=path (or evaluate.checkpoints)")
    return out


def _options(cfg: EvaluateRecipe) -> AnswerOptions:
    ev = cfg.evaluate
    return AnswerOptions(
        max_new_tokens=ev.max_new_tokens,
        do_sample=ev.do_sample,
        n=ev.n,
        temperature=ev.temperature,
        top_p=ev.top_p,
        tolerance=ev.numeric_tolerance,
        attention=cfg.rewards.attention,
        prompt=cfg.prompt,
    )


def _records(
    bench: Benchmark, start: int, answers: Answers, n: int, tolerance: float
) -> list[dict[str, Any]]:
    """One record per answer, scored with the benchmark's metric (`extracted`: what the metric read)."""
    out = []
    for row, text in enumerate(answers.texts):
        index = start + row // n
        sample = bench.samples[index]
        correct, prediction = score_completion(bench.metric, text, sample, tolerance, bench.extra(index))
        record: dict[str, Any] = {
            "benchmark": bench.name,
            "id": sample.id,
            "category": sample.category or sample.source,
            "answer_type": sample.answer_type.value,
            "question": sample.question,
            "answer": sample.answer,
            "completion": text,
            "extracted": prediction,
            "correct": correct,
            "format": float(answers.formatted[row]),
            "length": int(answers.lengths[row]),
            "region_attention": _value(answers.region_attention, row, sample),
            "attention_lift": _value(answers.attention_lift, row, sample),
            "attention_reward": _value(answers.attention_reward, row, sample),
            **_looking(answers, row, sample),
            "draw": row % n,
        }
        meta = metric_meta(bench.metric, bench.extra(index))
        if meta:
            record["meta"] = meta
        out.append(record)
    return out


def _value(values: Any, row: int, sample: Any) -> float | None:
    """A measured per-answer attention value, or None without capture or for a sample without regions."""
    return float(values[row]) if values is not None and sample.regions else None


def _looking(answers: Answers, row: int, sample: Any) -> dict[str, Any]:
    """The answer's looking measures (`sayo.looking`); None where unmeasured or without a region."""
    look = answers.looking
    if look is None or not sample.regions:
        return dict.fromkeys(("answer_lift", "all_lift", "peak_in_region", "position_lift"))

    def number(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "answer_lift": number(float(look.answer_lift[row])),
        "all_lift": number(float(look.all_lift[row])),
        "peak_in_region": number(float(look.peak_in_region[row])),
        "position_lift": [number(float(v)) for v in look.position_lift[row]],
    }


def _gallery(bench: Benchmark, start: int, answers: Answers, n: int, wanted: set[str]) -> list[GalleryItem]:
    if answers.heatmaps is None or answers.region_attention is None:
        return []
    items = []
    for index in range(len(answers.texts) // n):
        sample = bench.samples[start + index]
        if sample.id in wanted:
            row = index * n
            caption = f"{answers.extracted[row] or '-'} ({sample.answer}) r_attn={float(answers.region_attention[row]):.2f}"
            boxes = [r.bbox for r in sample.regions]
            items.append(
                GalleryItem(sample.id, bench.images[start + index], answers.heatmaps[row], boxes, caption)
            )
    return items


def evaluate_checkpoint(
    name: str,
    path: str,
    benchmarks: Sequence[Benchmark],
    cfg: EvaluateRecipe,
    wanted: set[str],
    progress: bool = True,
) -> CheckpointEval:
    """Answer every benchmark with one checkpoint, batch by batch; capture attention on grounded batches."""
    ev, options = cfg.evaluate, _options(cfg)
    model, processor = load_policy(
        path,
        dtype=cfg.model.dtype,
        device=resolve_device(cfg.device),
        attn_implementation=cfg.model.attn_implementation,
    )
    attention = cfg.rewards.attention
    capture = AttentionCapture(model, attention.layers, attention.heads)
    result, started = CheckpointEval(name, path), time.perf_counter()
    for bench in benchmarks:
        starts = range(0, len(bench), ev.batch_size)
        for start in tqdm(starts, desc=f"{name}/{bench.name}", disable=not progress, unit="batch"):
            samples = bench.prompts(start, start + ev.batch_size)
            grounded = any(s.regions for s in samples)
            answers = answer_batch(
                model, processor, samples, bench.images[start : start + ev.batch_size], options,
                capture=capture if grounded else None,
            )  # fmt: skip
            result.records += _records(bench, start, answers, ev.n, ev.numeric_tolerance)
            result.gallery += _gallery(bench, start, answers, ev.n, wanted)
    result.seconds = time.perf_counter() - started
    del model
    return result


def gallery_ids(benchmarks: Sequence[Benchmark], count: int) -> set[str]:
    """The first `count` grounded samples: the same images for every checkpoint's heatmaps."""
    ids = [s.id for b in benchmarks for s in b.samples if s.regions]
    return set(ids[:count])


def compute_metrics(
    evals: Sequence[CheckpointEval], benchmarks: Sequence[Benchmark], cfg: EvaluateRecipe
) -> dict:
    """Nested metrics: checkpoint → benchmark → summary (with `metric`, `categories` and, for We-Math,
    the four-dimensional `wemath` scores, for circular benchmarks the `circular` accuracy)."""
    ev = cfg.evaluate
    out: dict[str, dict[str, Any]] = {}
    for e in evals:
        out[e.name] = {}
        for b in benchmarks:
            records = [r for r in e.records if r["benchmark"] == b.name]
            summary = benchmark_metrics(
                records, samples=ev.bootstrap_samples, seed=ev.bootstrap_seed, confidence=ev.confidence
            )
            summary["metric"] = b.metric
            if b.note:
                summary["metric_note"] = b.note
            if b.metric == "hallusionbench":
                summary["hallusionbench"] = hallusion_scores(records)
            if b.metric == "wemath":
                summary["wemath"] = wemath_scores(records)
            if b.metric == "mc_vlmeval_circular":
                summary["circular"] = circular_scores(records)
            out[e.name][b.name] = summary
    return out


def evaluate(
    cfg: EvaluateRecipe, checkpoints: Sequence[str] | None = None, progress: bool = True
) -> EvalResult:
    """Run the `evaluate` stage; `checkpoints` ("name=path" or "path") default to `evaluate.checkpoints`."""
    ev = cfg.evaluate
    specs = parse_checkpoints(list(checkpoints or ev.checkpoints or [f"base={cfg.model.name_or_path}"]))
    seed_everything(cfg.seed)
    benchmarks, not_run = load_present(ev)
    wanted = gallery_ids(benchmarks, ev.gallery_samples)
    params = {
        **flatten({"evaluate": to_dict(ev), "rewards": {"attention": to_dict(cfg.rewards.attention)}}),
        **{f"checkpoint.{k}": v for k, v in specs.items()},
    }
    with StageRun(cfg.tracking, stage="evaluate", params=params) as run:
        evals = [evaluate_checkpoint(n, p, benchmarks, cfg, wanted, progress) for n, p in specs.items()]
        metrics = compute_metrics(evals, benchmarks, cfg)
        out = Path(ev.out_dir)
        write_json(out / "metrics.json", json_safe(metrics))
        write_text(out / "accuracy.csv", _csv(accuracy_rows(metrics)))
        write_jsonl(out / "per_sample.jsonl", [{"checkpoint": e.name, **r} for e in evals for r in e.records])
        write_json(out / "not_run.json", [dataclasses.asdict(n) for n in not_run])
        curves = training_curves(cfg.tracking) if cfg.tracking.enabled else {}
        write_report(out, metrics, evals, curves, [n.row() for n in not_run])
        seconds = sum(e.seconds for e in evals)
        answers = sum(len(e.records) for e in evals)
        run.log_metrics(
            {**finite_numbers(flatten(metrics, sep="/")), "answers_per_s": answers / max(seconds, 1e-9)},
            step=0,
        )
        run.log_artifact(out)
        children = {e.name: _log_checkpoint_run(cfg, run.run_id, e, metrics[e.name]) for e in evals}
    return EvalResult(
        out,
        metrics,
        run.run_id,
        children,
        answers / max(seconds, 1e-9),
        records={e.name: e.records for e in evals},
        galleries={e.name: e.gallery for e in evals},
        not_run=not_run,
    )


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _log_checkpoint_run(
    cfg: EvaluateRecipe, parent: str | None, result: CheckpointEval, metrics: dict
) -> str | None:
    """A nested run per checkpoint with `<benchmark>/<metric>` metrics (what the UI compares)."""
    tracking = dataclasses.replace(cfg.tracking, parent_run_id=parent, run_name=f"evaluate-{result.name}")
    params = {"checkpoint": result.path, "checkpoint_name": result.name}
    with StageRun(tracking, stage="evaluate", params=params) as child:
        child.log_metrics(finite_numbers(flatten(metrics, sep="/")), step=0)
        child.log_table(result.records[:500], "per_sample")
    return child.run_id
