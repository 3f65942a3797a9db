"""Evaluation metrics by hand, checkpoint specs, and TSV benchmarks routed to the right scorer."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sayo.answering import Answers
from sayo.config import finite_numbers, flatten
from sayo.data.schema import Sample
from sayo.data.validate import DataValidationError
from sayo.evaluate.benchmarks import load_benchmark
from sayo.evaluate.config import BenchmarkConfig, EvalConfig
from sayo.evaluate.metrics import (
    accuracy_rows,
    benchmark_metrics,
    bootstrap_ci,
    circular_scores,
    group_by,
    json_safe,
    summarize,
    wemath_scores,
)
from sayo.evaluate.run import CheckpointEval, _records, compute_metrics, parse_checkpoints
from sayo.evaluate.scorers import resolve_metric, score_completion
from sayo.rewards import accuracy_reward

ROOT = Path(__file__).resolve().parents[1]
GOOD = Path(__file__).parent / "data" / "good"


def _record(
    correct: float, fmt: float = 1.0, length: int = 10, attention: float | None = None, category: str = "a"
):
    return {
        "correct": correct,
        "format": fmt,
        "length": length,
        "region_attention": attention,
        "category": category,
    }


def test_bootstrap_ci_by_hand() -> None:
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)  # every resample has mean 1
    assert bootstrap_ci([0.5]) == (0.5, 0.5)  # one value: no spread
    assert all(math.isnan(v) for v in bootstrap_ci([]))  # nothing to resample
    # two values 0 and 1, four resamples of size 2 drawn with the same seeded generator
    picks = np.random.default_rng(3).integers(0, 2, size=(4, 2))
    means = np.array([0.0, 1.0])[picks].mean(axis=1)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_ci([0, 1], samples=4, seed=3) == pytest.approx(expected)


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_ci(values, samples=2000, seed=0)
    assert bootstrap_ci(values, samples=2000, seed=0) == (low, high)  # same seed, same interval
    assert low < 0.3 < high and low > 0.19 and high < 0.41  # binomial s.e. is ~0.046


def test_summarize_by_hand() -> None:
    records = [
        _record(1, 1, 10, 0.5),
        _record(0, 0, 20, None),
        _record(1, 1, 30, 0.1),
        _record(0, 1, 40, None),
    ]
    out = summarize(records, samples=50)
    assert out["accuracy"] == 0.5
    assert out["format_rate"] == 0.75
    assert out["response_length_mean"] == 25.0
    assert out["region_attention"] == pytest.approx(0.3)  # only the two grounded answers
    assert (out["num_answers"], out["num_grounded"]) == (4.0, 2.0)
    assert 0.0 <= out["accuracy_ci_low"] <= 0.5 <= out["accuracy_ci_high"] <= 1.0


def test_no_grounded_answers_gives_nan_attention() -> None:
    assert math.isnan(summarize([_record(1)])["region_attention"])


def test_per_category_metrics() -> None:
    records = [
        _record(1, category="bars"),
        _record(0, category="bars"),
        _record(1, category="shapes"),
        _record(1, category=""),
    ]
    assert list(group_by(records, "category")) == ["bars", "shapes", "none"]  # first-seen order, empty → none
    out = benchmark_metrics(records, samples=10)
    assert out["accuracy"] == 0.75
    assert out["categories"]["bars"]["accuracy"] == 0.5
    assert out["categories"]["shapes"]["accuracy"] == 1.0


def test_flat_metrics_and_json_safety() -> None:
    nested = {"grpo": {"chart": {"accuracy": 0.5, "region_attention": math.nan, "metric": "chartqa_relaxed"}}}
    assert finite_numbers(flatten(nested, sep="/")) == {
        "grpo/chart/accuracy": 0.5
    }  # the metric name is no number
    assert json_safe(nested) == {
        "grpo": {"chart": {"accuracy": 0.5, "region_attention": None, "metric": "chartqa_relaxed"}}
    }
    row = accuracy_rows(
        {"base": {"chart": {"accuracy": 0.5, "accuracy_ci_low": 0.4, "accuracy_ci_high": 0.6}}}
    )
    assert row == [{"label": "base/chart", "checkpoint": "base", "benchmark": "chart", "accuracy": 0.5,
                    "ci_low": 0.4, "ci_high": 0.6}]  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["base=tiny"], {"base": "tiny"}),  # named
        (
            ["outputs/checkpoints/grpo/final"],
            {"grpo": "outputs/checkpoints/grpo/final"},
        ),  # final → parent name
        (["ckpt/sft/step-00000300"], {"sft": "ckpt/sft/step-00000300"}),  # step dir → parent name
        (["tiny", "my=/a/b"], {"tiny": "tiny", "my": "/a/b"}),  # bare name and named path
    ],
)
def test_parse_checkpoints(specs: list[str], expected: dict[str, str]) -> None:
    assert parse_checkpoints(specs) == expected


@pytest.mark.parametrize("specs", [[], ["a=x", "a=y"], ["=x"]])  # none, duplicate name, empty name
def test_parse_checkpoints_rejects(specs: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_checkpoints(specs)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"evaluate\.n"):
        EvalConfig(n=4)  # sampling several answers needs do_sample
    with pytest.raises(ValueError, match=r"evaluate\.benchmarks"):
        EvalConfig(benchmarks=[BenchmarkConfig(name="a"), BenchmarkConfig(name="a")])
    with pytest.raises(ValueError, match="type"):
        BenchmarkConfig(type="csv")  # type: ignore[arg-type]


def png_base64(colour: str = "red", size: tuple[int, int] = (112, 84)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_vlmevalkit_tsv(path: Path) -> Path:
    """Four rows: ChartQA-style numbers (one with a box), and We-Math-style multiple choice."""
    header = ["index", "image", "question", "answer", "A", "B", "C", "D", "category", "bbox"]
    rows = [
        ["1", png_base64("red"), "Total sales?", "1,234", "", "", "", "", "chart", "[0, 0, 56, 42]"],
        ["2", png_base64("blue"), "Growth in %?", "12.5", "", "", "", "", "chart", ""],
        [
            "3",
            png_base64("green"),
            "Which shape?",
            "B",
            "circle",
            "square",
            "",
            "",
            "math",
            "[[10, 10, 50, 50]]",
        ],
        ["4", png_base64("white"), "Which colour?", "A", "(A) white", "(B) black", "", "", "math", ""],
    ]
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def test_tsv_benchmark_answers_are_scored_by_their_type(tmp_path: Path) -> None:
    bench = load_benchmark(
        BenchmarkConfig(name="mixed", type="tsv", path=str(write_vlmevalkit_tsv(tmp_path / "b.tsv")))
    )
    assert [s.answer_type.value for s in bench.samples] == ["number", "number", "choice", "choice"]
    assert [len(s.regions) for s in bench.samples] == [1, 0, 1, 0]
    assert bench.images[0].size == (112, 84)
    completions = [
        "<think>sum</think><answer>1234 units</answer>",  # commas and units: relaxed numeric match
        "Answer: 12.9%",  # within 5 % relative of 12.5, percent sign dropped
        "<answer>(B)</answer>",  # option letter in brackets
        "Answer: b",  # lower-case letter after "Answer:"
    ]
    samples = bench.samples
    scores = accuracy_reward(completions, [s.answer for s in samples], [s.answer_type.value for s in samples],
                             [s.choices for s in samples])  # fmt: skip
    assert scores.tolist() == [1.0, 1.0, 1.0, 0.0]  # "b" names option B, the answer is A


def test_tsv_benchmark_max_samples_and_bad_rows(tmp_path: Path) -> None:
    path = write_vlmevalkit_tsv(tmp_path / "b.tsv")
    assert len(load_benchmark(BenchmarkConfig(name="m", type="tsv", path=str(path), max_samples=2))) == 2
    path.write_text(path.read_text().replace("[0, 0, 56, 42]", "[0, 0, 560, 42]"))  # box outside the image
    with pytest.raises(ValueError, match="bbox"):
        load_benchmark(BenchmarkConfig(name="m", type="tsv", path=str(path)))


@pytest.mark.parametrize("config", ["tiny", "qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_recipes_have_evaluate_and_register_sections(config: str) -> None:
    from sayo.recipe import load_recipe

    cfg = load_recipe(config, ["evaluate.batch_size=3"])
    assert cfg.evaluate.batch_size == 3 and cfg.evaluate.benchmarks[0].name == "synthetic"
    assert [c.split("=")[0] for c in cfg.evaluate.checkpoints] == ["base", "sft", "grpo"]
    assert cfg.register.gate_metrics == ["synthetic/accuracy"]


def test_tsv_benchmark_official_scoring_is_stricter_than_the_reward(tmp_path: Path) -> None:
    """The same completions as above under the default metric (`by_answer_type`, official matchers)."""
    bench = load_benchmark(
        BenchmarkConfig(name="mixed", type="tsv", path=str(write_vlmevalkit_tsv(tmp_path / "b.tsv")))
    )
    assert bench.metric == "by_answer_type"
    completions = [
        "<think>sum</think><answer>1,234</answer>",  # the answer's own spelling: the same string
        "<answer>1234 units</answer>",  # float() reads neither "1,234" nor "1234 units": strings differ
        "Answer: 12.9",  # no tag: the prediction is "Answer: 12.9", which is no number
        "<answer>12.9</answer>",  # within 5 % of 12.5
    ]
    samples = [bench.samples[0], bench.samples[0], bench.samples[1], bench.samples[1]]
    scored = [score_completion(bench.metric, c, s) for c, s in zip(completions, samples, strict=True)]
    assert scored == [(1.0, "1,234"), (0.0, "1234 units"), (0.0, "Answer: 12.9"), (1.0, "12.9")]
    lenient = [score_completion("lenient", c, s)[0] for c, s in zip(completions, samples, strict=True)]
    assert lenient == [1.0, 1.0, 1.0, 1.0]  # the training reward accepts all four


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [
        ("ChartQA_TEST", "x.tsv", "chartqa_relaxed"),
        ("chart", "/data/ChartQA_TEST.tsv", "chartqa_relaxed"),  # the file name when the name says nothing
        ("MMStar", "x.tsv", "mc_vlmeval"),
        ("AI2D_TEST", "x.tsv", "mc_vlmeval"),
        ("VStarBench", "x.tsv", "mc_vlmeval"),
        ("MMBench_DEV_EN", "x.tsv", "mc_vlmeval_circular"),
        ("BLINK_circular", "x.tsv", "mc_vlmeval_circular"),
        ("MME-RealWorld-Lite", "x.tsv", "mc_mme_realworld"),
        ("We-Math", "x.tsv", "wemath"),
        ("MathVision_MINI", "x.tsv", "math_equal"),
        ("CharXiv_reasoning_val", "x.tsv", "math_equal"),
        ("synthetic", "data/processed", "by_answer_type"),
    ],
)
def test_auto_metric_from_the_benchmark_name(name: str, path: str, expected: str) -> None:
    assert resolve_metric("auto", name, path) == expected
    assert resolve_metric("lenient", name, path) == "lenient"  # an explicit metric is kept


def test_metric_config_is_checked() -> None:
    with pytest.raises(ValueError, match=r"evaluate\.benchmarks\[\]\.metric"):
        BenchmarkConfig(metric="relaxed")
    with pytest.raises(ValueError, match=r"evaluate\.numeric_tolerance"):
        EvalConfig(numeric_tolerance=-0.1)


def test_multiple_choice_metric_refuses_other_answers(tmp_path: Path) -> None:
    path = str(write_vlmevalkit_tsv(tmp_path / "b.tsv"))
    with pytest.raises(ValueError, match="sample 'mmstar-1' has answer_type 'number'"):
        load_benchmark(BenchmarkConfig(name="mmstar", type="tsv", path=path))


CHOICES = ["red", "green", "blue", "yellow"]
# (metric, completion, answer, choices, expected score)
SCORE_CASES = [
    ("mc_vlmeval", "<answer>B</answer>", "B", CHOICES, 1.0),
    ("mc_vlmeval", "<answer>green</answer>", "B", CHOICES, 1.0),  # option text
    ("mc_vlmeval", "<answer>A or B</answer>", "B", CHOICES, 0.0),  # ambiguous
    ("mc_vlmeval", "<answer>b</answer>", "B", CHOICES, 0.0),  # lower-case letter: not a letter word
    ("mc_vlmeval", "<answer>B</answer>", "green", CHOICES, 1.0),  # the reference given as option text
    ("mc_mme_realworld", "<think>A? no.</think><answer>b</answer>", "B", CHOICES, 1.0),  # tag, upper-cased
    ("mc_mme_realworld", "<think>A? no.</think>Because B", "C", CHOICES, 0.0),  # "B" of "Because"
    ("wemath", "<answer>Answer: C</answer>", "C", CHOICES, 1.0),
    ("math_equal", "<answer>3/4</answer>", "0.75", None, 1.0),
    ("math_equal", "<answer>(C)</answer>", "C", CHOICES, 1.0),  # options through can_infer
    ("exact", "<answer> Red </answer>", "red", None, 1.0),
    ("exact", "<answer>red.</answer>", "red", None, 0.0),
    ("chartqa_relaxed", "<answer>0</answer>", "0.0", None, 0.0),  # zero target: strings compared
    ("lenient", "<answer>0</answer>", "0.0", None, 1.0),  # the reward reads both as 0
    ("lenient", "no answer", "red", None, 0.0),  # nothing extracted
]


@pytest.mark.parametrize(("metric", "completion", "answer", "choices", "expected"), SCORE_CASES)
def test_score_completion(
    metric: str, completion: str, answer: str, choices: list[str] | None, expected: float
) -> None:
    answer_type = "choice" if choices else "number" if answer.replace(".", "", 1).isdigit() else "exact"
    sample = Sample(
        id="s", image="i.png", question="q?", answer=answer, answer_type=answer_type, choices=choices
    )
    assert score_completion(metric, completion, sample)[0] == expected


def _wemath_records(draw: int = 0) -> list[dict]:
    """Six We-Math problems: one of each outcome, and one with a missing step row."""
    problems = [
        ("P1", [1, 1], 1),  # complete mastery (strict and loose)
        ("P2", [1, 0], 1),  # complete mastery (loose), rote memorisation (strict)
        ("P3", [0, 0], 1),  # rote memorisation (strict and loose)
        ("P4", [1, 1, 1], 0),  # inadequate generalisation
        ("P5", [1, 0, 1], 0),  # insufficient knowledge
        ("P6", [1, None], 1),  # step 2 missing: left out
    ]
    records = []
    for pid, steps, multi in problems:
        n = len(steps)
        keyed = [(f"{n}steps_{i + 1}", s) for i, s in enumerate(steps)] + [(f"{n}steps_multi", multi)]
        records += [
            {"correct": float(ok), "draw": draw, "meta": {"ID": pid, "key": key}}
            for key, ok in keyed
            if ok is not None
        ]
    return records


def test_wemath_four_dimensional_scores_by_hand() -> None:
    """Checked against the reference script (its `total_count` set to the 5 complete problems)."""
    out = wemath_scores(_wemath_records())
    assert (out["num_problems"], out["num_incomplete"]) == (5.0, 1.0)
    assert out["score_strict"] == pytest.approx((5 - 0.5 * 1 - 2 - 1) / 5)  # IG 1, RM strict 2, IK 1
    assert out["score_loose"] == pytest.approx((5 - 0.5 * 1 - 1 - 1) / 5)  # RM loose 1
    assert (out["insufficient_knowledge"], out["inadequate_generalization"]) == (0.2, 0.2)
    assert (out["complete_mastery_strict"], out["complete_mastery_loose"]) == (0.2, 0.4)
    assert out["rote_memorization_strict"] == pytest.approx(2 / 3)  # RM / (CM + RM)
    assert out["rote_memorization_loose"] == pytest.approx(1 / 3)
    assert out["one_step_accuracy"] == pytest.approx(8 / 12)  # steps right of the complete problems
    assert (out["two_step_accuracy"], out["three_step_accuracy"]) == (1.0, 0.0)
    flipped = [{**r, "correct": 1.0 - r["correct"], "draw": 1} for r in _wemath_records()]
    both = wemath_scores(_wemath_records() + flipped)  # two draws: the mean of each draw's scores
    assert both["score_strict"] == pytest.approx(
        (out["score_strict"] + wemath_scores(flipped)["score_strict"]) / 2
    )
    assert wemath_scores([{"correct": 1.0}]) == {
        "num_problems": 0.0,
        "num_incomplete": 0.0,
    }  # no ID/key columns


def test_circular_accuracy_by_hand() -> None:
    """MMBench: a question counts only if all its option-shifted rows (index + k * 10^6) are right."""
    rows = [(1, 1), (1000001, 1), (2000001, 1), (2, 1), (1000002, 0), (3, 1), (1000004, 1)]
    records = [{"correct": float(ok), "meta": {"index": str(i)}} for i, ok in rows]
    out = circular_scores(records)
    assert out == {
        "accuracy": pytest.approx(2 / 3),
        "num_questions": 3.0,
    }  # 1 and 3 right, 2 wrong; 4 has no first row
    regrouped = [
        {**r, "meta": {**r["meta"], "g_index": "1"}} for r in records[:3]
    ]  # an explicit g_index column
    assert circular_scores(regrouped)["num_questions"] == 1.0
    assert (
        circular_scores([{"correct": 1.0, "meta": {"index": "q1"}}])["num_questions"] == 0.0
    )  # no integer index


def _answers(texts: list[str]) -> Answers:
    zeros = torch.zeros(len(texts))
    return Answers(
        texts=texts, extracted=[None] * len(texts), correct=zeros, formatted=zeros, lengths=zeros.long()
    )


def test_wemath_tsv_records_and_metrics_json(tmp_path: Path) -> None:
    """A We-Math TSV: its `ID` and `key` columns reach the records, and metrics.json names the metric."""
    red = png_base64("red")
    header = "index\timage\tquestion\tanswer\tA\tB\tID\tkey\n"
    rows = [("1", "A", "2steps_1"), ("2", "B", "2steps_2"), ("3", "A", "2steps_multi")]
    text = header + "".join(f"{i}\t{red}\tQ{i}?\t{a}\tx\ty\tP1\t{k}\n" for i, a, k in rows)
    (tmp_path / "WeMath.tsv").write_text(text)
    bench = load_benchmark(BenchmarkConfig(name="wm", type="tsv", path=str(tmp_path / "WeMath.tsv")))
    assert bench.metric == "wemath"  # from the file name
    records = _records(bench, 0, _answers(["<answer>A</answer>", "<answer>A</answer>", "Answer: A"]), 1, 0.05)
    assert [r["correct"] for r in records] == [1.0, 0.0, 1.0]
    assert records[1]["meta"] == {"ID": "P1", "key": "2steps_2"} and records[2]["extracted"] == "Answer: A"
    cfg = SimpleNamespace(evaluate=EvalConfig(bootstrap_samples=10))
    metrics = compute_metrics([CheckpointEval("base", "tiny", records)], [bench], cfg)  # type: ignore[arg-type]
    wm = metrics["base"]["wm"]
    assert wm["metric"] == "wemath" and wm["accuracy"] == pytest.approx(2 / 3)
    assert wm["wemath"]["num_problems"] == 1.0 and wm["wemath"]["rote_memorization_strict"] == 1.0
    logged = finite_numbers(flatten(metrics, sep="/"))  # what MLflow receives
    assert "base/wm/wemath/score_strict" in logged and "base/wm/metric" not in logged


def test_mmbench_style_tsv_loads_for_evaluation() -> None:
    """Image cells that hold another row's index (good/mmbench.tsv: back, forward and chained)."""
    bench = load_benchmark(BenchmarkConfig(name="MMBench_DEV_EN", type="tsv", path=str(GOOD / "mmbench.tsv")))
    assert bench.metric == "mc_vlmeval_circular" and len(bench) == 5
    assert [b.getpixel((0, 0)) for b in bench.images] == [
        (255, 0, 0),
        (255, 0, 0),
        (0, 0, 255),
        (0, 0, 255),
        (255, 0, 0),
    ]
    assert bench.extra(1) == {"index": "2", "category": "colour", "l2-category": "perception"}


def test_tsv_benchmark_with_a_repeated_index_fails(tmp_path: Path) -> None:
    path = write_vlmevalkit_tsv(tmp_path / "b.tsv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")  # row 1 again
    with pytest.raises(
        DataValidationError, match=r"b\.tsv:6: id: duplicate id 'mixed-1' \(first at .*b\.tsv:2\)"
    ):
        load_benchmark(BenchmarkConfig(name="mixed", type="tsv", path=str(path)))
