"""Pictures of regions and attention: what the `evaluate` report shows to a human.

Why: SAYO's claim is about *where* the model looks (docs/method.md, "Findings to reproduce" 4), so the report
overlays the visual-token attention on the image next to the annotated region. The attention grid
is the merged visual-token grid (one cell per 28×28 px of the processor-resized image for
Qwen2/2.5-VL, 32×32 px for Qwen3-VL); the resized image covers the whole original image, so the
grid is simply stretched to the original size. Pure PIL + numpy, with matplotlib used only for its colormaps (no pyplot, no display).
Heat is blended with an opacity that grows with attention, so unattended parts of the image stay
visible and the hot cells stand out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from sayo.atomic import write_with

Box = Sequence[float]
REGION_COLOUR = (255, 0, 255)
MIN_OPACITY = 0.25  # fraction of `alpha` applied to the coldest cells


@runtime_checkable
class LabelledBox(Protocol):
    """A labelled box, as `sayo.data.schema.Region` is one: taken by its shape, so that drawing sits
    below the data package that draws its previews with it (docs/architecture.md, "Layers")."""

    @property
    def bbox(self) -> tuple[float, float, float, float]: ...

    @property
    def label(self) -> str: ...


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _boxes(regions: Sequence[LabelledBox | Box] | None) -> list[tuple[tuple[float, ...], str]]:
    out = []
    for region in regions or []:
        if isinstance(region, LabelledBox):
            out.append((tuple(region.bbox), region.label))
        else:
            out.append((tuple(float(v) for v in region), ""))
    return out


def draw_regions(
    image: Image.Image, regions: Sequence[LabelledBox | Box], labels: bool = True
) -> Image.Image:
    """A copy of `image` (as RGB) with each region's box outlined and, optionally, its label.

    Args:
        image: any PIL image; left unchanged.
        regions: `Region`s (any `LabelledBox`) or [x1, y1, x2, y2] boxes in the image's pixels.
        labels: write each `Region.label` above its box.
    """
    out = image.convert("RGB")  # convert always copies
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 150))
    font = _font(round(min(out.size) / 16))
    for (x1, y1, x2, y2), label in _boxes(regions):
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=REGION_COLOUR, width=width)
        if labels and label:
            left, top, right, bottom = draw.textbbox((x1, y1), label, font=font, anchor="lb")
            if top < 0:  # no room above the box: write the label just inside it
                top, bottom = y1, y1 + (bottom - top)
            draw.rectangle([left, top, right, bottom], fill=REGION_COLOUR)
            draw.text((left, bottom), label, font=font, fill=(255, 255, 255), anchor="lb")
    return out


def _as_grid(attention: Any) -> np.ndarray:
    if hasattr(attention, "detach"):  # a torch tensor; torch itself is not imported here
        attention = attention.detach().float().cpu().numpy()
    grid = np.asarray(attention, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"attention must be a non-empty [grid_h, grid_w] array, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("attention contains NaN or infinite values")
    return grid


def _normalise(grid: np.ndarray) -> np.ndarray:
    low, high = float(grid.min()), float(grid.max())
    return np.zeros_like(grid) if high <= low else (grid - low) / (high - low)


def attention_heatmap(
    image: Image.Image,
    attention: Any,
    regions: Sequence[LabelledBox | Box] | None = None,
    alpha: float = 0.5,
    title: str | None = None,
    cmap: str = "jet",
    smooth: bool = False,
) -> Image.Image:
    """The image with the attention grid as a colour overlay, region boxes on top.

    Args:
        image: the original image (any size; the grid is stretched over all of it).
        attention: [grid_h, grid_w] array or tensor over the merged visual tokens, row-major;
            min-max normalised, so raw probabilities or shares both work.
        regions: boxes in original-image pixels to outline.
        alpha: opacity of the hottest cell (the coldest gets `MIN_OPACITY * alpha`).
        title: if given, a white title bar is added above the picture.
        cmap: a matplotlib colormap name ("jet", "inferno", ...).
        smooth: bilinear instead of nearest upsampling (nearest shows the token cells).
    Returns:
        RGB image of the original size, plus the title bar's height if `title` is given.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image.convert("RGB")
    heat = Image.fromarray(_normalise(_as_grid(attention)).astype(np.float32))  # mode "F"
    heat = heat.resize(base.size, Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST)
    level = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)  # [H, W]
    colour = colormaps[cmap](level)[..., :3] * 255.0  # [H, W, 3]
    opacity = (alpha * (MIN_OPACITY + (1.0 - MIN_OPACITY) * level))[..., None]  # [H, W, 1]
    blended = (1.0 - opacity) * np.asarray(base, dtype=np.float64) + opacity * colour
    out = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    if regions:
        out = draw_regions(out, regions, labels=True)
    return _with_title(out, title) if title else out


def _with_title(image: Image.Image, title: str) -> Image.Image:
    size = round(max(12, min(image.width / 24, 28)))
    bar = round(size * 1.6)
    font = _font(size)
    out = Image.new("RGB", (image.width, image.height + bar), (255, 255, 255))
    out.paste(image, (0, bar))
    ImageDraw.Draw(out).text((4, bar / 2), title, font=font, fill=(0, 0, 0), anchor="lm")
    return out


def heatmap_grid(
    items: Sequence[tuple[Image.Image, Any, Sequence[LabelledBox | Box] | None, str]],
    columns: int = 4,
    tile_width: int = 256,
    padding: int = 4,
) -> Image.Image:
    """A gallery of `attention_heatmap`s (e.g. base vs trained), `columns` per row.

    Args:
        items: (image, attention, regions, caption) per tile; the caption becomes the tile title.
        columns: tiles per row.
        tile_width: every tile is scaled to this width (keeping its aspect ratio).
        padding: white pixels between tiles.
    """
    if not items:
        raise ValueError("heatmap_grid needs at least one item")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    tiles = []
    for image, attention, regions, caption in items:
        tile = attention_heatmap(image, attention, regions, title=caption or None)
        height = max(1, round(tile.height * tile_width / tile.width))
        tiles.append(tile.resize((tile_width, height), Image.Resampling.BILINEAR))
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    cell_h = max(tile.height for tile in tiles)
    size = (cols * tile_width + (cols + 1) * padding, rows * cell_h + (rows + 1) * padding)
    out = Image.new("RGB", size, (255, 255, 255))
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        out.paste(tile, (padding + col * (tile_width + padding), padding + row * (cell_h + padding)))
    return out


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write `image` as PNG atomically (temp file in the same directory, then rename)."""
    return write_with(path, lambda stream: image.save(stream, format="PNG"), binary=True)
