"""`sayo experiment ablation`: the paper's reward ablation on one base recipe, end to end.

For each warm start (`warm_starts`: a data seed and an SFT seed), the steps of sayo.experiment.steps:
1. data    the recipe's dataset, and a harder held-out split (`hard`), built by the `data` stage;
2. sft     one warm start shared by every arm (`sayo.train.sft`);
3. diagnose the signal check on that warm start: each reward term's within- vs between-group
           spread (`sayo.train.diagnose`);
4. grpo    every arm × seed from the warm start (`sayo.train.grpo`), each a nested MLflow run;
5. evaluate the warm start and every GRPO checkpoint on the held-out and the harder split, the
           same samples for all (`sayo.evaluate.run`);
then the results page from all of them (`sayo.experiment.results`): per-arm accuracy and attention
lift with hierarchical paired intervals against the baseline, curves, a heatmap gallery.

With `jobs` > 1 the steps run on that many processes side by side (sayo.experiment.schedule), each
as soon as what it needs is done; the result is the same steps' (each process takes its share of
the cores, so the numbers may differ in the last bits).

Everything lands under one MLflow parent run. With one warm start its steps write straight under
`out_dir/<full|quick>/`; with several, each warm start under `out_dir/<full|quick>/<warm start name>/`.
Each step's output is a directory there; a step whose output exists from an earlier call with the
same recipe is reused (the SFT warm start, each arm's final checkpoint), so an interrupted ablation
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from sayo.config import finite_numbers
from sayo.experiment.config import AblationConfig
from sayo.experiment.schedule import run_parallel, run_serial
from sayo.experiment.steps import (
    ArmRun,
    Log,
    Prepared,
    WarmStartRun,
    arm_overrides,
    arm_recipe,
    base_recipe,
    build_data,
    run_arm,
    warm_dir,
    warm_start,
    warm_starts,
)
from sayo.recipe import Recipe
from sayo.tracking import StageRun


@dataclass
class AblationRun:
    """What the ablation produced, for the results page."""

    config: AblationConfig
    quick: bool
    out_dir: Path
    seeds: list[int]
    warm_starts: list[WarmStartRun]  # at least one
    parent_run_id: str | None
    # step -> seconds over all warm starts (summed over the jobs), and `wall`: the run's
    seconds: dict[str, float] = field(default_factory=dict)
    jobs: int = 1  # processes the steps ran on

    def checkpoint_name(self, arm: str, seed: int) -> str:
        return f"{arm}-s{seed}"

    @property
    def first(self) -> WarmStartRun:
        """The first warm start: its signal check and heatmap gallery are the page's."""
        return self.warm_starts[0]

    @property
    def recipe(self) -> Recipe:
        return self.first.recipe

    @property
    def runs(self) -> list[ArmRun]:
        return [r for w in self.warm_starts for r in w.runs]


def run_ablation(cfg: AblationConfig, quick: bool = False, log: Log = print, jobs: int = 1) -> AblationRun:
    """Run the whole ablation (reusing finished steps); returns everything the results page needs.

    `jobs` > 1 runs the steps on that many processes (each with its share of the cores): the SFT warm
    starts side by side, then every arm × seed as soon as its warm start is ready, then each warm
    start's evaluation; the step times are then summed over the jobs, and `wall` is the run's."""
    out = Path(cfg.out_dir) / ("quick" if quick else "full")
    seeds, specs = cfg.quick_seeds if quick else cfg.seeds, warm_starts(cfg, quick)
    tracking = base_recipe(cfg, quick, out).tracking
    times: dict[str, float] = {}
    params = {"experiment.recipe": cfg.recipe, "experiment.quick": quick, "experiment.seeds": seeds,
              "experiment.warm_starts": [w.name() for w in specs], "experiment.jobs": jobs,
              **{f"experiment.arms.{k}": v for k, v in cfg.arms.items()}}  # fmt: skip
    began = time.perf_counter()
    with StageRun(dataclasses.replace(tracking, run_name="ablation"), stage="ablation", params=params) as run:

        def started(ready: Prepared) -> None:
            signal = finite_numbers(ready.signal.as_dict())
            name = specs[ready.index].name()
            run.log_metrics({f"{name}/{k}": v for k, v in signal.items()} if len(specs) > 1 else signal,
                            step=ready.index)  # fmt: skip

        if jobs > 1:
            done = run_parallel(cfg, quick, run.run_id, log, times, started, jobs)
        else:
            done = run_serial(cfg, quick, run.run_id, log, times, started)
        times["wall"] = time.perf_counter() - began
        run.log_metrics({f"seconds/{k}": v for k, v in times.items()}, step=0)
    return AblationRun(cfg, quick, out, list(seeds), done, run.run_id, times, jobs)


def run_one_arm(
    cfg: AblationConfig, arm: str, seed: int, quick: bool = False, log: Log = print, warm: int = 0
) -> ArmRun:
    """One arm × seed from warm start number `warm` (its data and SFT made or reused first): a `dvc`
    matrix item."""
    if arm not in cfg.arms:
        raise ValueError(f"arm {arm!r} is not one of {list(cfg.arms)}")
    spec = warm_starts(cfg, quick)[warm]
    out = warm_dir(cfg, quick, spec)
    recipe = base_recipe(cfg, quick, out, spec)
    test, _ = build_data(recipe, cfg, out, quick, spec)
    sft = warm_start(recipe, None, log)
    return run_arm(
        arm_recipe(cfg, arm_overrides(cfg, quick, spec, test), arm, seed, sft, out), arm, seed, None, log
    )
