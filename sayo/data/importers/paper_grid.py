"""The authors' `focus_area` token ranges, and their inverse: ranges → a box in the stored image's pixels.

The authors' two writers (docs/data.md, "The authors' parquet") store a box as token ranges on a
28-px grid: row r of the box's rows is the range (r·cols + c1, r·cols + c2), c1/c2 its first/last
column, where a pixel coordinate v lands in cell floor(v·s / 28) for a per-axis scale s.

- `pre_processor` keeps the original W×H image and takes the grid of InternVL's dynamic tiling:
  (i, j) tiles of 448 px chosen by aspect ratio (`tile_counts`), cols = 16·i, rows = 16·j, and
  s = (i, j), the tile *counts*. A column c therefore covers original x in [28c/i, 28(c+1)/i):
  only x < 448 lands inside a token row; a box reaching further has c ≥ cols and its range runs
  into the next row (wraps), and y ≥ 448 points past the grid.
- `multiple_processor` stores the image resized to 448×448 and scales clamped coordinates by
  448/W, 448/H: a 16×16 grid in the stored image's pixels (s = 1).

The inverse maps each range back to its cells and the cells to the pixels that the writer's own
forward mapping sends there; so a decoded box contains the annotated one and exceeds it by less
than one cell per side (28/i px for `pre_processor`, 28 px of the stored 448-px image for
`multiple_processor`). Ranges that cannot be inverted uniquely are reported, never mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TILE = 448  # InternVL tile side, px
CELL = 28  # token cell side on the authors' grid, px
MAX_TILES = 12  # dynamic_preprocess(max_num=12), as both writers call it
WRITERS = ("pre_processor", "multiple_processor")


def tile_counts(width: int, height: int, max_tiles: int = MAX_TILES) -> tuple[int, int]:
    """(i, j) tiles across and down that InternVL's dynamic tiling picks for a width×height image.

    The closest aspect ratio i/j among 1 ≤ i·j ≤ max_tiles, candidates taken by increasing i·j;
    on a tie the later candidate wins when the image has more than half its pixel area.
    """
    aspect = width / height
    candidates = sorted(
        {
            (i, j)
            for n in range(1, max_tiles + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= n
        },
        key=lambda ij: ij[0] * ij[1],
    )
    best, best_diff = (1, 1), float("inf")
    for i, j in candidates:
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * TILE * TILE * i * j:
            best = (i, j)
    return best


@dataclass(frozen=True)
class WriterGrid:
    """The grid one writer put a row's ranges on, in the pixels of the image it stored."""

    writer: str
    cols: int
    rows: int
    scale: tuple[float, float]  # grid px per stored-image px, per axis
    size: tuple[int, int]  # the stored image (width, height)

    @property
    def tiles(self) -> tuple[int, int]:
        """(i, j): the tile counts (pre_processor) or (1, 1)."""
        return self.cols * CELL // TILE, self.rows * CELL // TILE


def writer_grid(writer: str, width: int, height: int) -> WriterGrid | str:
    """The grid of `writer` for a stored image of width×height, or why that image cannot be its."""
    if writer == "multiple_processor":
        if (width, height) != (TILE, TILE):
            return f"multiple_processor stores 448x448 images; this one is {width}x{height}"
        return WriterGrid(writer, TILE // CELL, TILE // CELL, (1.0, 1.0), (width, height))
    i, j = tile_counts(width, height)
    return WriterGrid(writer, TILE * i // CELL, TILE * j // CELL, (float(i), float(j)), (width, height))


def ranges_to_box(ranges: Any, grid: WriterGrid) -> list[float] | str:
    """The box [x1, y1, x2, y2] (stored-image px) whose cells `ranges` list, or why it has none.

    Refused: no ranges; a range that is not two integers 0 ≤ start ≤ end; one past the grid
    (index ≥ rows·cols); one that runs into the next token row (wraps); rows that are not
    consecutive or columns that differ between rows (not one box); and, for `pre_processor`,
    ranges that a box further right could also have produced by wrapping (ambiguous).
    """
    if not isinstance(ranges, list) or not ranges:
        return "no focus_area ranges"
    cells = []
    for k, pair in enumerate(ranges):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
        ):
            return f"range {k} {pair!r} is not two integers"
        start, end = pair
        if start < 0 or end < start:
            return f"range {k} {list(pair)} is not 0 <= start <= end"
        if end >= grid.rows * grid.cols:
            return f"range {k} {list(pair)} points past the {grid.rows}x{grid.cols} token grid"
        if start // grid.cols != end // grid.cols:
            return f"range {k} {list(pair)} wraps into the next row of the {grid.cols}-column grid"
        cells.append((start // grid.cols, start % grid.cols, end % grid.cols))
    row0, col1, col2 = cells[0]
    if cells != [(row0 + k, col1, col2) for k in range(len(cells))]:
        return f"ranges {ranges} are not one box (consecutive rows, the same columns)"
    if grid.writer == "pre_processor" and row0 > 0 and _could_wrap(col2, grid):
        return f"ranges {ranges} are ambiguous: a box further right would wrap to the same ranges"
    sx, sy = grid.scale
    width, height = grid.size
    box = [CELL * col1 / sx, CELL * row0 / sy, CELL * (col2 + 1) / sx, CELL * (cells[-1][0] + 1) / sy]
    return [box[0], box[1], min(box[2], float(width)), min(box[3], float(height))]


def _could_wrap(col2: int, grid: WriterGrid) -> bool:
    """Could a box one grid width further right (columns + cols) have written the same ranges?

    Its right edge would lie in column col2 + cols, which starts at x = 28·(col2 + cols)/i px; a
    box lies inside the image and the writer clamps x to 448·i − 1, so such a box exists when
    that x is within both bounds.
    """
    i = grid.scale[0]
    return CELL * (col2 + grid.cols) / i <= min(float(grid.size[0]), TILE * i - 1)
