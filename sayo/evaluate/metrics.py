"""Evaluation metrics: pure functions from per-answer records to numbers (docs/method.md, "Evaluation").

Why bootstrap intervals: the paper's gains are a few points (up to +4.5), while a 500-sample
benchmark has a binomial standard error of about 2 points; without an interval a comparison of
checkpoints cannot tell progress from noise. The interval is the percentile bootstrap of the mean
with a seeded numpy generator, so the same records always give the same interval.

A record is one answer: `correct` (0/1), `format` (0/1), `length` (response tokens), optional
`region_attention` (None for samples without regions), `category`, `draw` (which of the `n`
answers to its prompt) and, for metrics that group answers, `meta` (source columns such as
We-Math's `ID` and `key`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, Any]


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values`; (nan, nan) when empty.

    Example: `bootstrap_ci([1, 1, 1])` is `(1.0, 1.0)`: every resample has mean 1.
    """
    data = np.asarray(values, dtype=np.float64)  # [N]
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(samples, data.size))  # [S, N]
    means = data[picks].mean(axis=1)  # [S]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


LOOKING = ("answer_lift", "all_lift", "peak_in_region")  # per-answer looking measures (sayo.looking)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def summarize(
    records: Sequence[Record], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Accuracy with its interval, format rate, mean length and attention-on-region of `records`.

    `region_attention` (the share of visual attention on the region), `attention_lift` (that share
    minus the region's area fraction: 0 = uniform attention) and `attention_reward` (the configured
    reward form) average only the records that have them (grounded samples); `num_grounded` says
    how many that is. The looking measures of `sayo.looking` (`answer_lift`, `all_lift`,
    `peak_in_region`) average the records that have them the same way.
    """
    correct = [float(r["correct"]) for r in records]
    attention = [float(r["region_attention"]) for r in records if r.get("region_attention") is not None]
    lift = [float(r["attention_lift"]) for r in records if r.get("attention_lift") is not None]
    reward = [float(r["attention_reward"]) for r in records if r.get("attention_reward") is not None]
    low, high = bootstrap_ci(correct, samples=samples, seed=seed, confidence=confidence)
    return {
        "accuracy": _mean(correct),
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "format_rate": _mean([float(r["format"]) for r in records]),
        "response_length_mean": _mean([float(r["length"]) for r in records]),
        "region_attention": _mean(attention),
        "attention_lift": _mean(lift),
        "attention_reward": _mean(reward),
        **{key: _mean([float(r[key]) for r in records if r.get(key) is not None]) for key in LOOKING},
        "num_answers": float(len(records)),
        "num_grounded": float(len(attention)),
    }


def group_by(records: Iterable[Record], key: str) -> dict[str, list[Record]]:
    """Records grouped by the value of `key` (missing or empty → "none"), in first-seen order."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(str(record.get(key) or "none"), []).append(record)
    return groups


def benchmark_metrics(
    records: Sequence[Record], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """`summarize` of all records plus a `categories` mapping with the same summary per category."""
    out: dict[str, Any] = summarize(records, samples=samples, seed=seed, confidence=confidence)
    out["categories"] = {
        name: summarize(group, samples=samples, seed=seed, confidence=confidence)
        for name, group in group_by(records, "category").items()
    }
    return out


CIRCULAR_OFFSET = 1_000_000  # MMBench: row index = shift * 10^6 + the index of the question's first row


def circular_scores(records: Sequence[Record]) -> dict[str, float]:
    """MMBench's circular accuracy (VLMEvalKit, exact matching), averaged over the `n` draws.

    The rows of one question (`meta.g_index`, else `meta.index` modulo 10^6) show its options in
    shifted orders; the question counts as answered only if every one of its rows is answered
    correctly. Questions are those whose first row (index == group) is present.
    """
    draws = sorted({int(r.get("draw", 0)) for r in records})
    per_draw = [_circular_draw([r for r in records if int(r.get("draw", 0)) == d]) for d in draws]
    if not per_draw:
        return {"accuracy": math.nan, "num_questions": 0.0}
    return {key: float(np.mean([d[key] for d in per_draw])) for key in per_draw[0]}


def _circular_draw(records: Sequence[Record]) -> dict[str, float]:
    groups: dict[int, list[bool]] = {}
    main: set[int] = set()
    for r in records:
        meta = r.get("meta") or {}
        try:
            index = int(meta["index"])
            group = int(meta["g_index"]) if meta.get("g_index") else index % CIRCULAR_OFFSET
        except (KeyError, ValueError):
            continue  # not an MMBench-style integer index
        groups.setdefault(group, []).append(bool(r["correct"]))
        if index == group:
            main.add(group)
    hits = [float(all(groups[g])) for g in sorted(main)]
    return {"accuracy": _mean(hits), "num_questions": float(len(hits))}


WEMATH_STEPS = {2: ("2steps_1", "2steps_2"), 3: ("3steps_1", "3steps_2", "3steps_3")}


def wemath_scores(records: Sequence[Record]) -> dict[str, float]:
    """We-Math's four-dimensional metrics of multi-step problems, averaged over the `n` draws.

    A problem (`meta.ID`) with n steps has one-step sub-questions (`meta.key` "{n}steps_1" …) and
    the composite question ("{n}steps_multi"). By which of them are answered correctly it shows
    Insufficient Knowledge (IK: a step wrong, composite wrong), Inadequate Generalisation (IG: all
    steps right, composite wrong), Complete Mastery (CM: composite right with all steps right —
    strict — or any — loose) or Rote Memorisation (RM: composite right with a step wrong — strict —
    or all steps wrong — loose). Score = (N − 0.5·IG − RM − IK) / N, strict and loose; the RM rate
    is RM / (CM + RM), the others are shares of N. S1, S2, S3: accuracy of the one-step questions,
    and of the composite questions of two- and three-step problems. The reference hard-codes
    N = 525 (its test set); here N counts the complete problems found, and problems with a missing
    row are left out and counted (`num_incomplete`).
    """
    draws = sorted({int(r.get("draw", 0)) for r in records})
    per_draw = [_wemath_draw([r for r in records if int(r.get("draw", 0)) == d]) for d in draws]
    if not per_draw:
        return {"num_problems": 0.0, "num_incomplete": 0.0}
    return {key: float(np.mean([d[key] for d in per_draw])) for key in per_draw[0]}


def _wemath_draw(records: Sequence[Record]) -> dict[str, float]:
    answers: dict[tuple[str, str], bool] = {}
    for r in records:
        meta = r.get("meta") or {}
        if meta.get("ID") and meta.get("key"):
            answers.setdefault((str(meta["ID"]), str(meta["key"])), bool(r["correct"]))
    problems: list[tuple[int, list[bool], bool]] = []
    incomplete = 0
    for n, keys in WEMATH_STEPS.items():
        for problem_id in sorted({pid for pid, key in answers if key == keys[0]}):
            steps = [answers.get((problem_id, key)) for key in keys]
            multi = answers.get((problem_id, f"{n}steps_multi"))
            if multi is None or any(s is None for s in steps):
                incomplete += 1
                continue
            problems.append((n, [bool(s) for s in steps], multi))
    total = len(problems)
    out = {"num_problems": float(total), "num_incomplete": float(incomplete)}
    if not total:
        return out
    ik = sum(not all(s) and not m for _, s, m in problems)
    ig = sum(all(s) and not m for _, s, m in problems)
    cm_strict, cm_loose = (sum(f(s) and m for _, s, m in problems) for f in (all, any))
    rm_strict = sum(not all(s) and m for _, s, m in problems)
    rm_loose = sum(not any(s) and m for _, s, m in problems)

    def share(count: float, of: float) -> float:
        return count / of if of else math.nan

    out.update(
        score_strict=(total - 0.5 * ig - rm_strict - ik) / total,
        score_loose=(total - 0.5 * ig - rm_loose - ik) / total,
        insufficient_knowledge=ik / total,
        inadequate_generalization=ig / total,
        complete_mastery_strict=cm_strict / total,
        complete_mastery_loose=cm_loose / total,
        rote_memorization_strict=share(rm_strict, cm_strict + rm_strict),
        rote_memorization_loose=share(rm_loose, cm_loose + rm_loose),
        one_step_accuracy=_mean([float(x) for _, s, _ in problems for x in s]),
        two_step_accuracy=_mean([float(m) for n, _, m in problems if n == 2]),
        three_step_accuracy=_mean([float(m) for n, _, m in problems if n == 3]),
    )
    return out


HALLUSION_KEYS = ("category", "subcategory", "set_id")  # with figure_id (fAcc) or question_id (qAcc)


def hallusion_scores(records: Sequence[Record]) -> dict[str, float]:
    """HallusionBench's aAcc, fAcc and qAcc (as fractions), averaged over the `n` draws.

    aAcc: the share of questions answered correctly. fAcc: the share of figures (category,
    subcategory, `set_id`, `figure_id`) whose questions are all answered correctly. qAcc: the share
    of questions (category, subcategory, `set_id`, `question_id`) answered correctly on every figure
    they are asked about (the original and the edited one). Records without these columns count
    only in aAcc.
    """
    draws = sorted({int(r.get("draw", 0)) for r in records})
    per_draw = [_hallusion_draw([r for r in records if int(r.get("draw", 0)) == d]) for d in draws]
    if not per_draw:
        return {
            "aAcc": math.nan,
            "fAcc": math.nan,
            "qAcc": math.nan,
            "num_figures": 0.0,
            "num_questions": 0.0,
        }
    return {key: float(np.mean([d[key] for d in per_draw])) for key in per_draw[0]}


def _hallusion_draw(records: Sequence[Record]) -> dict[str, float]:
    figures: dict[tuple[str, ...], list[bool]] = {}
    questions: dict[tuple[str, ...], list[bool]] = {}
    for r in records:
        meta = r.get("meta") or {}
        if not all(meta.get(k) not in (None, "") for k in (*HALLUSION_KEYS, "figure_id", "question_id")):
            continue
        group = tuple(str(meta[k]) for k in HALLUSION_KEYS)
        figures.setdefault((*group, str(meta["figure_id"])), []).append(bool(r["correct"]))
        questions.setdefault((*group, str(meta["question_id"])), []).append(bool(r["correct"]))
    return {
        "aAcc": _mean([float(r["correct"]) for r in records]),
        "fAcc": _mean([float(all(v)) for v in figures.values()]),
        "qAcc": _mean([float(all(v)) for v in questions.values()]),
        "num_figures": float(len(figures)),
        "num_questions": float(len(questions)),
    }


def json_safe(nested: Any) -> Any:
    """NaN → None, recursively, so metrics.json is strict JSON (DVC and browsers reject NaN)."""
    if isinstance(nested, Mapping):
        return {k: json_safe(v) for k, v in nested.items()}
    if isinstance(nested, float) and not math.isfinite(nested):
        return None
    return nested


def accuracy_rows(nested: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per checkpoint × benchmark (accuracy and interval), for `dvc plots` and CSV."""
    return [
        {
            "label": f"{checkpoint}/{bench}",
            "checkpoint": checkpoint,
            "benchmark": bench,
            "accuracy": values["accuracy"],
            "ci_low": values["accuracy_ci_low"],
            "ci_high": values["accuracy_ci_high"],
        }
        for checkpoint, benches in nested.items()
        for bench, values in benches.items()
    ]
