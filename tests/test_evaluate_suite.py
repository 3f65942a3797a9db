"""The paper's evaluation suite: its sets as data, the authors' prompts, the added official metrics,
missing sets (`--allow-missing`), and bad input in the sets' own layouts (no model, no downloads)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from paper_fixtures import SETS, ai2d, chartqa, write_suite

from sayo.data.validate import DataValidationError
from sayo.evaluate.benchmarks import Benchmark, load_benchmark
from sayo.evaluate.config import METRICS, BenchmarkConfig, EvalConfig, suite_benchmarks
from sayo.evaluate.metrics import hallusion_scores
from sayo.evaluate.missing import MissingBenchmarkError, load_present
from sayo.evaluate.presets import PRESETS, options_in_text, wemath_options
from sayo.evaluate.report import comparison_rows
from sayo.evaluate.scorers import score_completion
from sayo.evaluate.suite import SAYO_PAPER
from sayo.rewards.official import (
    boxed_content,
    mathvista_correct,
    official_prediction,
    process_punctuation,
    yes_no,
)
from sayo.rewards.wtq import wtq_correct

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_suite(tmp_path_factory.mktemp("paper") / "benchmarks", n=4)


@pytest.fixture(scope="module")
def loaded(suite_root: Path) -> dict[str, Benchmark]:
    benches, not_run = load_present(EvalConfig(benchmarks=[], suite="sayo_paper", suite_root=str(suite_root)))
    assert not_run == []
    return {b.name: b for b in benches}


# --- the suite as data ----------------------------------------------------------------------------------


def test_the_suite_names_the_papers_fourteen_sets_with_known_presets_and_metrics() -> None:
    assert len(SAYO_PAPER) == 14 and len({s.name for s in SAYO_PAPER}) == 14
    assert set(SETS) == {s.name for s in SAYO_PAPER}  # the fixtures cover every set
    for entry in SAYO_PAPER:
        assert entry.preset in PRESETS and entry.metric in METRICS and entry.metric != "auto"
    configs = suite_benchmarks("sayo_paper", "/data/b", max_samples=5)
    ai2d = next(c for c in configs if c.name == "AI2D")
    assert (ai2d.type, ai2d.path, ai2d.split, ai2d.max_samples) == ("hf", "/data/b/ai2d", "test", 5)
    mathverse = next(c for c in configs if c.name == "MathVerse")
    assert (mathverse.subset, mathverse.split) == ("testmini", "testmini")


def test_suite_sets_follow_the_configured_benchmarks_and_names_stay_unique() -> None:
    ev = EvalConfig(benchmarks=[BenchmarkConfig(name="synthetic")], suite="sayo_paper")
    assert [b.name for b in ev.all_benchmarks()][:2] == ["synthetic", "ChartQA"]
    with pytest.raises(ValueError, match="names must be unique"):
        EvalConfig(benchmarks=[BenchmarkConfig(name="ChartQA")], suite="sayo_paper")
    with pytest.raises(ValueError, match=r"evaluate\.suite"):
        EvalConfig(suite="nope")


# --- prompts as the authors built them --------------------------------------------------------------


def test_prompts_append_options_as_the_authors_loaders_do(loaded: dict[str, Benchmark]) -> None:
    asked = {name: bench.asked[1].question for name, bench in loaded.items()}
    assert (
        asked["AI2D"]
        == "Question:Which colour fills the picture?\nChoices:A: red\nB: green\nC: blue\nD: yellow\n"
    )
    assert asked["M3CoT"] == "Question:Which is hot?\nChoices:A: ice\nB: fire\n"
    assert asked["MathVision"] == "How many triangles?"  # row 1 has no options
    assert (
        loaded["MathVision"].asked[0].question
        == "How many triangles?\nOptions: A: 1\nB: 2\nC: 3\nD: 4\nE: 5\n"
    )
    assert asked["WeMath"] == (
        "Step 1: what area?\n\nOptions: A. 3; B. 4; C. 5; D. 6\nYour final answer must be one of A, B, C, or D."
    )
    assert (
        asked["HallusionBench"]
        == "Is the square red? You final answer can only be \\boxed{yes} or \\boxed{no}."
    )
    assert asked["MME-RealWorld-Lite"] == (
        "Question:What colour is it?\nChoices:['(A) red', '(B) green', '(C) blue', '(D) yellow', '(E) black']"
    )
    assert asked["MathVista"] == "Hint: Please answer the question.\nQuestion: What is the value?"
    assert asked["MathVerse"] == "Find x. First conduct reasoning, then answer."
    assert asked["ChartQA"] == "What is the value of bar 1?"
    for bench in loaded.values():  # asked as built: no second options line from sayo.prompts
        assert all(s.choices is None for s in bench.asked)


def test_answers_become_letters_and_options_are_kept_for_scoring(loaded: dict[str, Benchmark]) -> None:
    ai2d = loaded["AI2D"].samples[1]  # answer "1" is an option index
    assert (ai2d.answer, ai2d.choices) == ("B", ["red", "green", "blue", "yellow"])
    vista = loaded["MathVista"].samples[0]  # answer "4" is the option's text
    assert (vista.answer, vista.choices) == ("B", ["3", "4", "5"])
    assert loaded["MMStar"].samples[2].choices == ["red", "green", "blue", "yellow"]  # read from the question
    assert loaded["MME-RealWorld-Lite"].samples[0].choices == ["red", "green", "blue", "yellow", "black"]
    assert [s.answer for s in loaded["HallusionBench"].samples] == ["yes", "no", "yes", "no"]
    assert (
        loaded["WeMath"].extra(0)["ID"] == "2steps_7" and loaded["WeMath"].extra(2)["key"] == "2steps_multi"
    )
    assert loaded["HallusionBench"].extra(3)["category"] == "VD"  # the metric's group columns travel
    assert loaded["RealWorldQA"].samples[1].choices is None  # a question without options stays open


def test_options_written_inside_questions() -> None:
    assert options_in_text("Q?\nOptions: A: on the book., B: under it, C: x") == [
        "on the book.",
        "under it",
        "x",
    ]
    assert options_in_text("Q?\n(A) white\n(B) black\nAnswer with the letter.") == ["white", "black"]
    assert options_in_text("How many?") is None and options_in_text("Pick B: or A.") is None
    assert wemath_options("A. 3; B. 4; C. No answer") == ["3", "4", "No answer"]
    assert wemath_options("B. 4; A. 3") is None  # letters must run from A


# --- each set's metric accepts its own reference and rejects a wrong answer ------------------------


def test_every_set_scores_its_reference_right_and_nonsense_wrong(loaded: dict[str, Benchmark]) -> None:
    for name, bench in loaded.items():
        for index, sample in enumerate(bench.samples):
            extra = bench.extra(index)
            right, _ = score_completion(
                bench.metric, f"<think>x</think>\\boxed{{{sample.answer}}}", sample, 0.05, extra
            )
            wrong, _ = score_completion(bench.metric, "<answer>zzz qq</answer>", sample, 0.05, extra)
            assert (right, wrong) == (1.0, 0.0), (name, sample.id, sample.answer)


# --- the added official matchers, case by case ------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>maybe 3</think> so \\boxed{4}.", "4"),  # the box after the reasoning
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box, braces balanced
        ("<answer>B</answer> \\boxed{C}", "B"),  # the answer tag first
        ("\\boxed{12", "\\boxed{12"),  # an unclosed box is no answer: the text as is
        ("<think>\\boxed{9}</think> 7", "7"),  # a box inside the reasoning is not read
    ],
)
def test_official_prediction_reads_a_boxed_answer(completion: str, expected: str) -> None:
    assert official_prediction(completion) == expected


def test_boxed_content_without_a_box() -> None:
    assert boxed_content("no box") is None and boxed_content("\\boxed{}") == ""


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("Yes", "Yes"),
        ("yes.", "Yes"),  # the period is stripped
        ("No, it is not.", "No"),
        ("Yes and no", "Unknown"),  # both words
        ("Not sure", "Unknown"),  # "not" is not "no"
        ("(no)", "No"),  # brackets become spaces
        ("yes-man", "Yes"),  # "-" touches no space, so it becomes one: the words "yes", "man"
        ("\\boxed{no}", "No"),  # "\\", "{" and "}" become spaces
    ],
)
def test_yes_no_extraction(prediction: str, expected: str) -> None:
    assert yes_no(prediction) == expected


def test_process_punctuation_quirks() -> None:
    assert process_punctuation("a,b") == "a b"  # a mark not touching a space becomes a space
    assert process_punctuation("a, b") == "a b"  # a mark touching a space is deleted
    assert process_punctuation("1,000 (x)") == "1000 x"  # a digit comma deletes every mark
    assert process_punctuation("3.5 end.") == "3.5 end"  # a period before a digit stays
    assert process_punctuation("." * 40) == "." * 8  # at most 32 periods are removed (re.UNICODE as count)


@pytest.mark.parametrize(
    ("response", "answer", "choices", "kind", "precision", "expected"),
    [
        ("B", "4", ["3", "4", "5"], "text", "", True),  # a letter names the option
        ("(B) 4", "4", ["3", "4", "5"], "text", "", True),  # "(B) text" reads as B
        ("4", "4", ["3", "4", "5"], "text", "", True),  # the option's text itself
        ("about 5", "5", ["3", "4", "5"], "text", "", True),  # most similar option (edit distance)
        ("b", "4", ["3", "4", "5"], "text", "", False),  # a lower-case letter is no letter: nearest text "3"
        ("1.50", "1.5", [], "float", "1.0", True),  # rounded to the precision
        ("1.46", "1.5", [], "float", "1.0", True),
        ("1.44", "1.5", [], "float", "1.0", False),
        ("7.0", "7", [], "integer", "", True),  # str(int(float(x)))
        ('The answer is "7".', "7", [], "integer", "", True),  # the quick extraction
        ("seven", "7", [], "integer", "", False),
    ],
)
def test_mathvista_rule_based_scoring(
    response: str, answer: str, choices: list[str], kind: str, precision: str, expected: bool
) -> None:
    assert mathvista_correct(response, answer, choices, kind, precision) is expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("2004", "2004", True),
        ("2004.0", "2004", True),  # numbers within 1e-6
        ("Freeman", "freeman.", True),  # case and a final period
        ("Apple||Banana", "Banana|Apple", True),  # a list, any order
        ("Apple", "Apple|Banana", False),  # one value missing
        ("Paris (France)", "paris", True),  # a parenthesised tail is dropped
        ("1,000", "1000", False),  # no thousands separators
        ("Zürich", "Zurich", True),  # accents removed
        ("2004-xx-xx", "2004", True),  # a year-only date is a number
        ("1|1.0", "1", True),  # one distinct value
    ],
)
def test_wtq_denotation(prediction: str, answer: str, expected: bool) -> None:
    assert wtq_correct(prediction, answer) is expected


def test_hallusion_scores_group_figures_and_questions() -> None:
    def rec(figure: str, question: str, correct: bool) -> dict:
        meta = {
            "category": "VD",
            "subcategory": "chart",
            "set_id": "1",
            "figure_id": figure,
            "question_id": question,
        }
        return {"correct": float(correct), "meta": meta}

    # figure 0: q0 right, q1 right; figure 1: q0 wrong, q1 right
    scores = hallusion_scores(
        [rec("0", "0", True), rec("0", "1", True), rec("1", "0", False), rec("1", "1", True)]
    )
    assert scores["aAcc"] == 0.75 and scores["fAcc"] == 0.5 and scores["qAcc"] == 0.5
    assert scores["num_figures"] == 2 and scores["num_questions"] == 2
    assert math.isnan(hallusion_scores([{"correct": 1.0}])["fAcc"])  # without ids: aAcc only


# --- missing sets and bad input -----------------------------------------------------------------------


def test_missing_sets_stop_the_stage_unless_allowed(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "b", n=2, skip=("MathVerse", "ChartQA"))
    with pytest.raises(MissingBenchmarkError) as info:
        load_present(EvalConfig(benchmarks=[], suite="sayo_paper", suite_root=str(root)))
    message = str(info.value)
    assert f"ChartQA: {root / 'ChartQA'} does not exist" in message
    assert f"hf download AI4Math/MathVerse --repo-type dataset --local-dir {root / 'MathVerse'}" in message
    assert "--allow-missing" in message
    benches, not_run = load_present(
        EvalConfig(
            benchmarks=[], suite="sayo_paper", suite_root=str(root), allow_missing=True, suite_max_samples=1
        )
    )
    assert [n.name for n in not_run] == ["ChartQA", "MathVerse"] and len(benches) == 12
    _, rows = comparison_rows(
        {"base": {b.name: _cell(b.metric) for b in benches}}, [n.row() for n in not_run]
    )
    assert ["ChartQA", "not run", "not run"] in rows and ["MathVerse", "not run", "not run"] in rows


def _cell(metric: str) -> dict:
    return {"metric": metric, "accuracy": 1.0, "accuracy_ci_low": 1.0, "accuracy_ci_high": 1.0, "format_rate": 1.0,
            "response_length_mean": 1.0, "region_attention": None, "num_answers": 1.0}  # fmt: skip


def _problem_lines(config: BenchmarkConfig) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        load_benchmark(config)
    return [str(p) for p in info.value.problems]


def test_bad_input_names_file_row_and_field(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed"  # ChartQA with `query` where the card has `question`
    rows = [{**chartqa(i), "query": chartqa(i)["question"]} for i in range(2)]
    for row in rows:
        del row["question"]
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(
        str(renamed / "data/test-0.parquet")
    )
    (line,) = _problem_lines(BenchmarkConfig(name="ChartQA", type="hf", path=str(renamed), preset="chartqa"))
    assert line == (
        f"{renamed}[test]: <columns>: missing question (column 'question'); found ['type', 'answer', 'image', 'query']"
    )

    broken = tmp_path / "broken"  # undecodable image bytes in row 2
    rows = [chartqa(i) for i in range(2)]
    rows[1]["image"] = {"bytes": b"not an image", "path": None}
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(
        str(broken / "data/test-0.parquet")
    )
    (line,) = _problem_lines(BenchmarkConfig(name="ChartQA", type="hf", path=str(broken), preset="chartqa"))
    assert line.startswith(f"{broken}[test]:2: image:")

    wrong_split = BenchmarkConfig(
        name="ChartQA", type="hf", path=str(broken), split="validation", preset="chartqa"
    )
    (line,) = _problem_lines(wrong_split)
    assert line == f"{broken}: split: Bad split: validation. Available splits: ['test']"

    out_of_range = tmp_path / "ai2d"  # AI2D's answer is an option index; 7 names no option
    rows = [ai2d(i) for i in range(2)]
    rows[1]["answer"] = "7"
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(
        str(out_of_range / "data/test-0.parquet")
    )
    (line,) = _problem_lines(BenchmarkConfig(name="AI2D", type="hf", path=str(out_of_range), preset="ai2d"))
    assert line == (
        f"{out_of_range}[test]:2: answer: answer '7' names none of the 4 options ['red', 'green', 'blue', 'yellow']"
    )


@pytest.mark.slow
def test_cli_exits_2_on_a_missing_set_and_says_how_to_get_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "sayo", "evaluate", "--config", "tiny", "--checkpoint", "base=tiny", "--no-progress",
            "evaluate.benchmarks=[]", "evaluate.suite=sayo_paper", f"evaluate.suite_root={tmp_path}",
            "tracking.enabled=false", "device=cpu"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "14 benchmark set(s) not found" in done.stderr
    assert f"hf download lmms-lab/ai2d --repo-type dataset --local-dir {tmp_path / 'ai2d'}" in done.stderr


@pytest.mark.slow
def test_sayo_evaluate_on_the_suite_fixtures_reports_official_metrics(tmp_path: Path) -> None:
    """The round trip: `sayo evaluate` with the tiny policy over HF-format copies of the paper's sets,
    one of them missing (--allow-missing): every present set scored with its official metric."""
    from typer.testing import CliRunner

    from sayo.cli import app

    root = write_suite(tmp_path / "benchmarks", n=3, skip=("MathVerse",))
    out = tmp_path / "eval"
    args = ["evaluate", "--config", "tiny", "--checkpoint", "base=tiny", "--no-progress", "--allow-missing",
            "evaluate.benchmarks=[]", "evaluate.suite=sayo_paper", f"evaluate.suite_root={root}",
            f"evaluate.out_dir={out}", "evaluate.max_new_tokens=6", "evaluate.batch_size=8",
            "evaluate.bootstrap_samples=50", "evaluate.gallery_samples=0", "tracking.enabled=false", "device=cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["base"]
    expected = {s.name: s.metric for s in SAYO_PAPER if s.name != "MathVerse"}
    assert {name: cell["metric"] for name, cell in metrics.items()} == expected
    assert all(cell["num_answers"] == 3 for cell in metrics.values())
    assert set(metrics["HallusionBench"]["hallusionbench"]) >= {"aAcc", "fAcc", "qAcc"}
    assert metrics["WeMath"]["wemath"]["num_problems"] == 1.0  # 2steps_1, 2steps_2 and 2steps_multi of one ID
    assert "rule-based fallback" in metrics["CharXiv_reasoning"]["metric_note"]
    report = (out / "report.md").read_text()
    assert "| MathVerse | not run | not run |" in report
    assert "| AI2D | scored with | mc_vlmeval |" in report
    assert json.loads((out / "not_run.json").read_text())[0]["name"] == "MathVerse"
    rows = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    ai2d = next(r for r in rows if r["benchmark"] == "AI2D")
    assert ai2d["question"].startswith("Question:Which colour fills the picture?\nChoices:A: red\n")


def test_a_benchmark_from_the_local_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hf_fixtures import fake_hub_cache

    from sayo.evaluate.benchmarks import missing

    records = [chartqa(i) for i in range(3)]
    data = datasets.Dataset.from_list(records).cast_column("image", datasets.Image())
    fake_hub_cache(tmp_path / "hub", "lmms-lab/ChartQA", {"test": data})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config = BenchmarkConfig(name="ChartQA", type="hf", path="", dataset="lmms-lab/ChartQA", preset="chartqa")
    assert missing(config) is None
    bench = load_benchmark(config)
    assert bench.metric == "chartqa_relaxed" and [s.answer for s in bench.samples] == ["10", "11", "12"]
    absent = BenchmarkConfig(name="x", type="hf", path="", dataset="org/absent")
    assert missing(absent) == f"dataset 'org/absent' is not in the local HF cache {tmp_path / 'hub'}"
