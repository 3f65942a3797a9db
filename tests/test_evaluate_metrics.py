"""Evaluation metrics by hand, checkpoint specs, and TSV benchmarks routed to the right scorer."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sayo.config import flatten
from sayo.evaluate.benchmarks import load_benchmark
from sayo.evaluate.config import BenchmarkConfig, EvalConfig
from sayo.evaluate.metrics import (
    accuracy_rows,
    benchmark_metrics,
    bootstrap_ci,
    group_by,
    json_safe,
    summarize,
)
from sayo.evaluate.run import parse_checkpoints
from sayo.rewards import accuracy_reward

ROOT = Path(__file__).resolve().parents[1]


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
    nested = {"grpo": {"chart": {"accuracy": 0.5, "region_attention": math.nan}}}
    assert flatten(nested, sep="/")["grpo/chart/accuracy"] == 0.5
    assert json_safe(nested) == {"grpo": {"chart": {"accuracy": 0.5, "region_attention": None}}}
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
