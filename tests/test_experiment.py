"""The reward ablation: its statistics by hand, its config checks, and `--quick` end to end (every
table cell and figure produced; the direction of the effects is the full run's business)."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from sayo.experiment.config import AblationConfig, WarmStart, load_ablation
from sayo.experiment.stats import bootstrap, hierarchical, hierarchical_paired, paired


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


def test_hierarchical_of_one_warm_start_is_the_two_level_bootstrap() -> None:
    table = np.random.default_rng(1).random((3, 40))
    assert hierarchical([table], samples=300) == bootstrap(table, samples=300)
    assert hierarchical_paired([table + 0.2], [table], samples=300) == paired(table + 0.2, table, samples=300)


def test_hierarchical_interval_carries_the_variance_between_warm_starts() -> None:
    # two warm starts whose every cell is 0 and 1: the mean is 0.5, and a resample may draw the
    # same warm start twice, so the interval reaches both ends; pooled as one warm start's six
    # seeds, the same cells give a much narrower interval that hides the disagreement
    zeros, ones = np.zeros((3, 50)), np.ones((3, 50))
    estimate = hierarchical([zeros, ones], samples=2000)
    assert estimate.mean == pytest.approx(0.5)
    assert estimate.low == pytest.approx(0.0) and estimate.high == pytest.approx(1.0)
    pooled = bootstrap(np.vstack([zeros, ones]), samples=2000)
    assert pooled.high - pooled.low < 0.7 * (estimate.high - estimate.low)
    # warm starts of different sizes (their own held-out samples) are weighted equally
    ragged = hierarchical([np.zeros((2, 10)), np.ones((2, 1000))], samples=200)
    assert ragged.mean == pytest.approx(0.5)


def test_hierarchical_paired_differences_within_each_warm_start() -> None:
    rng = np.random.default_rng(2)
    bases = [rng.random((3, 100)), rng.random((3, 60)) + 5.0]  # warm starts far apart in level
    arms = [b + 0.1 for b in bases]  # the same +0.1 within each: the level difference must not matter
    estimate = hierarchical_paired(arms, bases)
    assert estimate.mean == pytest.approx(0.1) and estimate.low == pytest.approx(0.1)
    with pytest.raises(ValueError, match="one shape"):
        hierarchical_paired([np.ones((2, 3))], [np.ones((2, 4))])
    with pytest.raises(ValueError, match="baseline tables"):
        hierarchical_paired([np.ones((2, 3))], [])


def test_warm_starts_are_named_checked_and_set_the_data_seed() -> None:
    assert AblationConfig(arms={"a": []}, baseline="a").warm_starts == [
        WarmStart()
    ]  # one: the recipe's seeds
    warm = WarmStart(data_seed=3, sft_seed=1)
    assert warm.name() == "ws-d3-s1" and warm.overrides() == ["data.synthetic.seed=3"]
    with pytest.raises(ValueError, match="warm_starts"):
        AblationConfig(arms={"a": []}, baseline="a", warm_starts=[WarmStart(1, 1), WarmStart(1, 1)])
    with pytest.raises(ValueError, match="warm_starts"):
        AblationConfig(arms={"a": []}, baseline="a", warm_starts=[])


def test_shipped_ablation_and_its_checks() -> None:
    cfg = load_ablation("ablation_tiny")
    assert cfg.baseline == "accuracy_format" and len(cfg.arms) == 7 and len(cfg.seeds) >= 3
    # the re-run design: warm starts as a level, the paper's advantage scheme as arms
    cfg = load_ablation("ablation_warm_starts")
    assert cfg.baseline == "accuracy_format" and len(cfg.seeds) >= 3 and len(cfg.warm_starts) >= 3
    assert {"sayo", "accuracy_format_paper_adv", "sayo_paper_adv"} <= set(cfg.arms)
    assert cfg.baseline_of("sayo_paper_adv") == "accuracy_format_paper_adv"  # (b′) − (a′)
    assert cfg.baseline_of("sayo") == "accuracy_format"
    with pytest.raises(ValueError, match=r"compare_with\.sayo"):
        AblationConfig(arms={"a": [], "sayo": []}, baseline="a", compare_with={"sayo": "nope"})
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
    # benchmarks/selection.py reads the same checkpoints: where the selected tokens fall, by role
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from selection import ROLES, markdown, measure

    spec, groups = measure(cfg, "0", ["accuracy_format", "sayo"], samples=6, batch=4, quick=True)
    assert spec == cfg.warm_starts[0] and list(groups) == ["SFT warm start", cfg.label("accuracy_format"),
                                                           cfg.label("sayo")]  # fmt: skip
    assert [len(g) for g in groups.values()] == [1, len(cfg.quick_seeds), len(cfg.quick_seeds)]
    for summary in (s for g in groups.values() for s in g):
        first = summary["names asked first"]  # NaN when no answer has reasoning (toy size)
        assert 0.0 <= summary["accuracy"] <= 1.0 and (math.isnan(first) or 0.0 <= first <= 1.0)
        assert sum(summary[f"tokens in {r}"] for r in ROLES) == pytest.approx(1.0)
        shares = [summary[f"selected in {r}"] for r in ROLES]
        assert not any(math.isnan(s) for s in shares) and sum(shares) == pytest.approx(1.0)
    assert "| (b) SAYO |" in markdown(groups, "# selection")


def test_the_dvc_matrix_runs_the_experiment_files_warm_starts_arms_and_seeds() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "experiments" / "dvc.yaml").read_text())["stages"]
    cfg = load_ablation("ablation_warm_starts")  # the shipped experiment: docs/results.md
    matrix = stages["ablation-grpo"]["matrix"]
    assert matrix["warm"] == [w.name() for w in cfg.warm_starts]
    assert matrix["arm"] == list(cfg.arms) and matrix["seed"] == cfg.seeds
    assert "--config ablation_warm_starts --warm ${item.warm}" in stages["ablation-grpo"]["cmd"]
    out = f"{cfg.out_dir}/full/${{item.warm}}/runs/${{item.arm}}-s${{item.seed}}/grpo/final"
    assert out in stages["ablation-grpo"]["outs"]
    assert [f"{cfg.out_dir}/full/{w.name()}/runs" for w in cfg.warm_starts] == [
        d for d in stages["ablation"]["deps"] if d.startswith(cfg.out_dir)
    ]
    assert cfg.results == "docs/results.md" and "docs/results.md" in str(stages["ablation"]["outs"])
    assert load_ablation("ablation_tiny").results == "docs/results-one-warm-start.md"


@pytest.mark.timeout(600)
def test_a_failing_step_on_a_job_process_stops_the_ablation_with_its_error(tmp_path: Path) -> None:
    from sayo.experiment.ablation import run_ablation

    cfg = load_ablation("ablation_tiny")
    cfg = dataclasses.replace(
        cfg,
        warm_starts=[WarmStart(data_seed=0, sft_seed=0), WarmStart(data_seed=5, sft_seed=1)],
        quick_warm_starts=2,
        hard=["data.synthetic.no_such_field=1"],  # read on the job process, when it builds the harder split
        out_dir=str(tmp_path / "ablation"),
        overrides=[*cfg.overrides, f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"],
    )
    with pytest.raises(Exception, match="no_such_field"):
        run_ablation(cfg, quick=True, log=lambda _: None, jobs=2)
    assert not list((tmp_path / "ablation").rglob("runs"))  # no GRPO started after the failure


def test_a_warm_start_is_picked_by_name_or_index() -> None:
    from sayo.experiment.steps import pick_warm_start, warm_dir

    cfg = load_ablation("ablation_warm_starts")
    assert pick_warm_start(cfg, "ws-d1-s1") == 1 and pick_warm_start(cfg, "2") == 2
    assert warm_dir(cfg, False, cfg.warm_starts[1]) == Path(cfg.out_dir) / "full" / "ws-d1-s1"
    with pytest.raises(ValueError, match=r"'ws-d9-s9' is neither a name nor an index 0\.\.2"):
        pick_warm_start(cfg, "ws-d9-s9")
    with pytest.raises(ValueError, match="under --quick"):
        pick_warm_start(cfg, "1", quick=True)  # --quick runs the first warm start only
    with pytest.raises(ValueError, match="index"):
        pick_warm_start(cfg, "-1")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_ablation_over_two_warm_starts(tmp_path: Path) -> None:
    from sayo.experiment.ablation import run_ablation
    from sayo.experiment.results import write_results

    cfg = load_ablation("ablation_tiny")
    cfg = dataclasses.replace(
        cfg,
        arms={k: cfg.arms[k] for k in ("accuracy_format", "sayo")},
        warm_starts=[WarmStart(data_seed=0, sft_seed=0), WarmStart(data_seed=5, sft_seed=1)],
        quick_warm_starts=2,
        out_dir=str(tmp_path / "ablation"),
        overrides=[
            *cfg.overrides,
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
            "grpo.eval_every=1",  # the accuracy curve: steps 0, 1, 2
            "grpo.eval_samples=4",
        ],
    )
    run = run_ablation(cfg, quick=True, log=lambda _: None, jobs=2)  # the steps on two processes
    assert [w.spec.name() for w in run.warm_starts] == ["ws-d0-s0", "ws-d5-s1"] and run.jobs == 2
    assert {(w.spec.name(), r.arm, r.seed) for w in run.warm_starts for r in w.runs} == {
        (w.name(), a, s) for w in cfg.warm_starts for a in cfg.arms for s in cfg.quick_seeds
    }  # every warm start × arm × seed, each under its own warm start
    assert all(
        r.seconds > 0 and r.checkpoint.is_relative_to(w.out_dir) for w in run.warm_starts for r in w.runs
    )
    first, second = run.warm_starts
    assert first.out_dir != second.out_dir and first.sft_checkpoint != second.sft_checkpoint
    assert first.recipe.data.synthetic.seed == 0 and second.recipe.data.synthetic.seed == 5
    assert second.recipe.seed == 1  # the SFT seed
    ids = [
        {r["id"] for r in w.evaluation.records["sft"] if r["benchmark"] == "heldout"} for w in run.warm_starts
    ]
    assert ids[0] and ids[1] and ids[0] != ids[1]  # each warm start's own held-out samples
    assert len(run.runs) == 2 * 2 * len(cfg.quick_seeds)
    text = write_results(run, tmp_path / "results.md").read_text()
    assert "2 SFT warm starts (ws-d0-s0, ws-d5-s1" in text and "hierarchical bootstrap" in text
    assert re.search(r"Wall time \d+\.\d min on 2 jobs \(steps summed over the jobs: data ", text)
    rows = [line for line in text.splitlines() if line.startswith("| heldout | (b) SAYO |")]
    assert len(rows) == 4  # accuracy, lift, answer-step lift, names asked first: Δ per warm start, …
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3 + 2 + 3 and "nan" not in row
        if cells[2] not in ("answer-step lift", "names asked first (search task)"):  # at toy size a
            # response may have no answer tag or no reasoning: "–"
            assert re.match(r"[+-]\d", cells[3]) and re.match(r"\d", cells[5])
    # the accuracy curves, read back from MLflow: a row per arm, a verdict per compared number
    assert "## Accuracy over GRPO steps" in text and "results/accuracy_curves.png" in text
    assert (tmp_path / "results" / "accuracy_curves.png").stat().st_size > 5000
    section = text[text.index("## Accuracy over GRPO steps") :]
    row = next(line for line in section.splitlines() if line.startswith("| (b) SAYO | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all(re.match(r"\d\.\d{3} \[", c) for c in cells[1:4]), row  # start, final, area
    assert re.match(r"[+-]\d", cells[-1]) and re.match(r"[+-]\d", cells[-2])  # Δ final, Δ area
    assert "| (b) SAYO learns faster (area) than (a) accuracy + format |" in text


def test_an_unknown_warm_start_is_a_clear_cli_error() -> None:
    from typer.testing import CliRunner

    from sayo.cli import app

    done = CliRunner().invoke(
        app, ["experiment", "ablation", "--warm", "ws-d9-s9", "--arm", "sayo", "--seed", "0"]
    )
    assert done.exit_code != 0 and "--warm" in done.output and "ws-d9-s9" in done.output


def test_every_interval_the_readme_quotes_stands_on_a_generated_results_page() -> None:
    """README's numbers are copied from pages `sayo experiment ablation` writes, never typed."""
    root = Path(__file__).resolve().parents[1]
    interval = re.compile(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")
    quoted = interval.findall((root / "README.md").read_text())
    assert len(quoted) >= 5  # the ablation's summary
    pages = " ".join(p.read_text() for p in sorted((root / "docs").glob("results*.md")))
    missing = [q for q in quoted if q not in pages]
    assert not missing, f"README quotes intervals no docs/results*.md page holds: {missing}"


def test_curve_area_by_hand() -> None:
    from sayo.experiment.curves import area, reduce

    assert area([(0, 0.0), (10, 1.0), (20, 1.0)]) == pytest.approx(0.75)  # (0.5·10 + 1·10) / 20
    assert area([(0, 0.0), (10, 1.0)]) == pytest.approx(0.5)
    assert area([(5, 0.4)]) == 0.4 and math.isnan(area([]))
    numbers = reduce([(0, 0.2), (10, 0.6)], {"flat": [0.5, 0.1], "share/region_attention": []})
    assert numbers["start"] == 0.2 and numbers["final"] == 0.6 and numbers["area"] == pytest.approx(0.4)
    assert numbers["flat"] == pytest.approx(0.3) and math.isnan(numbers["share/region_attention"])


def test_curve_differences_are_paired_by_seed_within_warm_starts() -> None:
    """(b) ends 0.1 above (a) on every seed of both warm starts, though the seeds themselves vary a
    lot: the paired Δ is exactly 0.1, and its verdict says so."""
    from types import SimpleNamespace

    from sayo.experiment.curves import CurveData, curve_lines, curve_summaries
    from sayo.experiment.results import _verdict

    cfg = load_ablation("ablation_tiny")
    cfg = dataclasses.replace(cfg, arms={k: cfg.arms[k] for k in ("accuracy_format", "sayo")})
    rng = np.random.default_rng(0)

    def seed_numbers(final: float, shift: float) -> dict[str, float]:
        return {"start": 0.1, "final": final + shift, "area": final / 2 + shift, "flat": 0.3,
                "share/region_attention": 0.2, "share_flat/region_attention": 0.9}  # fmt: skip

    numbers = []
    for _ in range(2):  # warm starts
        finals = rng.uniform(0.2, 0.8, size=3)  # the seeds' own spread
        numbers.append({"accuracy_format": [seed_numbers(f, 0.0) for f in finals],
                        "sayo": [seed_numbers(f, 0.1) for f in finals]})  # fmt: skip
    run = SimpleNamespace(config=cfg, seeds=[0, 1, 2], warm_starts=[None, None])
    data = CurveData(numbers, {"sayo": [(0, 0.1), (2, 0.5)]})
    summary = curve_summaries(run, data)  # type: ignore[arg-type]
    delta = summary["sayo"]["final"][1]
    assert delta is not None and (delta.mean, delta.low, delta.high) == pytest.approx((0.1, 0.1, 0.1))
    assert summary["accuracy_format"]["final"][1] is None  # the baseline has no Δ
    assert summary["sayo"]["final"][0].high > summary["sayo"]["final"][0].low  # the values themselves vary
    lines = "\n".join(curve_lines(run, data, _verdict))  # type: ignore[arg-type]
    assert (
        "| (b) SAYO ends more accurate than (a) accuracy + format | +0.100 [+0.100, +0.100] | holds |"
        in lines
    )


def test_the_accuracy_experiment_misreads_where_it_says() -> None:
    """ablation_accuracy: every arm's recipe resolves with the misreading data and the accuracy
    curve; its harder split asks the misread colours only."""
    from sayo.experiment.steps import arm_overrides, arm_recipe, base_recipe, warm_dir
    from sayo.recipe import load_recipe

    cfg = load_ablation("ablation_accuracy")
    assert len(cfg.warm_starts) >= 3 and len(cfg.seeds) >= 3 and cfg.results == "docs/results-accuracy.md"
    warm = cfg.warm_starts[1]
    out = warm_dir(cfg, False, warm)
    recipe = base_recipe(cfg, False, out, warm)
    synthetic = recipe.data.synthetic
    assert synthetic.seed == 1 and synthetic.search_misread_rate == 1.0 and recipe.sft.max_steps == 1800
    assert synthetic.search_misread_colours == ["red", "green", "blue", "yellow", "cyan", "purple"]
    for arm in cfg.arms:
        run = arm_recipe(cfg, arm_overrides(cfg, False, warm, out / "data"), arm, 2, out / "sft", out)
        assert run.grpo.eval_every == 10 and run.seed == 2 and run.data.synthetic.search_misread_rate == 1.0
    hard = load_recipe(cfg.recipe, [*cfg.overrides, *cfg.hard])
    assert hard.data.synthetic.search_target_colours == synthetic.search_misread_colours
