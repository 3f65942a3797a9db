"""The `search` task: objects of distinct colours, "What shape is red?", with a search path.

Why this task (the `miniature` recipe, docs/results.md): the miniature needs a question that is
answered *only* by looking at one small region, whose cue is the cheapest thing for a tiny model to
bind (a colour named in the question), and whose reasoning can differ between rollouts in *where*
it looks. Every object has its own colour, so the colour names exactly one object; its kind
(square, circle, triangle) or, with `search_question: below`, a striped tile's second colour is
the answer, independent of the named colour, so it cannot be guessed from the text.

The region's label is a *search path*: a few distractors, each named by its colour and the
attribute read off it ("blue circle, green square"), and with `search_path_target` the target last
("…, red triangle"). The sample carries it as its `reasoning` too, and without the detours as its
`direct_reasoning` (`direct_label`), which SFT teaches as is (`sayo.train.sft.sft_target`): every
attribute in it is read off the picture at the token that names it (a one-hop lookup from the
colour just written), and rollouts that visit different distractors look at different places. How
many distractors the path visits is drawn uniformly from 0..`search_path` (capped by the number of
distractors), or with `search_detour_rate` p each of those `search_path` visits is made with
probability p; which ones: random distractors, or with `search_detour: lookalike` first the object of
the target's look-alike colour (`LOOKALIKE`): a habit the policy learns from SFT that the region reward
can unlearn and accuracy cannot see, since the path still ends at the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from sayo.data.schema import AnswerType, Region
from sayo.data.synthetic.canvas import RGB, Canvas, Draft, background, jitter
from sayo.data.synthetic.config import SEARCH_COLOUR_NAMES, SyntheticConfig
from sayo.data.synthetic.shapes import KINDS, Shape, draw_shape, layout

# Nine well-separated colours, one per object (up to 8 distractors); each is one token of the
# tiny tokenizer with a leading space.
SEARCH_PALETTE: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 30),
    "orange": (245, 140, 20),
    "purple": (140, 60, 190),
    "pink": (245, 150, 205),
    "cyan": (40, 200, 220),
    "brown": (130, 80, 40),
}
SEARCH_COLOURS: tuple[str, ...] = tuple(SEARCH_PALETTE)
assert SEARCH_COLOURS == SEARCH_COLOUR_NAMES  # the names the config checks against
# Each colour's look-alike, the next one round the hue circle (brown: a dark orange): the object a
# `search_detour: lookalike` path visits before the target.
LOOKALIKE: dict[str, str] = {
    "red": "orange", "orange": "yellow", "yellow": "green", "green": "cyan", "cyan": "blue",
    "blue": "purple", "purple": "pink", "pink": "red", "brown": "orange",
}  # fmt: skip


SEARCH_QUESTIONS: tuple[str, ...] = ("shape", "below")


@dataclass(frozen=True)
class SearchScene:
    """The objects of one picture (target first) and the search path of its label.

    `shapes` carry the kind (question "shape"); `pairs` the second colour of each striped tile
    (question "below"), or None.
    """

    shapes: list[Shape]
    path: list[int]  # indices into `shapes` of the distractors the path names before the target
    pairs: list[str] | None = None

    def attribute(self, i: int) -> str:
        """What the question asks about object i: its kind, or its tile's second colour."""
        return self.pairs[i] if self.pairs is not None else self.shapes[i].kind


def search_scene(
    rng: np.random.Generator,
    num_distractors: int,
    max_path: int,
    question: str = "shape",
    detour_rate: float | None = None,
    detour: str = "random",
    target_colours: tuple[str, ...] | list[str] = (),
) -> SearchScene:
    """Target first, then distractors, every (first) colour distinct; attributes drawn independently.

    shape: kinds uniform over KINDS. below: each object is a striped tile whose second colour is
    uniform over the other palette colours (it may be another object's first colour). The path
    visits a number of distractors uniform over 0..`max_path`, or with `detour_rate` p each of
    the `max_path` visits is made with probability p; random ones, or with `detour: lookalike`
    the target's look-alike first when it is in the picture. With `target_colours`, the target's
    colour is the first of the drawn order that is one of them (no extra draw: without it the scene
    is the same).
    """
    count = num_distractors + 1
    order = rng.permutation(len(SEARCH_COLOURS))
    if target_colours:
        pick = next(i for i, c in enumerate(order) if SEARCH_COLOURS[int(c)] in target_colours)
        order[[0, pick]] = order[[pick, 0]]
    colours = order[:count]
    kinds = rng.integers(0, len(KINDS), size=count)
    digits = rng.integers(0, 10, size=count)
    pairs = None
    if question == "below":
        kinds = np.zeros(count, dtype=int)  # tiles are squares
        offsets = rng.integers(1, len(SEARCH_COLOURS), size=count)  # never the tile's own colour
        pairs = [
            SEARCH_COLOURS[(int(c) + int(o)) % len(SEARCH_COLOURS)]
            for c, o in zip(colours, offsets, strict=True)
        ]
    shapes = [
        Shape(KINDS[int(k)], SEARCH_COLOURS[int(c)], int(d))
        for c, k, d in zip(colours, kinds, digits, strict=True)
    ]
    most = min(max_path, num_distractors)
    visits = int(rng.integers(0, most + 1)) if detour_rate is None else int(rng.binomial(most, detour_rate))
    path = [int(i) + 1 for i in rng.permutation(num_distractors)[:visits]]
    if detour == "lookalike":
        first = [i for i in range(1, count) if shapes[i].colour == LOOKALIKE[shapes[0].colour]]
        path = (first + [i for i in path if i not in first])[:visits]
    return SearchScene(shapes, path, pairs)


def path_label(scene: SearchScene, with_target: bool = False) -> str:
    """The label, e.g. "blue circle, green square": the visited distractors, each by its colour and
    the attribute read off it; with `with_target` the target follows ("…, red triangle")."""
    steps = [f"{scene.shapes[i].colour} {scene.attribute(i)}" for i in scene.path]
    if with_target:
        steps.append(f"{scene.shapes[0].colour} {scene.attribute(0)}")
    return ", ".join(steps)


def asked_object(question: str) -> str:
    """The object a search question asks about: its last word ("What colour is below red?" / "What
    shape is red?")."""
    return question.rstrip("?").split(" ")[-1]


def direct_label(label: str, question: str) -> str:
    """A search label without its detours: the step that names the asked object (`asked_object`),
    or "" if the path has none."""
    asked = asked_object(question)
    return next((step for step in label.split(", ") if step.split(" ")[0] == asked), "")


def names_asked_first(question: str, completion: str) -> bool | None:
    """Whether a response's reasoning (between the think tags) first names the object the question
    asks about (`asked_object`): the search task's looking behaviour,
    read off the text. None when the response has no reasoning to read."""
    start, end = completion.find("<think>"), completion.find("</think>")
    if start < 0 or end < start:
        return None
    steps = completion[start + len("<think>") : end].strip(" .").split(",")
    words = steps[0].split()
    if not words:
        return None
    return words[0] == asked_object(question)


TOKEN_PX = 28  # side of one visual token of Qwen2.5-VL (14 px patches, 2×2 merge)


def token_layout(
    shapes: list[Shape], size: tuple[int, int], object_tokens: int, rng: np.random.Generator
) -> list[Shape]:
    """Place shapes of side `object_tokens` × 28 px on the visual-token grid, none overlapping.

    The image is cut into slots of `object_tokens + 1` tokens (so objects never touch); each shape
    takes a distinct random slot and a random token-aligned offset inside it.
    """
    slot = object_tokens + 1
    cols, rows = size[0] // TOKEN_PX // slot, size[1] // TOKEN_PX // slot
    if cols * rows < len(shapes):
        raise ValueError(
            f"{len(shapes)} objects of {object_tokens} tokens do not fit a {size[0]}x{size[1]} image "
            f"({cols * rows} slots of {slot}x{slot} tokens)"
        )
    side = object_tokens * TOKEN_PX
    placed = []
    for shape, cell in zip(shapes, rng.permutation(cols * rows)[: len(shapes)], strict=True):
        row, col = divmod(int(cell), cols)
        dx, dy = (int(v) for v in rng.integers(0, 2, size=2))
        x, y = (col * slot + dx) * TOKEN_PX, (row * slot + dy) * TOKEN_PX
        placed.append(Shape(shape.kind, shape.colour, shape.digit, x, y, side))
    return placed


def draw_tile(canvas: Canvas, shape: Shape, first: RGB, second: RGB, tag: str | None) -> None:
    """A square of horizontal stripes, `first` on top: 14 px stripes (one patch row each) when the
    side is a multiple of 28 px, else four equal stripes."""
    stripe = 14 if shape.size % 28 == 0 else max(1, shape.size // 4)
    for k, top in enumerate(range(shape.y, shape.y + shape.size, stripe)):
        bottom = min(top + stripe, shape.y + shape.size) - 1
        canvas.rectangle((shape.x, top, shape.x + shape.size - 1, bottom), second if k % 2 else first, tag)


def render_search(
    scene: SearchScene, config: SyntheticConfig, rng: np.random.Generator
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Draw the laid-out objects (no digits); returns the image and the target's tight box."""
    params = config.params
    canvas = Canvas(config.image_size, background(params.background_jitter, rng))
    for i, shape in enumerate(scene.shapes):
        fill = jitter(SEARCH_PALETTE[shape.colour], params.colour_jitter, rng)
        tag = "target" if i == 0 else None
        if scene.pairs is not None:
            draw_tile(
                canvas, shape, fill, jitter(SEARCH_PALETTE[scene.pairs[i]], params.colour_jitter, rng), tag
            )
        else:
            draw_shape(canvas, shape, fill, tag, digit=False)
    return canvas.finish(params.noise_std, rng), canvas.bbox("target")


def search_task(rng: np.random.Generator, config: SyntheticConfig) -> tuple[Draft, Image.Image]:
    """A "What shape is <colour>?" question about one of `num_distractors + 1` distinct-colour objects."""
    scene = search_scene(
        rng, config.num_distractors, config.search_path, config.search_question,
        config.search_detour_rate, config.search_detour, config.search_target_colours,
    )  # fmt: skip
    if config.object_tokens:
        shapes = token_layout(scene.shapes, config.image_size, config.object_tokens, rng)
    else:
        scale = config.object_scale if config.object_scale is not None else config.params.object_scale
        shapes = layout(scene.shapes, config.image_size, scale, rng)
    scene = SearchScene(shapes, scene.path, scene.pairs)
    image, box = render_search(scene, config, rng)
    colour = shapes[0].colour
    label = path_label(scene, config.search_path_target)
    if config.search_question == "below":
        question = f"What colour is below {colour}?"
    else:
        question = f"What shape is {colour}?"
    region = Region(bbox=box, label=label)
    direct = direct_label(label, question)
    said = misread(scene, config, rng)
    if said is not None:  # the path carries the look-alike's second colour over to the target
        label = _replace_last(label, f"{colour} {scene.attribute(0)}", f"{colour} {said}")
    draft = Draft(
        question, scene.attribute(0), AnswerType.EXACT, [region], reasoning=label, direct_reasoning=direct,
        demonstrated_answer=said,
    )  # fmt: skip
    return draft, image


def misread(scene: SearchScene, config: SyntheticConfig, rng: np.random.Generator) -> str | None:
    """The colour a misreading demonstration names (the look-alike tile's second colour), or None.

    A misread is a search error: a path that visits the look-alike first carries its second colour
    over to the target. A sample can misread when the question is "below", its asked colour is one
    of `search_misread_colours` (all when empty) and its path visits the look-alike, whose second
    colour is not the target's; it then does with probability `search_misread_rate`. Its
    `direct_reasoning` (no detour) stays right. The draw comes after the picture's, so the images
    are those of rate 0.
    """
    if config.search_misread_rate <= 0 or scene.pairs is None:
        return None
    draw = rng.random()  # drawn for every sample of a misreading dataset: one draw each, same order
    target = scene.shapes[0].colour
    if config.search_misread_colours and target not in config.search_misread_colours:
        return None
    lookalike = next((i for i, s in enumerate(scene.shapes) if s.colour == LOOKALIKE[target]), None)
    if lookalike is None or lookalike not in scene.path or scene.pairs[lookalike] == scene.pairs[0]:
        return None
    if draw >= config.search_misread_rate:
        return None
    return scene.pairs[lookalike]


def _replace_last(text: str, old: str, new: str) -> str:
    head, found, tail = text.rpartition(old)
    return head + new + tail if found else text
