"""Which metric scores a benchmark, and scoring one completion with it (docs/evaluation.md).

Why per benchmark: a published number is only comparable when it is computed the way the
benchmark's own evaluation computes it — ChartQA's relaxed accuracy reads "1,234" as a string,
VLMEvalKit's multiple-choice matching gives up on ambiguous answers, MME-RealWorld takes the first
capital A–E. `evaluate.benchmarks[].metric` names the metric; `auto` picks it from the benchmark's
name (or its file name), and a benchmark the table below does not know is scored by answer type
with the same official matchers (`by_answer_type`). The training reward's lenient matching stays
available as `lenient`, never the default. The metric used is recorded in `metrics.json`.

| metric | per answer |
| --- | --- |
| `chartqa_relaxed` | pix2struct / VLMEvalKit relaxed accuracy (5 % on numbers `float()` reads) |
| `mc_vlmeval` | VLMEvalKit `can_infer` (exact matching, no LLM judge) equals the answer letter |
| `mc_vlmeval_circular` | `mc_vlmeval`, plus MMBench's circular accuracy over option-shifted copies |
| `mc_mme_realworld` | MME-RealWorld's letter extraction equals the answer letter |
| `wemath` | We-Math's "Answer" rule equals the answer letter; plus the four-dimensional scores |
| `hallusionbench` | VLMEvalKit's yes/no extraction equals the answer; plus aAcc, fAcc, qAcc |
| `mathvista` | MathVista's rule-based extraction and normalisation (no GPT step), then `==` |
| `wtq_denotation` | WikiTableQuestions denotation match (TableVQA-Bench VWTQ; `sayo.rewards.wtq`) |
| `math_equal` | MATH-Vision's `is_equal` without LaTeX (options through `can_infer`) |
| `exact` | equal after stripping and lower-casing (VLMEvalKit's `accuracy` method) |
| `by_answer_type` | `mc_vlmeval` for choice, `chartqa_relaxed` for number, else `exact` |
| `lenient` | `sayo.rewards.score_answer`, exactly the training reward's accuracy |
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from sayo.data.schema import AnswerType, Sample
from sayo.evaluate.config import METRICS
from sayo.rewards import extract_answer, score_answer
from sayo.rewards.official import (
    can_infer,
    chartqa_relaxed,
    exact_accuracy,
    mathvista_correct,
    mme_realworld_choice,
    official_prediction,
    options_by_letter,
    split_think,
    value_equal,
    wemath_choice,
    yes_no,
    yes_no_answer,
)
from sayo.rewards.wtq import wtq_correct

# `auto`: (fragment of the benchmark name lower-cased with only letters and digits kept, metric);
# the first match wins, tried on the configured name, then on the file (or directory) name.
AUTO_METRICS: tuple[tuple[str, str], ...] = (
    ("chartqa", "chartqa_relaxed"),
    ("mmerealworld", "mc_mme_realworld"),
    ("wemath", "wemath"),
    ("hallusion", "hallusionbench"),
    ("mathvista", "mathvista"),
    ("tablevqa", "wtq_denotation"),
    ("mathvision", "math_equal"),
    ("mathverse", "math_equal"),  # the official scoring is an LLM judge: the closest judge-free rule
    ("charxiv", "math_equal"),  # the official grading is an LLM judge: the closest judge-free rule
    ("mmstar", "mc_vlmeval"),
    ("ai2d", "mc_vlmeval"),
    ("vstar", "mc_vlmeval"),
    ("mmbench", "mc_vlmeval_circular"),  # VLMEvalKit scores these circularly
    ("ccbench", "mc_vlmeval_circular"),
    ("circular", "mc_vlmeval_circular"),
)
CHOICE_ONLY = ("mc_vlmeval", "mc_vlmeval_circular", "mc_mme_realworld", "wemath")  # multiple choice only
METRIC_COLUMNS = {  # the source columns a metric reads
    "wemath": ("ID", "key"),
    "mc_vlmeval_circular": ("index", "g_index"),
    "hallusionbench": ("category", "subcategory", "set_id", "figure_id", "question_id"),
    "mathvista": ("question_type", "answer_type", "precision"),
}


def resolve_metric(metric: str, name: str, path: str) -> str:
    """The metric a benchmark is scored with: `metric` itself, or for `auto` the one its name implies."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if metric != "auto":
        return metric
    for text in (name, Path(path).stem):
        key = re.sub(r"[^a-z0-9]", "", text.lower())
        for fragment, chosen in AUTO_METRICS:
            if fragment in key:
                return chosen
    return "by_answer_type"


def answer_letter(sample: Sample) -> str | None:
    """The option letter of a multiple-choice reference (given as a letter or as the option text)."""
    if not sample.choices:
        return None
    options = options_by_letter(sample.choices)
    letter = sample.answer.strip().upper()
    if letter in options:
        return letter
    by_text = [k for k, v in options.items() if v.strip().lower() == sample.answer.strip().lower()]
    return by_text[0] if len(by_text) == 1 else None


def check_samples(metric: str, samples: Sequence[Sample], benchmark: str) -> None:
    """Fail early, naming the sample, when `metric` cannot score one of `samples`."""
    if metric not in CHOICE_ONLY:
        return
    for sample in samples:
        if sample.answer_type is not AnswerType.CHOICE:
            raise ValueError(
                f"benchmark {benchmark!r}: metric {metric!r} scores multiple choice only, but sample "
                f"{sample.id!r} has answer_type {sample.answer_type.value!r}; set evaluate.benchmarks[].metric"
            )
        if answer_letter(sample) is None:
            raise ValueError(
                f"benchmark {benchmark!r}: sample {sample.id!r} answer {sample.answer!r} is neither an option "
                f"letter nor one option's text ({sample.choices})"
            )


def score_completion(
    metric: str,
    completion: str,
    sample: Sample,
    tolerance: float = 0.05,
    extra: Mapping[str, str] | None = None,
) -> tuple[float, str | None]:
    """(1.0 or 0.0, the prediction the metric read) for one completion.

    Every metric but `lenient` reads `official_prediction(completion)`; `mc_mme_realworld` reads
    the text after the reasoning and finds the answer tag itself, as MME-RealWorld's evaluation does.
    `extra`: the sample's source columns (MathVista's `answer_type` and `precision`).
    """
    if metric == "lenient":
        extracted = extract_answer(completion)
        score = score_answer(extracted, sample.answer, sample.answer_type.value, sample.choices, tolerance)
        return score, extracted
    if metric == "mc_mme_realworld":
        letter = mme_realworld_choice(split_think(completion))
        return float(letter != "" and letter == answer_letter(sample)), letter
    prediction = official_prediction(completion)
    if metric == "mathvista":
        return float(_mathvista(prediction, sample, metric_meta(metric, dict(extra or {})))), prediction
    if metric == "by_answer_type":
        metric = {AnswerType.CHOICE: "mc_vlmeval", AnswerType.NUMBER: "chartqa_relaxed"}.get(
            sample.answer_type, "exact"
        )
    return float(_correct(metric, prediction, sample, tolerance)), prediction


def _correct(metric: str, prediction: str, sample: Sample, tolerance: float) -> bool:
    if metric == "chartqa_relaxed":
        return chartqa_relaxed(prediction, sample.answer, tolerance)
    if metric == "exact":
        return exact_accuracy(prediction, sample.answer)
    if metric in ("mc_vlmeval", "mc_vlmeval_circular"):
        return sample.choices is not None and can_infer(
            prediction, options_by_letter(sample.choices)
        ) == answer_letter(sample)
    if metric == "wemath":
        return wemath_choice(prediction) == answer_letter(sample)
    if metric == "wtq_denotation":
        return wtq_correct(prediction, sample.answer)
    if metric == "hallusionbench":
        return yes_no(prediction) == yes_no_answer(sample.answer)
    if metric == "math_equal":
        if sample.choices:  # options: the inferred letter against the answer letter
            letter = can_infer(prediction, options_by_letter(sample.choices))
            return letter is not None and value_equal(letter, answer_letter(sample) or sample.answer)
        return value_equal(prediction, sample.answer)
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _mathvista(prediction: str, sample: Sample, meta: Mapping[str, str]) -> bool:
    """MathVista's score; its reference for multiple choice is the option text (ours: the letter)."""
    choices = sample.choices or []
    letter = answer_letter(sample)
    answer = choices[ord(letter) - ord("A")] if choices and letter else sample.answer
    kind = meta.get("answer_type") or ("text" if choices else sample.answer_type.value)
    return mathvista_correct(prediction, answer, choices, kind, meta.get("precision", ""))


def metric_meta(metric: str, extra: dict[str, str]) -> dict[str, str]:
    """The source columns `metric`'s benchmark scores need, from a sample's extra columns (any case)."""
    wanted = METRIC_COLUMNS.get(metric, ())
    lowered = {k.lower(): v for k, v in extra.items()}
    return {name: lowered[name.lower()] for name in wanted if name.lower() in lowered}
