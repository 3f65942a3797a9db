"""Configuration of the synthetic region-grounded data (the `data` stage's tiny-recipe source).

Why a synthetic set: the tiny CPU recipe needs grounded questions that a 2.5M-parameter model can
learn in minutes and that *cannot* be answered without looking at one annotated region, so the
attention reward (docs/method.md, "The attention reward") has something meaningful to measure.
`difficulty` is the single knob that makes the pictures harder without changing the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NoReturn

from sayo.config import fail

TASK_NAMES: tuple[str, ...] = ("shapes", "bars", "choice", "search")
MIN_SIDE, MAX_SIDE = 32, 4096
MAX_DISTRACTORS = 8


@dataclass(frozen=True)
class DifficultyParams:
    """What one difficulty level changes in the pictures (the questions stay the same)."""

    object_scale: float  # shape side as a fraction of its layout cell
    colour_jitter: int  # max per-channel shift of a palette colour, so colours look more alike
    noise_std: float  # std of Gaussian pixel noise added to the finished image
    background_jitter: int  # max darkening of the white background
    confusable: bool  # distractors share the target's colour or kind (shapes)
    value_labels: bool  # bars show their value above them (else read it from the axis)
    axis_max: int  # bar values are integers in [1, axis_max]
    label_step: int  # y-axis tick labels every label_step units (gridlines every unit)
    shuffle_choices: bool  # multiple-choice options in random order (else a fixed order)


DIFFICULTIES: dict[str, DifficultyParams] = {
    "easy": DifficultyParams(0.8, 0, 0.0, 0, False, True, 10, 2, False),
    "medium": DifficultyParams(0.65, 20, 6.0, 10, False, True, 10, 2, True),
    "hard": DifficultyParams(0.5, 40, 14.0, 25, True, False, 20, 5, True),
}


SEARCH_DETOURS = ("random", "lookalike")
# the `search` task's object colours (its palette, `sayo.data.synthetic.search.SEARCH_PALETTE`)
SEARCH_COLOUR_NAMES = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "cyan", "brown")


def _default_tasks() -> dict[str, float]:
    return {"shapes": 1.0, "bars": 0.5, "choice": 0.25}


@dataclass
class SyntheticConfig:
    """Knobs of the synthetic generator; every field is checked in `__post_init__`."""

    num_samples: int = 256  # how many samples `generate` yields (split over tasks by weight)
    image_size: tuple[int, int] = (224, 224)  # (width, height) in pixels, each side in [32, 4096]
    num_distractors: int = 3  # other objects besides the target (shapes or bars), 0..8
    difficulty: str = "easy"  # "easy" | "medium" | "hard": smaller objects, closer colours, noise
    tasks: dict[str, float] = field(default_factory=_default_tasks)  # task family -> weight >= 0
    seed: int = 0  # same seed and config -> byte-identical images and identical samples
    search_path: int = 3  # `search`: most distractors its reasoning path names before the target
    object_scale: float | None = None  # `search`: object side / layout cell (None: the difficulty's)
    object_tokens: int = 0  # `search`: if > 0, objects are this many 28 px tokens wide, token-aligned
    search_question: str = "shape"  # `search`: "shape" (the kind) | "below" (a striped tile's 2nd colour)
    search_path_target: bool = False  # `search`: the path ends with the target and its answer
    search_detour: str = "random"  # `search`: which objects the path visits: random, or lookalike first
    search_detour_rate: float | None = None  # `search`: None: 0..search_path visits; p: each made w.p. p
    # with question "below", a path that visits the look-alike first carries its second colour over
    # to the target (reasoning and answer; `answer` stays right): `Sample.demonstrated_answer`
    search_misread_rate: float = 0.0  # `search`: share of samples whose demonstration misreads (0 = none)
    search_misread_colours: list[str] = field(default_factory=list)  # asked colours that misread ([] = all)
    search_target_colours: list[str] = field(default_factory=list)  # `search`: asked colours ([] = all)

    def __post_init__(self) -> None:
        _check_int("num_samples", self.num_samples, 1, None)
        self.image_size = _check_size(self.image_size)
        _check_int("num_distractors", self.num_distractors, 0, MAX_DISTRACTORS)
        if self.difficulty not in DIFFICULTIES:
            _fail("difficulty", self.difficulty, f"must be one of {sorted(DIFFICULTIES)}")
        self.tasks = _check_tasks(self.tasks)
        _check_int("seed", self.seed, 0, None)
        _check_int("search_path", self.search_path, 0, MAX_DISTRACTORS)
        _check_int("object_tokens", self.object_tokens, 0, 8)
        if self.search_question not in ("shape", "below"):
            _fail("search_question", self.search_question, "must be 'shape' or 'below'")
        if not isinstance(self.search_path_target, bool):
            _fail("search_path_target", self.search_path_target, "must be true or false")
        if self.search_detour not in SEARCH_DETOURS:
            _fail("search_detour", self.search_detour, f"must be one of {list(SEARCH_DETOURS)}")
        _check_optional_number("search_detour_rate", self.search_detour_rate, 0.0, 1.0)
        _check_optional_number("search_misread_rate", self.search_misread_rate, 0.0, 1.0)
        if self.search_misread_rate is None:
            _fail("search_misread_rate", None, "must be a number in [0, 1]")
        if self.search_misread_rate > 0 and self.search_question != "below":
            _fail("search_misread_rate", self.search_misread_rate, "needs search_question: below")
        for name in ("search_misread_colours", "search_target_colours"):
            colours = getattr(self, name)
            if not isinstance(colours, (list, tuple)) or any(c not in SEARCH_COLOUR_NAMES for c in colours):
                _fail(name, colours, f"must be a list of colours from {list(SEARCH_COLOUR_NAMES)}")
            setattr(self, name, list(colours))
        _check_optional_number("object_scale", self.object_scale, 0.1, 1.0)

    @property
    def params(self) -> DifficultyParams:
        """The picture parameters of this config's difficulty."""
        return DIFFICULTIES[self.difficulty]


def _fail(name: str, value: object, why: str) -> NoReturn:
    fail(f"SyntheticConfig.{name}", value, why)


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, "must be an integer")
    elif value < low or (high is not None and value > high):
        _fail(name, value, f"must be in [{low}, {high if high is not None else 'inf'}]")


def _check_optional_number(name: str, value: object, low: float, high: float) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high
    ):
        _fail(name, value, f"must be None or a number in [{low:g}, {high:g}]")


def _check_size(value: object) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        _fail("image_size", value, "must be a (width, height) pair")
    width, height = value
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int) or not MIN_SIDE <= side <= MAX_SIDE:
            _fail("image_size", value, f"sides must be integers in [{MIN_SIDE}, {MAX_SIDE}]")
    return (width, height)


def _check_tasks(value: object) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        _fail("tasks", value, f"must be a non-empty mapping from {list(TASK_NAMES)} to weights")
    tasks = dict(value)
    unknown = sorted(set(tasks) - set(TASK_NAMES))
    if unknown:
        _fail("tasks", value, f"unknown task(s) {unknown}; known tasks are {list(TASK_NAMES)}")
    for name, weight in tasks.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            _fail("tasks", value, f"weight of {name!r} must be a finite number")
        if weight < 0:
            _fail("tasks", value, f"weight of {name!r} must be >= 0")
    if sum(tasks.values()) <= 0:
        _fail("tasks", value, "at least one weight must be > 0")
    return {name: float(weight) for name, weight in tasks.items()}
