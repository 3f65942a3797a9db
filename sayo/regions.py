"""Map annotated image regions (pixel boxes) to the Qwen-VL visual tokens that cover them.

Why: SAYO's attention reward (docs/method.md, "The attention reward") is the share of a response
token's visual attention that lands on the region tokens R ⊂ I. R is built here, from boxes in
original image pixels, at data-construction time (docs/method.md, "Data and regions" [paper]).

How the model sees an image (docs/method.md, "Data and regions" [ours, Qwen2.5-VL and Qwen3-VL families]): the
processor stretches it with `smart_resize` to sides that are multiples of the cell size p·m (patch
p = 14 px for Qwen2/2.5-VL, 16 px for Qwen3-VL; spatial merge m = 2 for both: 28- or 32-px cells),
cuts p-px patches and emits them merge window by merge window (`patchify` orders the axes
(h/m, w/m, m, m)); the vision tower's patch merger folds each m² consecutive patches into one
LLM token (Qwen2.5-VL's window attention is undone by `reverse_indices` before that; Qwen3-VL's
DeepStack mergers fold the same windows). So token k of an image is cell (k // cols, k % cols) of a
rows × cols grid, with (t, h, w) = `image_grid_thw`, rows = h/m, cols = w/m. Since the resize
stretches each axis uniformly, a cell measures W/cols × H/rows *original* pixels: neither the patch
size nor the resized size is needed, only m — which the token count of a processed batch fixes
(t·h·w / m² tokens per image, `batch_merge_size`), and `VisionGeometry` reads from a processor.

Overlap rule [ours] (docs/method.md: a box "marks every cell it overlaps"):
- a cell counts when the box covers a positive area of it; touching only its edge does not;
- with `min_coverage = c` in [0, 1), a cell counts only when the box covers more than the
  fraction c of the cell's area (c = 0 is the plain overlap rule);
- box edges within 1e-9 of a cell (in cell units) of a grid line are snapped onto it, so float
  noise cannot turn an edge contact into an overlap; a box thinner than that still marks the cell
  holding its centre, so with c = 0 every valid box marks at least one cell per temporal slice.
Grids with t > 1 (video-like) repeat the marked cells in every temporal slice.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

Box = Sequence[float]
GridTHW = Sequence[int] | torch.Tensor

_SNAP = 1e-9  # cell units: edges this close to a grid line sit on it
_BBOX_TOL = 1e-6  # pixels: how far a box may poke outside the image before it is rejected


def _grid(grid_thw: GridTHW, merge_size: int) -> tuple[int, int, int]:
    """Validate `grid_thw` and return (t, merged rows, merged cols)."""
    values = grid_thw.tolist() if isinstance(grid_thw, torch.Tensor) else list(grid_thw)
    try:
        t, h, w = (operator.index(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"grid_thw must be three integers (t, h, w), got {values}") from None
    if min(t, h, w) <= 0:
        raise ValueError(f"grid_thw must be positive, got {(t, h, w)}")
    if merge_size <= 0:
        raise ValueError(f"merge_size must be positive, got {merge_size}")
    if h % merge_size or w % merge_size:
        raise ValueError(f"grid_thw {(t, h, w)}: h and w must be divisible by merge_size={merge_size}")
    return t, h // merge_size, w // merge_size


def _image_size(image_size: Sequence[float]) -> tuple[float, float]:
    """Validate `image_size = (width, height)` and return it as floats."""
    size = tuple(float(v) for v in image_size)
    if len(size) != 2 or not all(math.isfinite(v) and v > 0 for v in size):
        raise ValueError(f"image_size must be (width, height) > 0, got {tuple(image_size)}")
    return size[0], size[1]


def _bbox(bbox: Box, width: float, height: float) -> tuple[float, float, float, float]:
    """Validate `bbox = (x1, y1, x2, y2)` against the image; return it clipped to the image."""
    box = tuple(float(v) for v in bbox)
    if len(box) != 4:
        raise ValueError(f"bbox must have 4 values (x1, y1, x2, y2), got {tuple(bbox)}")
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"bbox {box} has a NaN or infinite coordinate")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"bbox {box} is empty or inverted: needs x2 > x1 and y2 > y1")
    if min(x1, y1) < -_BBOX_TOL or x2 > width + _BBOX_TOL or y2 > height + _BBOX_TOL:
        raise ValueError(f"bbox {box} lies outside the image of size (width, height)={(width, height)}")
    return max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)


def _snap(u: float) -> float:
    nearest = round(u)
    return float(nearest) if abs(u - nearest) < _SNAP else u


def _axis_cells(lo: float, hi: float, n_cells: int, extent: float) -> list[tuple[int, float]]:
    """Cells along one axis that [lo, hi] overlaps, each with the covered fraction of its length."""
    u1, u2 = _snap(lo * n_cells / extent), _snap(hi * n_cells / extent)
    if u2 <= u1:  # thinner than the snapping tolerance: keep the cell that holds the centre
        centre = min(max(math.floor((u1 + u2) / 2), 0), n_cells - 1)
        return [(centre, 0.0)]
    first, last = max(math.floor(u1), 0), min(math.ceil(u2) - 1, n_cells - 1)
    return [(i, min(u2, i + 1) - max(u1, i)) for i in range(first, last + 1)]


def _check_min_coverage(min_coverage: float) -> None:
    if not 0.0 <= min_coverage < 1.0:
        raise ValueError(f"min_coverage must be in [0, 1), got {min_coverage}")


def token_grid_shape(grid_thw: GridTHW, merge_size: int = 2) -> tuple[int, int]:
    """Merged-token grid (rows, cols) of one image: (h / merge_size, w / merge_size)."""
    _, rows, cols = _grid(grid_thw, merge_size)
    return rows, cols


def num_image_tokens(grid_thw: GridTHW, merge_size: int = 2) -> int:
    """Number of LLM tokens of one image: t·h·w / merge_size²."""
    t, rows, cols = _grid(grid_thw, merge_size)
    return t * rows * cols


def bbox_to_token_indices(
    bbox: Box,
    image_size: Sequence[float],
    grid_thw: GridTHW,
    merge_size: int = 2,
    *,
    min_coverage: float = 0.0,
) -> list[int]:
    """Row-major indices of the merged visual tokens that a pixel box overlaps.

    Args:
        bbox: (x1, y1, x2, y2) in original image pixels.
        image_size: (width, height) of the original image.
        grid_thw: (t, h, w) in patches, one row of the processor's `image_grid_thw`.
        merge_size: spatial merge of the vision tower (2 for Qwen2-VL, Qwen2.5-VL and Qwen3-VL).
        min_coverage: a cell counts only if the box covers more than this fraction of its area.
    Returns:
        Sorted token indices in [0, t·h·w / merge_size²); slice s is offset by s·rows·cols.
    Raises:
        ValueError: on a bad box, image size, grid or min_coverage, naming the value.
    """
    t, rows, cols = _grid(grid_thw, merge_size)
    width, height = _image_size(image_size)
    x1, y1, x2, y2 = _bbox(bbox, width, height)
    _check_min_coverage(min_coverage)
    col_cells = _axis_cells(x1, x2, cols, width)
    row_cells = _axis_cells(y1, y2, rows, height)
    local = [
        r * cols + c
        for r, fy in row_cells
        for c, fx in col_cells
        if min_coverage == 0.0 or fx * fy > min_coverage
    ]
    return [s * rows * cols + i for s in range(t) for i in local]


def token_index_to_bbox(
    index: int, image_size: Sequence[float], grid_thw: GridTHW, merge_size: int = 2
) -> tuple[float, float, float, float]:
    """Pixel box (x1, y1, x2, y2), in original image coordinates, of one merged visual token."""
    t, rows, cols = _grid(grid_thw, merge_size)
    width, height = _image_size(image_size)
    index = operator.index(index)
    if not 0 <= index < t * rows * cols:
        raise ValueError(
            f"token index {index} is out of range [0, {t * rows * cols}) for grid {(t, rows, cols)}"
        )
    row, col = divmod(index % (rows * cols), cols)
    cell_w, cell_h = width / cols, height / rows
    return col * cell_w, row * cell_h, (col + 1) * cell_w, (row + 1) * cell_h


def region_token_mask(
    bboxes: Sequence[Box],
    image_size: Sequence[float],
    grid_thw: GridTHW,
    merge_size: int = 2,
    min_coverage: float = 0.0,
) -> torch.Tensor:
    """Boolean mask [t·h·w / merge_size²] of the tokens of one image that any of `bboxes` marks.

    An empty `bboxes` gives an all-False mask (an image without an annotated region).
    """
    mask = torch.zeros(num_image_tokens(grid_thw, merge_size), dtype=torch.bool)  # [N_img_tokens]
    for bbox in bboxes:
        idx = bbox_to_token_indices(bbox, image_size, grid_thw, merge_size, min_coverage=min_coverage)
        mask[idx] = True
    return mask


def _grid_rows(image_grid_thw: torch.Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    rows = image_grid_thw.tolist() if isinstance(image_grid_thw, torch.Tensor) else list(image_grid_thw)
    return [list(r) for r in rows]


def _check_run(positions: torch.Tensor, image: int, seq_len: int) -> None:
    """One image's tokens must be a single contiguous run inside one sequence."""
    first, last = int(positions[0]), int(positions[-1])
    if last - first != positions.numel() - 1 or first // seq_len != last // seq_len:
        raise ValueError(
            f"image {image}: its {positions.numel()} tokens are not one contiguous run in one sequence "
            f"(flat positions {first}..{last}); the image-token runs do not match image_grid_thw"
        )


def _image_token_positions(image_mask: torch.Tensor, counts: list[int], image_token_id: int) -> torch.Tensor:
    """Flat (row-major) positions of the image tokens; their number must equal sum(counts)."""
    flat_pos = image_mask.reshape(-1).nonzero().squeeze(1)  # [N_tokens_found]
    if flat_pos.numel() != sum(counts):
        raise ValueError(
            f"expected {sum(counts)} image tokens (per image {counts}), "
            f"found {flat_pos.numel()} tokens equal to image_token_id={image_token_id}"
        )
    return flat_pos


def sequence_region_mask(
    input_ids: torch.Tensor,
    image_token_id: int,
    image_grid_thw: torch.Tensor | Sequence[Sequence[int]],
    regions_per_image: Sequence[Sequence[Box]],
    image_sizes: Sequence[Sequence[float]],
    merge_size: int = 2,
    min_coverage: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-token and region-token masks at their positions in a (batch of) token sequence(s).

    Images are matched to runs of `image_token_id` in reading order: row by row, left to right,
    as the HF processor concatenates `image_grid_thw` and the model scatters image features.

    Args:
        input_ids: [S] or [B, S] token ids.
        image_token_id: id of the image placeholder token (`<|image_pad|>` for Qwen2.5-VL).
        image_grid_thw: [N_images, 3], all images of the batch in order of appearance.
        regions_per_image: N_images lists of boxes (original pixels), one list per image.
        image_sizes: N_images original (width, height).
        merge_size, min_coverage: as in `bbox_to_token_indices`.
    Returns:
        (image_mask, region_mask), bool, shaped like `input_ids`; region_mask ⊆ image_mask.
    Raises:
        ValueError: when the lists disagree in length or the image-token count does not match.
    """
    grids = _grid_rows(image_grid_thw)
    if input_ids.dim() not in (1, 2):
        raise ValueError(f"input_ids must be [S] or [B, S], got shape {tuple(input_ids.shape)}")
    if not len(regions_per_image) == len(image_sizes) == len(grids):
        raise ValueError(
            f"image_grid_thw has {len(grids)} images but regions_per_image has {len(regions_per_image)} "
            f"and image_sizes {len(image_sizes)}"
        )
    counts = [num_image_tokens(g, merge_size) for g in grids]
    image_mask = input_ids == image_token_id  # [B, S] or [S]
    flat_pos = _image_token_positions(image_mask, counts, image_token_id)  # [sum(counts)]
    region_flat = torch.zeros(image_mask.numel(), dtype=torch.bool, device=input_ids.device)
    offset = 0
    for i, (grid, count) in enumerate(zip(grids, counts, strict=True)):
        positions = flat_pos[offset : offset + count]  # [count]
        _check_run(positions, i, input_ids.shape[-1])
        local = region_token_mask(regions_per_image[i], image_sizes[i], grid, merge_size, min_coverage)
        region_flat[positions[local.to(positions.device)]] = True
        offset += count
    return image_mask, region_flat.view_as(image_mask)


def resized_size(
    image_size: Sequence[int], min_pixels: int, max_pixels: int, factor: int = 28
) -> tuple[int, int]:
    """(width, height) the Qwen2-VL image processor resizes an image to (`smart_resize`, sides % factor
    == 0); factor = patch · merge: 28 for Qwen2/2.5-VL, 32 for Qwen3-VL (`VisionGeometry.cell`)."""
    width, height = (operator.index(v) for v in image_size)
    new_h, new_w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return new_w, new_h


def batch_merge_size(
    input_ids: torch.Tensor, image_token_id: int, image_grid_thw: torch.Tensor | Sequence[Sequence[int]]
) -> int:
    """The spatial merge m of a processed batch: its images hold Σ t·h·w patches and it has
    Σ t·h·w / m² image tokens, whatever the architecture.

    Raises:
        ValueError: when no integer m fits (the token runs do not match `image_grid_thw`).
    """
    grids = _grid_rows(image_grid_thw)
    patches = sum(math.prod(g) for g in grids)
    tokens = int((input_ids == image_token_id).sum())
    merge = math.isqrt(patches // tokens) if tokens else 0
    if not tokens or merge * merge * tokens != patches:
        raise ValueError(
            f"{tokens} tokens equal to image_token_id={image_token_id} for {len(grids)} images of {patches} "
            "patches: not patches / m² for any integer merge size m"
        )
    return merge


@dataclass(frozen=True)
class VisionGeometry:
    """How a processor cuts images: patch side, spatial merge and the `smart_resize` pixel bounds.

    patch_size: px per patch side (14 for Qwen2/2.5-VL, 16 for Qwen3-VL)
    merge_size: patches per merged-token side (2)
    min_pixels, max_pixels: the resize bounds (`size.shortest_edge` / `size.longest_edge`)
    """

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    @classmethod
    def of(cls, processor: Any) -> VisionGeometry:
        """Read from a processor or its image processor (Qwen2-VL image processor settings)."""
        image_processor = getattr(processor, "image_processor", processor)
        size = image_processor.size
        return cls(
            patch_size=int(image_processor.patch_size),
            merge_size=int(image_processor.merge_size),
            min_pixels=int(size["shortest_edge"]),
            max_pixels=int(size["longest_edge"]),
        )

    @property
    def cell(self) -> int:
        """Pixels per merged-token side of the resized image (the resize factor): patch · merge."""
        return self.patch_size * self.merge_size

    def grid_thw(self, image_size: Sequence[int]) -> tuple[int, int, int]:
        """(t, h, w) in patches that the processor gives a still image of (width, height) pixels."""
        width, height = resized_size(image_size, self.min_pixels, self.max_pixels, self.cell)
        return 1, height // self.patch_size, width // self.patch_size

    def num_tokens(self, image_size: Sequence[int]) -> int:
        """LLM tokens of a still image of (width, height) pixels."""
        return num_image_tokens(self.grid_thw(image_size), self.merge_size)
