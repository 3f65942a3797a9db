"""The ablation's results page, generated from the runs (no number is typed by hand); its numbers come
from `sayo.experiment.summary`, its figures from `sayo.experiment.figures`.

Per arm and evaluation split: accuracy and the attention lift over uniform (the share of the
selected tokens' visual attention on the region minus the region's area fraction), each the mean
over warm starts × seeds × held-out samples with a hierarchical bootstrap interval (two-level with one
warm start), and the paired difference from the baseline arm with its interval
(`sayo.experiment.stats`); with several warm starts, each Δ per warm start, their spread, and whether
one warm start carries the result; mean response length; the signal check of the (first) warm
start; reward and lift curves over training; a heatmap gallery of the same samples for every arm.
The page ends with the paper's findings next to what this run shows, each verdict computed from the
intervals.
"""

from __future__ import annotations

import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sayo.atomic import write_text
from sayo.experiment.ablation import AblationRun
from sayo.experiment.curves import CurveData, curve_lines, read_curves
from sayo.experiment.figures import write_figures
from sayo.experiment.stats import Estimate, hierarchical_paired
from sayo.experiment.summary import (
    LOOKING,
    SPLITS,
    TASK_LOOKING,
    ArmSummary,
    carried_by_one,
    summarize,
    tables,
)
from sayo.train.diagnose import SignalReport

# The paper's reward ablation (Qwen3-VL-8B, average over its benchmarks; as secondary sources
# summarise it, docs/method.md): base model 59.64.
PAPER = {"sayo": 64.03, "accuracy_format": 60.92, "attention_format": 63.96, "all_tokens": 60.51}


def _table(summaries: list[ArmSummary], run: AblationRun, split: str) -> list[str]:
    rows = [
        "| arm | accuracy | Δ accuracy vs baseline | attention lift | Δ lift vs baseline | response length |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in (s for s in summaries if s.split == split):
        label = "SFT warm start" if s.arm == "sft" else run.config.label(s.arm)
        if s.arm == run.config.baseline:
            label += " (baseline)"
        elif s.arm in run.config.compare_with:
            label += f" (Δ vs {run.config.label(run.config.compare_with[s.arm])})"
        delta = {m: s.deltas[m].text() if m in s.deltas else "–" for m in ("correct", "attention_lift")}
        rows.append(
            f"| {label} | {s.values['correct'].text('{:.3f}')} | {delta['correct']} | "
            f"{s.values['attention_lift'].text('{:+.4f}')} | {s.deltas['attention_lift'].text('{:+.4f}') if 'attention_lift' in s.deltas else '–'} | "
            f"{s.values['length'].mean:.1f} |"
        )
    return rows


def _looking_table(summaries: list[ArmSummary], run: AblationRun, split: str) -> list[str]:
    """The looking measures per arm, with Δ from the baseline (paired); the task-level check last."""
    measures = (*LOOKING, *TASK_LOOKING)
    head = " | ".join(f"{title} | Δ vs baseline" for _, title in measures)
    rows = [f"| arm | {head} |", "| --- |" + " --- | --- |" * len(measures)]
    for s in (s for s in summaries if s.split == split):
        label = "SFT warm start" if s.arm == "sft" else run.config.label(s.arm)
        cells = [
            f"{s.values[m].text('{:+.3f}')} | {s.deltas[m].text('{:+.3f}') if m in s.deltas else '–'}"
            for m, _ in measures
        ]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def _verdict(estimate: Estimate | None, claim_positive: bool | None) -> str:
    """`holds` / `reversed` / `not resolved` for a claimed sign (None: the claim is 'about equal')."""
    if estimate is None or math.isnan(estimate.mean):
        return "not measured"
    if claim_positive is None:
        return "holds (interval contains 0)" if not estimate.excludes_zero else "does not hold (they differ)"
    if not estimate.excludes_zero:
        return "not resolved (interval contains 0)"
    return "holds" if (estimate.mean > 0) == claim_positive else "reversed"


def findings(summaries: list[ArmSummary], run: AblationRun) -> list[str]:
    """The paper's findings next to this run's paired differences, each with a computed verdict."""
    get = {(s.arm, s.split): s for s in summaries}
    arms = run.config.arms

    def delta(arm: str, metric: str) -> Estimate | None:
        s = get.get((arm, "heldout"))
        return s.deltas.get(metric) if s is not None else None

    def between(a: str, b: str, metric: str) -> Estimate | None:
        if a not in arms or b not in arms:
            return None
        return hierarchical_paired(
            tables(run, a, "heldout", metric),
            tables(run, b, "heldout", metric),
            samples=run.config.bootstrap_samples,
            confidence=run.config.confidence,
        )

    claims = [
        (
            "SAYO's reward moves attention onto the region (lift above the accuracy-only arm)",
            "the premise (attention maps, not a benchmark number)",
            "sayo",
            delta("sayo", "attention_lift"),
            True,
        ),
        (
            "the same, with the paper's advantages (total reward / group std) in both arms: (b′) − (a′)",
            "the paper's scheme",
            "sayo_paper_adv",
            delta("sayo_paper_adv", "attention_lift"),
            True,
        ),
        (
            "SAYO's reward moves attention onto the region, read at the answer step (not the selected tokens)",
            "(sayo.looking)",
            "sayo",
            delta("sayo", "answer_lift"),
            True,
        ),
        (
            "SAYO's reward changes how the search starts: the reasoning names the asked object first "
            "(a task-level check, search task)",
            "(the behaviour the reward targets here)",
            "sayo",
            delta("sayo", "names_asked_first"),
            True,
        ),
        (
            "the attention + format reward alone moves attention too",
            "the official recipe trains with it alone",
            "attention_format",
            delta("attention_format", "attention_lift"),
            True,
        ),
        (
            "SAYO is more accurate than the accuracy-only reward",
            f"{PAPER['sayo']} vs {PAPER['accuracy_format']}",
            "sayo",
            delta("sayo", "correct"),
            True,
        ),
        (
            "the same, with the paper's advantages in both arms: (b′) − (a′)",
            f"{PAPER['sayo']} vs {PAPER['accuracy_format']}",
            "sayo_paper_adv",
            delta("sayo_paper_adv", "correct"),
            True,
        ),
        (
            "attention-only is about as accurate as SAYO",
            f"{PAPER['attention_format']} vs {PAPER['sayo']}",
            "attention_format",
            between("attention_format", "sayo", "correct"),
            None,
        ),
        (
            "rewarding all tokens is worse than the top-20 % high-entropy tokens (accuracy)",
            f"{PAPER['all_tokens']} vs {PAPER['sayo']}",
            "all_tokens",
            between("all_tokens", "sayo", "correct"),
            False,
        ),
    ]
    rows = [
        "| paper's finding | paper (benchmark average) | this run: paired difference (held-out) | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for text, reported, arm, estimate, sign in claims:
        if arm in arms:
            rows.append(
                f"| {text} | {reported} | {estimate.text() if estimate else '–'} | {_verdict(estimate, sign)} |"
            )
    return rows


def reading(summaries: list[ArmSummary], run: AblationRun) -> list[str]:
    """What the numbers above say, each statement computed from them (what a reader checks first)."""
    cfg, signal = run.config, run.first.signal
    get = {(s.arm, s.split): s for s in summaries}
    out = []
    sft = get.get(("sft", "heldout"))
    if sft is not None and cfg.chance is not None:
        accuracy = sft.values["correct"]
        above = accuracy.low > cfg.chance
        out.append(
            f"- The SFT warm start answers {accuracy.text('{:.3f}')} on the held-out split; guessing gives "
            f"{cfg.chance:.3f}: "
            + (
                "above chance."
                if above
                else "**not above chance** — it does not yet "
                "solve the task by looking, so no reward has correct answers to reinforce from looking."
            )
        )
    within, between = signal.spread.get("region_attention", (math.nan, math.nan))
    mean = signal.means.get("region_attention", math.nan)
    if not math.isnan(within):
        flat = within < 0.05 * abs(mean) or any(w.startswith("region_attention") for w in signal.warnings)
        out.append(
            f"- The region term at the warm start: mean {mean:.4f}, within-group std {within:.4f} "
            f"({within / abs(mean) if mean else math.nan:.1%} of the mean), between-group std {between:.4f}"
            + (
                ": the rollouts of one prompt look at the region almost equally, so GRPO's group-relative "
                "advantages carry little information about looking, whatever their scaling."
                if flat
                else "."
            )
        )
    arms = [s for s in summaries if s.split == "heldout" and s.arm != "sft"]
    if sft is not None and arms:
        start = sft.values["attention_lift"].mean
        lifted = [s for s in arms if s.values["attention_lift"].low > start]
        lengths = [s.values["length"].mean for s in arms]
        out.append(
            f"- GRPO arms whose attention lift is above the warm start's ({start:+.4f}, interval excluding it): "
            f"{len(lifted)} of {len(arms)}, the baseline among them: "
            f"{'yes' if any(s.arm == cfg.baseline for s in lifted) else 'no'}. Mean response length after GRPO: "
            f"{min(lengths):.1f}–{max(lengths):.1f} tokens (warm start {sft.values['length'].mean:.1f}); "
            "movement the baseline shares is not the attention reward's doing — the Δ columns isolate it."
        )
    moved = [
        cfg.label(s.arm) for s in summaries
        if s.split == "heldout" and "attention_lift" in s.deltas and s.deltas["attention_lift"].excludes_zero
        and s.deltas["attention_lift"].mean > 0
    ]  # fmt: skip
    out.append(
        "- Arms whose attention lift is above the baseline's with an interval excluding 0: "
        + (", ".join(moved) if moved else "**none**")
        + "."
    )
    return out


def advantage_table(signal: SignalReport) -> list[str]:
    """Each weighted reward term's share of the advantages under each scheme (`sayo diagnose`)."""
    if not signal.advantages:
        return []
    names = list(next(iter(signal.advantages.values())))
    rows = [
        "Std over the batch of each term's additive part of the advantages (`sayo.loss.advantage_parts`), "
        "by advantage scheme; `recipe` is the scheme this run trains with:",
        "",
        "| scheme | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for scheme, parts in signal.advantages.items():
        rows.append(f"| {scheme} | " + " | ".join(f"{parts.get(n, 0.0):.3f}" for n in names) + " |")
    return [*rows, ""]


def results_markdown(
    run: AblationRun,
    summaries: list[ArmSummary],
    figures: dict[str, Path],
    page: Path,
    curves: CurveData | None = None,
) -> str:
    """The results page (with `curves`, its accuracy-over-steps section)."""
    cfg, signal = run.config, run.first.signal
    rel = {k: os.path.relpath(v, page.parent) for k, v in figures.items()}
    n_held = "/".join(str(t.shape[1]) for t in tables(run, "sft", "heldout", "correct"))
    n_hard = "/".join(str(t.shape[1]) for t in tables(run, "sft", "hard", "correct"))
    command = "sayo experiment ablation" + (" --quick" if run.quick else "")
    n_warm = len(run.warm_starts)
    warm = (
        "one SFT warm start"
        if n_warm == 1
        else f"{n_warm} SFT warm starts ({', '.join(w.spec.name() for w in run.warm_starts)}: data and SFT seeds)"
    )
    level = "two-level bootstrap over seeds and samples" if n_warm == 1 else (
        "hierarchical bootstrap over warm starts, seeds and samples")  # fmt: skip
    lines = [
        "# Results: does the attention reward move attention? (generated)",
        "",
        f"Generated by `{command}` from `{cfg.description or cfg.recipe}` on {datetime.now(UTC):%Y-%m-%d} "
        f"({platform.machine()}, {os.cpu_count()} CPUs); every number below comes from that run.",
        f"Base recipe `{cfg.recipe}`; {warm}; GRPO arms × seeds {run.seeds}"
        + (" from each" if n_warm > 1 else "")
        + f"; evaluated greedily on {n_held} held-out and {n_hard} harder samples"
        + (" (per warm start; " if n_warm > 1 else " (")
        + "same samples for every arm). "
        + _times(run),
        "",
        "Attention lift = the share of the selected answer tokens' visual attention that falls on the region "
        "minus the region's share of image tokens (0 = uniform attention), as `rewards.attention` defines it. "
        f"Intervals: {cfg.confidence:.0%}, {level}; Δ = paired difference "
        f'from the baseline arm ({cfg.label(cfg.baseline)}; an arm marked "Δ vs" from the arm named), same '
        "samples and seeds.",
        "",
        "## Arms",
        "",
        "| arm | overrides of the base recipe |",
        "| --- | --- |",
        *[f"| {cfg.label(a)} | `{' '.join(o) or '(none)'}` |" for a, o in cfg.arms.items()],
        "",
        "## Signal check of the warm start (before GRPO)"
        + (f" — {run.first.spec.name()}" if n_warm > 1 else ""),
        "",
        f"{signal.groups} prompts × {signal.group_size} rollouts at the GRPO temperature (`sayo diagnose`):",
        "",
        "| reward term | mean | within-group std | between-group std |",
        "| --- | --- | --- | --- |",
        *[f"| {n} | {signal.means[n]:.4f} | {w:.4f} | {b:.4f} |" for n, (w, b) in signal.spread.items()],
        "",
        f"Attention share {signal.attention_share:.4f}, lift over uniform {signal.attention_lift:+.4f}."
        + (
            " Warnings: " + "; ".join(signal.warnings)
            if signal.warnings
            else " No term lacks within-group signal."
        ),
        "",
        *advantage_table(signal),
        *reading_lines(signal),
    ]
    for split, title in SPLITS:
        lines += [f"## {title[0].upper() + title[1:]}", "", *_table(summaries, run, split), ""]
        lines += [
            'Where the answer looks (docs/method.md, "Where the answer looks": read at fixed steps, not '
            "the selected tokens; the last column is a task-level check of the search task, read off "
            "the answer's text):",
            "",
            *_looking_table(summaries, run, split),
            "",
        ]
    lines += warm_start_lines(summaries, run)
    lines += ["## The paper's findings here", "", *findings(summaries, run), ""]
    if curves is not None:
        lines += curve_lines(run, curves, _verdict)
    lines += ["## Reading this run", "", *reading(summaries, run), ""]
    if cfg.discussion.strip():
        lines += ["## Why (the miniature's design and its limits)", "", cfg.discussion.strip(), ""]
    lines += [f"![{name}]({path})" for name, path in rel.items()]
    return "\n".join(lines) + "\n"


def warm_start_lines(summaries: list[ArmSummary], run: AblationRun) -> list[str]:
    """Each Δ within each warm start, their spread, and whether one warm start carries the pooled Δ."""
    if len(run.warm_starts) < 2:
        return []
    names = [w.spec.name() for w in run.warm_starts]
    lines = [
        "## Between warm starts",
        "",
        "Each arm's paired Δ from the baseline within each warm start (its own two-level interval), the "
        "standard deviation of those Δ across warm starts, and the warm start without which the pooled "
        "interval would no longer exclude 0 (the result then rests on it):",
        "",
        "| split | arm | metric | " + " | ".join(names) + " | spread (std) | pooled Δ | carried by one |",
        "| --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |",
    ]
    for s in summaries:
        for metric, label in (
            ("correct", "accuracy"),
            ("attention_lift", "lift"),
            ("answer_lift", "answer-step lift"),
            ("names_asked_first", "names asked first (search task)"),
        ):
            if metric not in s.per_warm:
                continue
            per = s.per_warm[metric]
            means = [e.mean for e in per if not math.isnan(e.mean)]
            spread = f"{np.std(means, ddof=1):.3f}" if len(means) > 1 else "–"
            carried = carried_by_one(run, s.arm, s.split, metric, s.deltas[metric])
            lines.append(
                f"| {s.split} | {run.config.label(s.arm)} | {label} | "
                + " | ".join(e.text("{:+.3f}") for e in per)
                + f" | {spread} | {s.deltas[metric].text('{:+.3f}')} | {carried or '–'} |"
            )
    signals = [
        f"{w.spec.name()} {w.signal.spread.get('region_attention', (math.nan, math.nan))[0]:.4f}"
        for w in run.warm_starts
    ]
    return [*lines, "", "Region term's within-group std at each warm start: " + ", ".join(signals) + ".", ""]


def reading_lines(signal: SignalReport) -> list[str]:
    """Whether the warm start answers by looking, and which link fails (`sayo.train.reading`)."""
    if signal.reading is None:
        return []
    read = signal.reading
    verdict = "no (see the warning above)" if read.warning() else "yes"
    line = read.line()
    return [
        "Does the warm start answer by looking? (`sayo diagnose`, training samples, the answer "
        f"teacher-forced after the SFT reasoning): {verdict}. {line[0].upper()}{line[1:]}.",
        "",
    ]


def _times(run: AblationRun) -> str:
    """The run's wall time and each step's, summed over the jobs when several ran side by side."""
    steps = {k: v for k, v in run.seconds.items() if k != "wall"}
    text = ", ".join(f"{k} {v / 60:.1f} min" if v >= 1 else f"{k} reused" for k, v in steps.items())
    if "wall" not in run.seconds:
        return f"Wall time: {text}."
    jobs = f" on {run.jobs} jobs (steps summed over the jobs" if run.jobs > 1 else " (steps"
    return f"Wall time {run.seconds['wall'] / 60:.1f} min{jobs}: {text})."


def write_results(run: AblationRun, page: Path) -> Path:
    """Figures next to `page` (in `<page stem>/`) and the page itself."""
    summaries, curves = summarize(run), read_curves(run)
    figures = write_figures(run, summaries, page.parent / page.stem, curves)
    return write_text(page, results_markdown(run, summaries, figures, page, curves))
