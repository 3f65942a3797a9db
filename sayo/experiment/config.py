"""An ablation: one base recipe, SFT warm starts, GRPO arms × seeds from each, evaluated on two splits.

The file (`sayo/recipes/experiments/*.yaml`, or any YAML) names a recipe and the overrides that
make each arm; every run of every arm is that recipe plus the warm start's data seed plus the arm's
overrides plus its seed, so an arm is reproducible by hand with
`sayo grpo --config <recipe> data.synthetic.seed=<d> <overrides> seed=<s>`.

Warm starts are a level of the experiment: each is its own dataset (data seed) and SFT run (SFT
seed), and every arm × seed runs from each, so an effect is measured across warm starts, not on
the one warm start that happened to be trained (`sayo.experiment.stats.hierarchical`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sayo.config import PACKAGED_RECIPES, check, from_dict, read_yaml

EXPERIMENTS_DIR = PACKAGED_RECIPES / "experiments"


@dataclass
class WarmStart:
    """One SFT warm start: its dataset's seed and its SFT run's seed (null = the recipe's)."""

    data_seed: int | None = None  # data.synthetic.seed of its dataset (training and held-out samples)
    sft_seed: int | None = None  # `seed` of its SFT run

    def overrides(self) -> list[str]:
        """The recipe overrides of the warm start's data (every run of it) ."""
        return [] if self.data_seed is None else [f"data.synthetic.seed={self.data_seed}"]

    def name(self) -> str:
        parts = [f"d{self.data_seed}" if self.data_seed is not None else "",
                 f"s{self.sft_seed}" if self.sft_seed is not None else ""]  # fmt: skip
        return "ws-" + ("-".join(p for p in parts if p) or "recipe")


@dataclass
class AblationConfig:
    """`sayo experiment ablation --config <file>`: what is compared, how often, where it is written."""

    description: str = ""  # one line for the results page
    recipe: str = "miniature"  # the base recipe every run starts from (name or file)
    overrides: list[str] = field(default_factory=list)  # recipe overrides for every run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # GRPO seeds of every arm
    warm_starts: list[WarmStart] = field(default_factory=lambda: [WarmStart()])  # SFT warm starts
    baseline: str = "accuracy_format"  # the arm every other arm is compared with (paired)
    compare_with: dict[str, str] = field(
        default_factory=dict
    )  # arm -> its own baseline arm (default: baseline)
    arms: dict[str, list[str]] = field(default_factory=dict)  # arm -> its recipe overrides
    labels: dict[str, str] = field(default_factory=dict)  # arm -> the name tables and figures show
    hard: list[str] = field(default_factory=list)  # data overrides of the harder evaluation split
    hard_samples: int = 200  # samples of the harder split
    quick: list[str] = field(default_factory=list)  # extra overrides of `--quick` (minutes, not an hour)
    quick_seeds: list[int] = field(default_factory=lambda: [0, 1])  # seeds of `--quick`
    quick_warm_starts: int = 1  # `--quick` uses the first this many warm starts
    quick_hard_samples: int = 16  # samples of the harder split under `--quick`
    out_dir: str = "outputs/ablation"  # data, checkpoints, evaluation and results of the runs
    results: str = "docs/results.md"  # the generated results page (figures next to it, in results/)
    bootstrap_samples: int = 2000  # resamples of the paired bootstrap intervals
    confidence: float = 0.95  # level of every interval
    gallery_samples: int = 4  # held-out samples whose heatmaps are shown for every arm
    chance: float | None = None  # accuracy of guessing on the held-out task (the page compares with it)
    discussion: str = ""  # why the findings come out as they do here (prose, no numbers: those are generated)

    def __post_init__(self) -> None:
        check(bool(self.arms), "arms", self.arms, "needs at least one arm")
        check(
            self.baseline in self.arms,
            "baseline",
            self.baseline,
            f"must be one of the arms {list(self.arms)}",
        )
        check(
            bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
            "seeds",
            self.seeds,
            "distinct, non-empty",
        )
        check(bool(self.quick_seeds), "quick_seeds", self.quick_seeds, "must not be empty")
        names = [w.name() for w in self.warm_starts]
        check(bool(names) and len(set(names)) == len(names), "warm_starts", names, "distinct, non-empty")
        check(self.quick_warm_starts >= 1, "quick_warm_starts", self.quick_warm_starts, "must be >= 1")
        for name in self.arms:
            check(name.replace("_", "").isalnum(), "arms", name, "arm names are letters, digits and _")
        for arm, base in self.compare_with.items():
            check(arm in self.arms and base in self.arms and arm != base, f"compare_with.{arm}", base,
                  f"an arm compared with another arm of {list(self.arms)}")  # fmt: skip
        check(self.hard_samples >= 1, "hard_samples", self.hard_samples, "must be >= 1")
        check(self.quick_hard_samples >= 1, "quick_hard_samples", self.quick_hard_samples, "must be >= 1")
        check(0 < self.confidence < 1, "confidence", self.confidence, "must be in (0, 1)")
        check(
            self.chance is None or 0 <= self.chance <= 1, "chance", self.chance, "must be in [0, 1] or null"
        )

    def label(self, arm: str) -> str:
        return self.labels.get(arm, arm)

    def baseline_of(self, arm: str) -> str:
        """The arm `arm` is compared with (paired): its `compare_with` entry, else `baseline`."""
        return self.compare_with.get(arm, self.baseline)


def experiment_path(name_or_path: str | Path) -> Path:
    """An experiment file: an existing path, or the name of one shipped in sayo/recipes/experiments/."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    raise ValueError(
        f"no experiment file {str(name_or_path)!r}: shipped experiments are {names}, or give a path"
    )


def load_ablation(name_or_path: str | Path) -> AblationConfig:
    """The ablation of a file, with an error naming the file and the field."""
    path = experiment_path(name_or_path)
    try:
        return from_dict(AblationConfig, read_yaml(path))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
