"""Drawing primitives shared by the synthetic tasks, with boxes measured from drawn pixels.

Why masks: a region's box must be tight around what was actually drawn (a triangle's corners,
a label's glyphs), whatever the image size. Every primitive can be *tagged*; tagged primitives are
also painted into a per-tag mask, and `Canvas.bbox(tag)` is the mask's pixel extent, so boxes are
exact by construction instead of being re-derived from layout arithmetic.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sayo.data.schema import AnswerType, Region

RGB = tuple[int, int, int]

# Four well-separated colours: the whole colour vocabulary of the questions and answers.
PALETTE: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 30),
}
BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)


@dataclass(frozen=True)
class Draft:
    """What a task generator decides about one sample; `dataset.py` adds id, image and source."""

    question: str
    answer: str
    answer_type: AnswerType
    regions: list[Region]
    choices: list[str] | None = None
    reasoning: str | None = None  # what an SFT target states before the answer (`Sample.reasoning`)
    direct_reasoning: str | None = None  # the same without detours (`Sample.direct_reasoning`)
    demonstrated_answer: str | None = None  # a misread's answer (`Sample.demonstrated_answer`)


def sample_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """A generator private to one (seed, task, index): no global random state, order-independent."""
    digest = hashlib.sha256(f"sayo-synthetic/{seed}/{task}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@functools.lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font at `size` px (no font files, works offline)."""
    return ImageFont.load_default(size=max(6, int(size)))


def jitter(colour: RGB, amount: int, rng: np.random.Generator) -> RGB:
    """`colour` shifted by up to ±`amount` per channel (harder levels: colours look more alike)."""
    if amount <= 0:
        return colour
    shift = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(c) for c in np.clip(np.array(colour) + shift, 0, 255))  # type: ignore[return-value]


def text_colour(fill: RGB) -> RGB:
    """Black or white, whichever reads better on `fill` (relative luminance threshold)."""
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return BLACK if luminance > 140 else WHITE


class Canvas:
    """An RGB image plus one mask per tag, so tagged objects yield tight boxes."""

    def __init__(self, size: tuple[int, int], background: RGB = WHITE) -> None:
        self.image = Image.new("RGB", size, background)
        self._draw = ImageDraw.Draw(self.image)
        self._masks: dict[str, Image.Image] = {}

    def _mask(self, tag: str) -> ImageDraw.ImageDraw:
        if tag not in self._masks:
            self._masks[tag] = Image.new("L", self.image.size, 0)
        return ImageDraw.Draw(self._masks[tag])

    def rectangle(self, box: Sequence[float], fill: RGB, tag: str | None = None) -> None:
        """Filled rectangle over the inclusive pixel box [x1, y1, x2, y2]."""
        self._draw.rectangle(list(box), fill=fill)
        if tag:
            self._mask(tag).rectangle(list(box), fill=255)

    def ellipse(self, box: Sequence[float], fill: RGB, tag: str | None = None) -> None:
        """Filled ellipse inscribed in the inclusive pixel box."""
        self._draw.ellipse(list(box), fill=fill)
        if tag:
            self._mask(tag).ellipse(list(box), fill=255)

    def polygon(self, points: Sequence[tuple[float, float]], fill: RGB, tag: str | None = None) -> None:
        """Filled polygon through `points`."""
        self._draw.polygon(list(points), fill=fill)
        if tag:
            self._mask(tag).polygon(list(points), fill=255)

    def line(self, points: Sequence[tuple[float, float]], fill: RGB, width: int = 1) -> None:
        """Untagged polyline (axes, ticks, gridlines)."""
        self._draw.line(list(points), fill=fill, width=width)

    def text(
        self, xy: tuple[float, float], text: str, size: int, fill: RGB, anchor: str, tag: str | None = None
    ) -> None:
        """`text` at `xy` with Pillow's `anchor` (e.g. "mm" = centred), `size` px high."""
        self._draw.text(xy, text, font=font(size), fill=fill, anchor=anchor)
        if tag:
            self._mask(tag).text(xy, text, font=font(size), fill=255, anchor=anchor)

    def bbox(self, tag: str) -> tuple[float, float, float, float]:
        """Tight [x1, y1, x2, y2) box of everything drawn under `tag`, in pixel-edge coordinates."""
        mask = np.asarray(self._masks[tag]) > 0  # [H, W]
        ys, xs = np.nonzero(mask)
        if xs.size == 0:
            raise ValueError(f"nothing tagged {tag!r} is visible in the {self.image.size} image")
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

    def finish(self, noise_std: float, rng: np.random.Generator) -> Image.Image:
        """The image with Gaussian pixel noise of `noise_std` (none if 0); boxes are unaffected."""
        if noise_std <= 0:
            return self.image.copy()
        pixels = np.asarray(self.image, dtype=np.float32)  # [H, W, 3]
        noisy = pixels + rng.normal(0.0, noise_std, size=pixels.shape)
        return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def background(amount: int, rng: np.random.Generator) -> RGB:
    """A white or slightly grey background (grey up to `amount` below white)."""
    grey = 255 - int(rng.integers(0, amount + 1)) if amount > 0 else 255
    return (grey, grey, grey)
