"""The steps of `sayo experiment ablation` for one warm start (sayo.experiment.ablation runs them):
its data, its SFT checkpoint and the signal check on it (`prepare_warm_start`), one GRPO run per
arm × seed (`train_arm`), and the evaluation of all its checkpoints (`finish_warm_start`).

Each step's output is a directory stamped with a hash of the recipe sections it depends on; a step
whose output carries the same stamp is reused, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayo.atomic import write_json
from sayo.config import finite_numbers, flatten, save_config, to_dict
from sayo.data.build import build
from sayo.evaluate.config import BenchmarkConfig
from sayo.evaluate.run import EvalResult, evaluate
from sayo.experiment.config import AblationConfig, WarmStart
from sayo.recipe import Recipe, load_recipe
from sayo.train.diagnose import SignalReport, diagnose
from sayo.train.grpo import train_grpo
from sayo.train.sft import train_sft

Log = Callable[[str], None]


@dataclass
class ArmRun:
    """One GRPO run of the ablation."""

    arm: str
    seed: int
    checkpoint: Path
    run_id: str | None
    seconds: float


@dataclass
class WarmStartRun:
    """Everything one warm start produced: its SFT, signal check, GRPO runs and their evaluation."""

    spec: WarmStart
    out_dir: Path
    recipe: Recipe  # the warm start's base recipe (data seed, SFT seed, paths under out_dir)
    sft_checkpoint: Path
    signal: SignalReport
    runs: list[ArmRun]
    evaluation: EvalResult


def _digest(recipe: Recipe, sections: tuple[str, ...]) -> str:
    """A hash of the recipe sections a step's output depends on (never `tracking`: names, parents)."""
    values = {name: to_dict(getattr(recipe, name)) if hasattr(getattr(recipe, name), "__dataclass_fields__")
              else getattr(recipe, name) for name in sections}  # fmt: skip
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


SFT_SECTIONS = ("seed", "model", "data", "sft", "rewards")  # rewards.attention: the SFT attention term
GRPO_SECTIONS = ("seed", "model", "data", "grpo", "rewards")


def _fresh(path: Path, digest: str, made: str = "config.json") -> bool:
    """Whether a step's output at `path` (complete: it holds `made`) was made from the same recipe
    (its `.sayo-recipe` stamp)."""
    stamp = path / ".sayo-recipe"
    return (path / made).is_file() and stamp.is_file() and stamp.read_text() == digest


def _stamp(path: Path, digest: str) -> None:
    (path / ".sayo-recipe").write_text(digest)


def base_recipe(cfg: AblationConfig, quick: bool, out: Path, warm: WarmStart | None = None) -> Recipe:
    """The recipe every run of a warm start starts from, its data and checkpoints under `out`."""
    warm = warm or WarmStart()
    overrides = [*cfg.overrides, *(cfg.quick if quick else []), *warm.overrides()]
    if warm.sft_seed is not None:
        overrides.append(f"seed={warm.sft_seed}")
    paths = [f"data.path={out / 'data'}", f"checkpoint.dir={out / 'sft'}", f"evaluate.out_dir={out / 'eval'}"]
    return load_recipe(cfg.recipe, [*overrides, *paths])


def warm_starts(cfg: AblationConfig, quick: bool) -> list[WarmStart]:
    """The warm starts of a run: all of them, or the first `quick_warm_starts` under `--quick`."""
    return cfg.warm_starts[: cfg.quick_warm_starts] if quick else list(cfg.warm_starts)


def warm_dir(cfg: AblationConfig, quick: bool, warm: WarmStart) -> Path:
    """Where a warm start's steps write: the run's folder itself when it is the only one."""
    out = Path(cfg.out_dir) / ("quick" if quick else "full")
    return out if len(warm_starts(cfg, quick)) == 1 else out / warm.name()


def _build_once(recipe: Recipe) -> None:
    """The `data` stage for the recipe's dataset, skipped when it was built from the same `data:` section."""
    path, digest = Path(recipe.data.path), _digest(recipe, ("data",))
    if _fresh(path, digest, made="stats.json"):
        return
    build(recipe.data, progress=False)
    _stamp(path, digest)


def build_data(
    recipe: Recipe, cfg: AblationConfig, out: Path, quick: bool = False, warm: WarmStart | None = None
) -> tuple[Path, Path]:
    """The recipe's dataset and the harder split (all of it `test`), each built by the `data` stage."""
    _build_once(recipe)
    samples = cfg.quick_hard_samples if quick else cfg.hard_samples
    hard = load_recipe(
        cfg.recipe,
        [
            *cfg.overrides,
            *(warm or WarmStart()).overrides(),
            f"data.path={out / 'data-hard'}",
            f"data.synthetic.num_samples={samples}",
            "data.splits={train: 0.0, val: 0.0, test: 1.0}",
            *cfg.hard,
        ],
    )
    hard.data.synthetic.seed = recipe.data.synthetic.seed + 1  # other images than the training set's
    _build_once(hard)
    return Path(recipe.data.path), Path(hard.data.path)


def _nested(recipe: Recipe, parent: str | None, name: str, **changes: Any) -> Recipe:
    tracking = dataclasses.replace(recipe.tracking, parent_run_id=parent, run_name=name)
    return dataclasses.replace(recipe, tracking=tracking, **changes)


def warm_start(recipe: Recipe, parent: str | None, log: Log) -> Path:
    """The shared SFT checkpoint (reused when an earlier call made it from the same recipe)."""
    final = Path(recipe.checkpoint.dir) / "sft" / "final"
    digest = _digest(recipe, SFT_SECTIONS)
    if _fresh(final, digest):
        log(f"sft: reusing {final}")
        return final
    result = train_sft(_nested(recipe, parent, "sft"))
    _stamp(result.final_dir, digest)
    return result.final_dir


def arm_recipe(
    cfg: AblationConfig, recipe_overrides: list[str], arm: str, seed: int, sft: Path, out: Path
) -> Recipe:
    """The recipe of one arm × seed: the base recipe, the arm's overrides, the seed, the warm start."""
    return load_recipe(
        cfg.recipe,
        [
            *recipe_overrides,
            *cfg.arms[arm],
            f"seed={seed}",
            f"grpo.init_from={sft}",
            f"checkpoint.dir={out / 'runs' / f'{arm}-s{seed}'}",
        ],
    )


def run_arm(recipe: Recipe, arm: str, seed: int, parent: str | None, log: Log) -> ArmRun:
    """GRPO for one arm × seed (reused when its final checkpoint exists from the same recipe)."""
    final = Path(recipe.checkpoint.dir) / "grpo" / "final"
    digest = _digest(recipe, GRPO_SECTIONS)
    began = time.perf_counter()
    if _fresh(final, digest):
        log(f"{arm} seed {seed}: reusing {final}")
        stamp = json.loads((final / ".sayo-run").read_text()) if (final / ".sayo-run").is_file() else {}
        return ArmRun(arm, seed, final, stamp.get("run_id"), 0.0)
    result = train_grpo(_nested(recipe, parent, f"{arm}-s{seed}"))
    _stamp(result.final_dir, digest)
    (result.final_dir / ".sayo-run").write_text(json.dumps({"run_id": result.run_id}))
    return ArmRun(arm, seed, result.final_dir, result.run_id, time.perf_counter() - began)


def evaluate_all(
    recipe: Recipe,
    cfg: AblationConfig,
    test: Path,
    hard: Path,
    sft: Path,
    runs: list[ArmRun],
    parent: str | None,
) -> EvalResult:
    """The warm start and every GRPO checkpoint on the held-out and the harder split."""
    benchmarks = [
        BenchmarkConfig(
            name="heldout", type="dataset", path=str(test), split="test", metric="by_answer_type"
        ),
        BenchmarkConfig(name="hard", type="dataset", path=str(hard), split="test", metric="by_answer_type"),
    ]
    evaluation = dataclasses.replace(
        recipe.evaluate,
        benchmarks=benchmarks,
        gallery_samples=cfg.gallery_samples,
        bootstrap_samples=min(recipe.evaluate.bootstrap_samples, cfg.bootstrap_samples),
    )
    specs = [f"sft={sft}", *(f"{r.arm}-s{r.seed}={r.checkpoint}" for r in runs)]
    return evaluate(_nested(recipe, parent, "evaluate", evaluate=evaluation), specs, progress=False)


def pick_warm_start(cfg: AblationConfig, warm: str, quick: bool = False) -> int:
    """The index in the run's warm starts of `warm`: a warm start's name (`ws-d1-s1`) or its index."""
    specs = warm_starts(cfg, quick)
    names = [w.name() for w in specs]
    if warm in names:
        return names.index(warm)
    if warm.lstrip("-").isdigit() and 0 <= int(warm) < len(specs):
        return int(warm)
    size = " under --quick" if quick else ""
    raise ValueError(
        f"warm start {warm!r} is neither a name nor an index 0..{len(specs) - 1} of {names}{size}"
    )


def warm_name(cfg: AblationConfig, index: int, quick: bool = False) -> str:
    """The name of warm start number `index` of the run."""
    return warm_starts(cfg, quick)[index].name()


def arm_overrides(cfg: AblationConfig, quick: bool, warm: WarmStart, test: Path) -> list[str]:
    """The overrides every GRPO run of a warm start shares (its data, the quick size)."""
    return [*cfg.overrides, *(cfg.quick if quick else []), *warm.overrides(), f"data.path={test}"]


def _timed(times: dict[str, float], step: str, began: float) -> None:
    times[step] = times.get(step, 0.0) + time.perf_counter() - began


@dataclass
class Prepared:
    """A warm start's first steps: its data, the SFT checkpoint and the signal check on it."""

    index: int
    test: Path
    hard: Path
    sft: Path
    signal: SignalReport
    seconds: dict[str, float]


def prepare_warm_start(
    cfg: AblationConfig, quick: bool, index: int, parent: str | None, log: Log
) -> Prepared:
    """Data, SFT and the signal check of warm start number `index` (each reused when fresh)."""
    warm = warm_starts(cfg, quick)[index]
    out = warm_dir(cfg, quick, warm)
    recipe = base_recipe(cfg, quick, out, warm)
    log(f"{warm.name()}: data, SFT warm start, signal check")
    times: dict[str, float] = {}
    began = time.perf_counter()
    test, hard = build_data(recipe, cfg, out, quick, warm)
    _timed(times, "data", began)
    began = time.perf_counter()
    sft = warm_start(recipe, parent, log)
    _timed(times, "sft", began)
    began = time.perf_counter()
    signal = diagnose(recipe, str(sft))
    _timed(times, "diagnose", began)
    for warning in signal.warnings:
        log(f"signal check ({warm.name()}): {warning}")
    return Prepared(index, test, hard, sft, signal, times)


def train_arm(
    cfg: AblationConfig, quick: bool, ready: Prepared, arm: str, seed: int, parent: str | None, log: Log
) -> ArmRun:
    """GRPO for one arm × seed from a prepared warm start."""
    warm = warm_starts(cfg, quick)[ready.index]
    log(f"grpo ({warm.name()}): {cfg.label(arm)}, seed {seed}")
    overrides = arm_overrides(cfg, quick, warm, ready.test)
    recipe = arm_recipe(cfg, overrides, arm, seed, ready.sft, warm_dir(cfg, quick, warm))
    return run_arm(recipe, arm, seed, parent, log)


def finish_warm_start(
    cfg: AblationConfig, quick: bool, ready: Prepared, runs: list[ArmRun], parent: str | None
) -> tuple[WarmStartRun, float]:
    """Evaluate a warm start's SFT and GRPO checkpoints; writes its recipe, runs and signal check."""
    warm = warm_starts(cfg, quick)[ready.index]
    out = warm_dir(cfg, quick, warm)
    recipe = base_recipe(cfg, quick, out, warm)
    began = time.perf_counter()
    evaluation = evaluate_all(recipe, cfg, ready.test, ready.hard, ready.sft, runs, parent)
    seconds = time.perf_counter() - began
    save_config(recipe, out / "recipe.yaml")
    write_json(out / "runs.json", [dataclasses.asdict(r) | {"checkpoint": str(r.checkpoint)} for r in runs])
    write_json(out / "signal.json", finite_numbers(flatten(ready.signal.as_dict())))
    return WarmStartRun(warm, out, recipe, ready.sft, ready.signal, runs, evaluation), seconds
