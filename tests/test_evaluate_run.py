"""The `evaluate` stage end to end on the tiny policy: several checkpoints, files, report, DVC, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_tiny_dataset
from PIL import Image
from test_evaluate_metrics import write_vlmevalkit_tsv
from typer.testing import CliRunner

from sayo.cli import app
from sayo.evaluate.run import evaluate
from sayo.models import TinySpec, save_tiny
from sayo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eval_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-sample synthetic dataset built by the real `data` stage."""

    out = tmp_path_factory.mktemp("eval_data") / "processed"
    build_tiny_dataset(out, 48)
    return out


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second checkpoint (the tiny architecture, another initialisation) to compare with."""
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "other" / "final", TinySpec(seed=1))


def test_two_checkpoints_give_metrics_samples_and_report(
    tmp_path: Path, eval_dataset: Path, other_policy: Path
) -> None:
    out = tmp_path / "eval"
    cfg = load_recipe("tiny", [
        f"evaluate.benchmarks=[{{name: synthetic, path: {eval_dataset}, split: null, max_samples: 12}}]",
        f"evaluate.out_dir={out}", "evaluate.batch_size=6", "evaluate.max_new_tokens=10",
        "evaluate.bootstrap_samples=200", "evaluate.gallery_samples=2", "tracking.enabled=false", "device=cpu",
    ])  # fmt: skip
    result = evaluate(cfg, ["base=tiny", str(other_policy)], progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["base", "other"]  # `other/final` is named after its parent
    synthetic = metrics["base"]["synthetic"]
    assert synthetic["num_answers"] == 12 and synthetic["num_grounded"] == 12
    assert synthetic["metric"] == "by_answer_type"  # no official metric for our own split: by answer type
    assert 0 <= synthetic["accuracy_ci_low"] <= synthetic["accuracy"] <= synthetic["accuracy_ci_high"] <= 1
    assert 0 < synthetic["region_attention"] < 1  # the capture measured the answers' attention
    assert set(synthetic["categories"]) <= {"shapes", "bars", "choice"}
    rows = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {r["checkpoint"] for r in rows} == {"base", "other"}
    assert [r["id"] for r in rows[:12]] == [r["id"] for r in rows[12:]]  # same samples, same order
    for name in ("accuracy.png", "region_attention.png", "heatmaps.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    html = (out / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 3
    assert "| synthetic | accuracy [95% CI] |" in (out / "report.md").read_text()
    assert "| synthetic | scored with | by_answer_type | by_answer_type |" in (out / "report.md").read_text()
    assert (out / "accuracy.csv").read_text().startswith("label,checkpoint,benchmark,accuracy")
    assert result.answers_per_s > 0 and result.run_id is None  # tracking disabled


def test_dvc_reads_the_metrics_and_plots(tmp_path: Path) -> None:
    """`dvc metrics show` flattens metrics.json (nulls included) and `dvc plots show` renders the CSV."""
    repo = tmp_path / "repo"
    (repo / "outputs/eval").mkdir(parents=True)
    metrics = {
        "grpo": {
            "synthetic": {
                "accuracy": 0.5,
                "region_attention": None,
                "categories": {"bars": {"accuracy": 1.0}},
            }
        }
    }
    (repo / "outputs/eval/metrics.json").write_text(json.dumps(metrics))
    (repo / "outputs/eval/accuracy.csv").write_text("label,accuracy\ngrpo/synthetic,0.5\n")
    (repo / "outputs/eval/figures").mkdir()
    Image.new("RGB", (8, 8)).save(repo / "outputs/eval/figures/accuracy.png")
    stage = {"cmd": "true", "metrics": [{"outputs/eval/metrics.json": {"cache": False}}],
             "plots": [{"outputs/eval/accuracy.csv": {"cache": False, "x": "accuracy", "y": "label"}},
                       {"outputs/eval/figures": {"cache": False}}]}  # fmt: skip
    (repo / "dvc.yaml").write_text(json.dumps({"stages": {"evaluate": stage}}))
    dvc = str(Path(sys.executable).with_name("dvc"))
    for command in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(command, cwd=repo, check=True)
    shown = subprocess.run(
        [dvc, "metrics", "show", "--json"], cwd=repo, check=True, capture_output=True, text=True
    )
    assert '"accuracy": 0.5' in shown.stdout and "categories" in shown.stdout
    subprocess.run([dvc, "plots", "show", "-o", "plots"], cwd=repo, check=True, capture_output=True)
    page = (repo / "plots/index.html").read_text()
    assert "accuracy.csv" in page and "accuracy.png" in page  # the bars and the report's figures


def test_cli_tsv_and_dataset_benchmarks_with_sampling(tmp_path: Path, eval_dataset: Path) -> None:
    tsv = write_vlmevalkit_tsv(tmp_path / "vlmevalkit.tsv")
    out = tmp_path / "eval"
    args = ["evaluate", "--config", "tiny", "--checkpoint", "base=tiny", "--no-progress",
            f"evaluate.benchmarks=[{{name: mixed, type: tsv, path: {tsv}}}, "
            f"{{name: synthetic, path: {eval_dataset}, split: test, max_samples: 2, metric: lenient}}]",
            f"evaluate.out_dir={out}", "evaluate.do_sample=true", "evaluate.n=2", "evaluate.max_new_tokens=8",
            "evaluate.bootstrap_samples=100", "tracking.enabled=false", "device=cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "base" in result.output and "mixed" in result.output and "report.html" in result.output
    mixed = json.loads((out / "metrics.json").read_text())["base"]["mixed"]
    assert mixed["num_answers"] == 8  # 4 rows x n=2 sampled answers
    assert mixed["metric"] == "by_answer_type"
    assert mixed["num_grounded"] == 4  # only the two rows with a box x 2
    assert set(mixed["categories"]) == {"chart", "math"}
    assert json.loads((out / "metrics.json").read_text())["base"]["synthetic"]["metric"] == "lenient"
    shutil.rmtree(out)
