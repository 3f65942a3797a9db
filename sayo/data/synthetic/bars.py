"""The `bars` task: a ChartQA-like bar chart, "What is the value of bar C?".

Why this shape: ChartQA is one of the paper's benchmarks (docs/method.md, "Findings to reproduce"), and reading one
bar among distractor bars is the simplest chart question with a single answering region. The
region is the target bar with its top, its value label (when drawn) and its letter, measured from
drawn pixels. Values are small integers on a 0..`axis_max` axis with a gridline per unit, so bar
heights in pixels are `round(value / axis_max * plot_height)` and the value is readable from the
ticks even at hard difficulty, where the value labels are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from sayo.data.schema import AnswerType, Region
from sayo.data.synthetic.canvas import BLACK, Canvas, Draft, background, jitter
from sayo.data.synthetic.config import DifficultyParams, SyntheticConfig

BAR_COLOUR = (70, 130, 180)
GRID_COLOUR = (215, 215, 215)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class ChartFrame:
    """Pixel geometry of the plot area: the x-axis row, the y-axis column and the font size."""

    left: int  # x of the first plot column; the y-axis is drawn at left - 1
    right: int  # x one past the last plot column
    top: int  # y of the axis maximum
    baseline: int  # y of the x-axis (value 0); bars fill the rows above it
    font_size: int

    @property
    def height(self) -> int:
        """Pixels from value 0 to `axis_max`."""
        return self.baseline - self.top


def chart_frame(size: tuple[int, int]) -> ChartFrame:
    """Margins scaled to the image: room for tick labels (left), letters (bottom), values (top)."""
    width, height = size
    fs = max(6, round(min(width, height) / 12))
    left = int(fs * 1.6) + 4
    return ChartFrame(left, width - max(2, fs // 2), int(fs * 1.4), height - int(fs * 1.4), fs)


def bar_height(value: int, axis_max: int, frame: ChartFrame) -> int:
    """Height in pixels of a bar of `value` on a 0..`axis_max` axis (at least 1 px)."""
    return max(1, round(value / axis_max * frame.height))


def draw_axes(canvas: Canvas, frame: ChartFrame, params: DifficultyParams) -> None:
    """Gridline per unit, tick label every `label_step` units, then the two axis lines."""
    for value in range(params.axis_max + 1):
        y = frame.baseline - round(value / params.axis_max * frame.height)
        canvas.line([(frame.left, y), (frame.right - 1, y)], GRID_COLOUR)
        if value % params.label_step == 0:
            canvas.line([(frame.left - 4, y), (frame.left - 1, y)], BLACK)
            canvas.text((frame.left - 5, y), str(value), int(frame.font_size * 0.85), BLACK, "rm")
    canvas.line([(frame.left - 1, frame.top), (frame.left - 1, frame.baseline)], BLACK)
    canvas.line([(frame.left - 1, frame.baseline), (frame.right - 1, frame.baseline)], BLACK)


def draw_bars(
    canvas: Canvas, values: list[int], target: int, params: DifficultyParams, rng: np.random.Generator
) -> None:
    """Bars in equal slots with their letter below and (if enabled) their value above."""
    frame = chart_frame(canvas.image.size)
    slot = (frame.right - frame.left) / len(values)
    bar_w = max(1, int(slot * 0.6))
    for i, value in enumerate(values):
        tag = "target" if i == target else None
        x0 = frame.left + int(i * slot + (slot - bar_w) / 2)
        top = frame.baseline - bar_height(value, params.axis_max, frame)
        fill = jitter(BAR_COLOUR, params.colour_jitter, rng)
        canvas.rectangle((x0, top, x0 + bar_w - 1, frame.baseline - 1), fill, tag)
        centre = x0 + (bar_w - 1) / 2
        canvas.text((centre, frame.baseline + 2), LETTERS[i], frame.font_size, BLACK, "mt", tag)
        if params.value_labels:
            canvas.text((centre, top - 2), str(value), frame.font_size, BLACK, "mb", tag)


def bars_task(rng: np.random.Generator, config: SyntheticConfig) -> tuple[Draft, Image.Image]:
    """A bar chart of `num_distractors + 1` bars; the answer is the target bar's value (`number`)."""
    params = config.params
    count = config.num_distractors + 1
    values = [int(v) for v in rng.integers(1, params.axis_max + 1, size=count)]
    target = int(rng.integers(0, count))
    canvas = Canvas(config.image_size, background(params.background_jitter, rng))
    draw_axes(canvas, chart_frame(config.image_size), params)
    draw_bars(canvas, values, target, params, rng)
    image = canvas.finish(params.noise_std, rng)
    region = Region(bbox=canvas.bbox("target"), label=f"bar {LETTERS[target]}")
    question = f"What is the value of bar {LETTERS[target]}?"
    return Draft(question, str(values[target]), AnswerType.NUMBER, [region]), image
