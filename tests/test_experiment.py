"""The reward ablation: its statistics by hand, its config checks, and `--quick` end to end (every
table cell and figure produced; the direction of the effects is the full run's business)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from sayo.experiment.config import AblationConfig, load_ablation
from sayo.experiment.stats import bootstrap, paired


def test_bootstrap_of_a_constant_table_is_that_constant() -> None:
    estimate = bootstrap(np.full((3, 7), 0.25))
    assert (estimate.mean, estimate.low, estimate.high) == (0.25, 0.25, 0.25)
    assert estimate.excludes_zero


def test_paired_difference_and_its_interval() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((3, 200))
    shifted = base + 0.1  # the same cells, every one 0.1 higher
    estimate = paired(shifted, base)
    assert estimate.mean == pytest.approx(0.1) and estimate.low == pytest.approx(0.1)
    noisy = base + rng.normal(0.0, 0.05, size=base.shape)  # no true difference
    estimate = paired(noisy, base)
    assert estimate.low < 0 < estimate.high and not estimate.excludes_zero


def test_bootstrap_skips_missing_cells_and_needs_a_table() -> None:
    table = np.array([[1.0, np.nan], [0.0, 1.0]])
    assert bootstrap(table).mean == pytest.approx(2 / 3)
    assert np.isnan(bootstrap(np.full((2, 2), np.nan)).mean)
    with pytest.raises(ValueError, match="seeds, items"):
        bootstrap(np.ones(4))


def test_shipped_ablation_and_its_checks() -> None:
    cfg = load_ablation("ablation_tiny")
    assert cfg.baseline == "accuracy_format" and len(cfg.arms) == 7 and len(cfg.seeds) >= 3
    with pytest.raises(ValueError, match="baseline = 'nope'"):
        AblationConfig(arms={"a": []}, baseline="nope")
    with pytest.raises(ValueError, match="no experiment file 'nope'"):
        load_ablation("nope")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_ablation_produces_every_cell_and_figure(tmp_path: Path) -> None:
    from sayo.experiment.ablation import run_ablation
    from sayo.experiment.results import write_results

    cfg = load_ablation("ablation_tiny")
    cfg = dataclasses.replace(
        cfg,
        out_dir=str(tmp_path / "ablation"),
        overrides=[*cfg.overrides, f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"],
    )
    run = run_ablation(cfg, quick=True, log=lambda _: None)
    assert {(r.arm, r.seed) for r in run.runs} == {(a, s) for a in cfg.arms for s in cfg.quick_seeds}
    page = write_results(run, tmp_path / "results.md")
    text = page.read_text()
    for arm in cfg.arms:
        assert cfg.label(arm) in text
    tables = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert tables and not any("nan" in line for line in tables)
    # every arm row of both split tables (six cells): accuracy, lift and length filled; Δ but for the baseline
    rows = [line for line in tables if line.startswith("| (") and line.count("|") == 7]
    assert len(rows) == 2 * len(cfg.arms)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] != "–" and cells[3] != "–" and re.match(r"\d", cells[5])
        if "baseline" not in cells[0]:
            assert cells[2] != "–" and cells[4] != "–"
    for name in ("accuracy", "lift", "curves", "gallery"):
        figure = tmp_path / "results" / f"{name}.png"
        assert figure.is_file() and figure.stat().st_size > 5000, name
        assert f"results/{name}.png" in text
    assert "## The paper's findings here" in text and "verdict" in text
    assert "## Reading this run" in text and "The region term at the warm start" in text
    assert "| scheme |" in text  # each term's share of the advantages under each scheme
    assert "Does the warm start answer by looking?" in text and "linear probe" in text  # the reading check


def test_the_dvc_matrix_runs_the_experiment_files_arms_and_seeds() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "experiments" / "dvc.yaml").read_text())["stages"]
    cfg = load_ablation("ablation_tiny")
    matrix = stages["ablation-grpo"]["matrix"]
    assert matrix["arm"] == list(cfg.arms) and matrix["seed"] == cfg.seeds
    assert (
        "outputs/ablation/full/runs/${item.arm}-s${item.seed}/grpo/final" in stages["ablation-grpo"]["outs"]
    )
    assert cfg.out_dir == "outputs/ablation" and cfg.results == "docs/results.md"
