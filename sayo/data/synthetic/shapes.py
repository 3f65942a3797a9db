"""The `shapes` and `choice` tasks: one coloured shape among distractors, a question about it.

Why these questions: "What digit is inside the red triangle?" names the target by a colour-kind
pair that no distractor shares, and "What colour is the circle?" by a kind that no distractor
shares, so exactly one region answers each question and the distractors carry the same kinds of
visual features (colours, digits) as the target. Counting questions are left out: they have no
single region. `choice` asks the colour question as multiple choice and is answered by a letter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sayo.data.schema import AnswerType, Region
from sayo.data.synthetic.canvas import PALETTE, Canvas, Draft, background, jitter, text_colour
from sayo.data.synthetic.config import DifficultyParams, SyntheticConfig

KINDS: tuple[str, ...] = ("square", "circle", "triangle")
COLOURS: tuple[str, ...] = tuple(PALETTE)
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Shape:
    """One shape of a scene: what it is and where it is (inclusive pixel box of side `size`)."""

    kind: str
    colour: str
    digit: int
    x: int = 0
    y: int = 0
    size: int = 0


def scene_attributes(
    rng: np.random.Generator, question: str, num_distractors: int, confusable: bool
) -> list[Shape]:
    """Target first, then distractors, such that `question` ("digit" | "colour") has one answer.

    digit: no distractor has the target's (colour, kind); if `confusable`, each shares one of them.
    colour: no distractor has the target's kind.
    """
    kind, colour = str(rng.choice(KINDS)), str(rng.choice(COLOURS))
    pairs = [(k, c) for k in KINDS for c in COLOURS if (k, c) != (kind, colour)]
    if question == "colour":
        pairs = [(k, c) for k, c in pairs if k != kind]
    elif confusable:
        pairs = [(k, c) for k, c in pairs if k == kind or c == colour]
    picks = rng.integers(0, len(pairs), size=num_distractors)
    digits = rng.integers(0, 10, size=num_distractors + 1)
    shapes = [Shape(kind, colour, int(digits[0]))]
    shapes += [Shape(pairs[p][0], pairs[p][1], int(d)) for p, d in zip(picks, digits[1:], strict=True)]
    return shapes


def layout(shapes: list[Shape], size: tuple[int, int], scale: float, rng: np.random.Generator) -> list[Shape]:
    """Place shapes in distinct cells of a grid fitted to the aspect ratio (so none overlap)."""
    width, height = size
    n = len(shapes)
    cols = max(1, math.ceil(math.sqrt(n * width / height)))
    rows = math.ceil(n / cols)
    cell_w, cell_h = width // cols, height // rows
    side = max(3, int(min(cell_w, cell_h) * scale))
    cells = rng.permutation(cols * rows)[:n]
    placed = []
    for shape, cell in zip(shapes, cells, strict=True):
        row, col = divmod(int(cell), cols)
        x = col * cell_w + int(rng.integers(0, cell_w - side + 1))
        y = row * cell_h + int(rng.integers(0, cell_h - side + 1))
        placed.append(Shape(shape.kind, shape.colour, shape.digit, x, y, side))
    return placed


def draw_shape(
    canvas: Canvas, shape: Shape, fill: tuple[int, int, int], tag: str | None, digit: bool = True
) -> None:
    """Draw `shape` filled with `fill` and (if `digit`) its digit inside, big enough to read at 28 px cells."""
    x0, y0, s = shape.x, shape.y, shape.size
    x1, y1 = x0 + s - 1, y0 + s - 1
    if shape.kind == "square":
        canvas.rectangle((x0, y0, x1, y1), fill, tag)
    elif shape.kind == "circle":
        canvas.ellipse((x0, y0, x1, y1), fill, tag)
    else:
        canvas.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill, tag)
    if not digit:
        return
    # A triangle's widest inner area is low down, so its digit is smaller and lower.
    size, cy = (0.42 * s, y0 + 0.64 * s) if shape.kind == "triangle" else (0.6 * s, y0 + s / 2)
    canvas.text(((x0 + x1) / 2, cy), str(shape.digit), int(size), text_colour(fill), "mm")


def render(
    shapes: list[Shape], size: tuple[int, int], params: DifficultyParams, rng: np.random.Generator
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Draw a laid-out scene; returns the image and the tight box of `shapes[0]` (the target)."""
    canvas = Canvas(size, background(params.background_jitter, rng))
    for i, shape in enumerate(shapes):
        fill = jitter(PALETTE[shape.colour], params.colour_jitter, rng)
        draw_shape(canvas, shape, fill, "target" if i == 0 else None)
    return canvas.finish(params.noise_std, rng), canvas.bbox("target")


def _scene(
    rng: np.random.Generator, config: SyntheticConfig, question: str
) -> tuple[Shape, Image.Image, list[Region]]:
    params = config.params
    shapes = scene_attributes(rng, question, config.num_distractors, params.confusable)
    shapes = layout(shapes, config.image_size, params.object_scale, rng)
    image, box = render(shapes, config.image_size, params, rng)
    target = shapes[0]
    return target, image, [Region(bbox=box, label=f"{target.colour} {target.kind}")]


def shapes_task(rng: np.random.Generator, config: SyntheticConfig) -> tuple[Draft, Image.Image]:
    """A digit or colour question about one shape; answer_type `exact`."""
    question = "digit" if rng.random() < 0.5 else "colour"
    target, image, regions = _scene(rng, config, question)
    if question == "digit":
        text, answer = f"What digit is inside the {target.colour} {target.kind}?", str(target.digit)
    else:
        text, answer = f"What colour is the {target.kind}?", target.colour
    return Draft(text, answer, AnswerType.EXACT, regions), image


def choice_task(rng: np.random.Generator, config: SyntheticConfig) -> tuple[Draft, Image.Image]:
    """The colour question as multiple choice over the four colours; the answer is a letter.

    The options live in `Sample.choices` (A, B, C, D order), not in the question text: the prompt
    builder renders them. Easy keeps a fixed order; harder levels shuffle it.
    """
    target, image, regions = _scene(rng, config, "colour")
    choices = list(COLOURS)
    if config.params.shuffle_choices:
        choices = [choices[i] for i in rng.permutation(len(choices))]
    letter = LETTERS[choices.index(target.colour)]
    text = f"What colour is the {target.kind}?"
    return Draft(text, letter, AnswerType.CHOICE, regions, choices), image
