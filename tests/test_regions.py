"""Tests for sayo.regions: box → visual-token mapping, checked against the real Qwen-VL image
processor with Qwen2.5-VL's (14-px patches) and Qwen3-VL's (16-px patches) settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from sayo.regions import (
    VisionGeometry,
    batch_merge_size,
    bbox_to_token_indices,
    num_image_tokens,
    region_token_mask,
    resized_size,
    sequence_region_mask,
    token_grid_shape,
    token_index_to_bbox,
)

MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 256
PROCESSOR = Qwen2VLImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
QWEN3_HALF = [0.5, 0.5, 0.5]  # Qwen3-VL normalises with mean = std = 0.5
PROCESSORS = {
    # the tiny Qwen2.5-VL's bounds: 4..256 cells of 28 px (small images are upscaled, large ones shrunk)
    "qwen2.5-vl": PROCESSOR,
    # the tiny Qwen3-VL's: 4..256 cells of 32 px
    "qwen3-vl": Qwen2VLImageProcessorPil(
        size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 256},
        patch_size=16,
        image_mean=QWEN3_HALF,
        image_std=QWEN3_HALF,
    ),
    # Qwen3-VL-8B's published settings: 256² to 4096² px
    "qwen3-vl-8b": Qwen2VLImageProcessorPil(
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        patch_size=16,
        image_mean=QWEN3_HALF,
        image_std=QWEN3_HALF,
    ),
}


def _process(image: Image.Image, processor=PROCESSOR) -> tuple[torch.Tensor, list[int]]:
    """Run the processor; return per-merged-token brightness in [0, 1] and the (t, h, w) grid."""
    out = processor(images=image, return_tensors="pt")
    grid = out["image_grid_thw"][0].tolist()
    p, m, t = processor.patch_size, processor.merge_size, processor.temporal_patch_size
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1, 1)
    patches = out["pixel_values"].view(-1, 3, t, p, p) * std + mean  # [N_patches, C, T, P, P]
    # the patch merger folds merge² consecutive patch rows into one LLM token
    brightness = patches.reshape(-1, m * m * 3 * t * p * p).mean(dim=1)  # [N_tokens]
    return brightness, grid


def _overlap_area(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[int, int, tuple[float, float, float, float]]:
    """An image size (aspect up to 1:8) and a box of at least 1 px per side inside it."""
    width = draw(st.integers(20, 1200))
    height = draw(st.integers(20, 1200))
    assume(max(width, height) / min(width, height) <= 8)
    x1 = draw(st.floats(0, width - 1))
    y1 = draw(st.floats(0, height - 1))
    x2 = draw(st.floats(x1 + 1, width))
    y2 = draw(st.floats(y1 + 1, height))
    return width, height, (x1, y1, x2, y2)


# ---------------------------------------------------------------- hand-computed cases
# A 60×40 image with grid (1, 4, 6): merged grid 2 rows × 3 cols, each cell 20×20 px.
IMG, GRID = (60, 40), (1, 4, 6)


@pytest.mark.parametrize(
    ("bbox", "min_coverage", "expected"),
    [
        ((0, 0, 60, 40), 0.0, [0, 1, 2, 3, 4, 5]),  # whole image → every token
        ((25, 5, 26, 6), 0.0, [1]),  # tiny box inside cell (0, 1)
        ((20, 0, 40, 20), 0.0, [1]),  # exactly one cell: its edges touch neighbours, no area
        ((0, 0, 20.5, 20.5), 0.0, [0, 1, 3, 4]),  # spills 0.5 px into three neighbours
        ((0, 0, 20.5, 20.5), 0.1, [0]),  # ...which cover far less than 10 % of them
        ((10, 10, 50, 30), 0.0, [0, 1, 2, 3, 4, 5]),  # centred box overlapping all six
        ((10, 10, 50, 30), 0.3, [1, 4]),  # centre column half covered; corners only a quarter
        ((10, 10, 50, 30), 0.5, []),  # strictly more than half: nothing qualifies
        ((40, 20, 60, 40), 0.0, [5]),  # bottom-right cell
        ((-1e-7, 0, 60 + 1e-7, 20), 0.0, [0, 1, 2]),  # float noise past the border is tolerated
        (
            (20, 25, 20 + 1e-12, 25 + 1e-12),
            0.0,
            [4],
        ),  # sliver on the line x=20 snaps to zero width: centre's cell
    ],
)
def test_bbox_to_token_indices_hand_computed(bbox, min_coverage, expected) -> None:
    assert bbox_to_token_indices(bbox, IMG, GRID, min_coverage=min_coverage) == expected


def test_temporal_slices_repeat_the_region() -> None:
    # t = 3: the bottom-right cell (local 5) appears in each slice of 6 tokens
    assert bbox_to_token_indices((40, 20, 60, 40), IMG, torch.tensor([3, 4, 6])) == [5, 11, 17]
    assert token_index_to_bbox(11, IMG, (3, 4, 6)) == (40.0, 20.0, 60.0, 40.0)


def test_cell_box_maps_back_to_its_cell_despite_float_noise() -> None:
    # 20 px over 12 cols: the cell edge 11·(20/12) = 18.333…36 scales back to 11.000…02 cells,
    # which without snapping would spill into cell 11
    box = token_index_to_bbox(10, (20, 20), (1, 24, 24))
    assert box[2] * 12 / 20 > 11
    assert bbox_to_token_indices(box, (20, 20), (1, 24, 24)) == [10]


def test_grid_shape_inverse_and_mask() -> None:
    assert token_grid_shape(GRID) == (2, 3)
    assert num_image_tokens(torch.tensor([2, 4, 6])) == 12
    assert token_index_to_bbox(4, IMG, GRID) == (20.0, 20.0, 40.0, 40.0)
    mask = region_token_mask([(0, 0, 10, 10), (45, 25, 50, 30)], IMG, GRID)
    assert mask.tolist() == [True, False, False, False, False, True]  # union of two boxes
    assert not region_token_mask([], IMG, GRID).any()  # no region → empty mask


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: bbox_to_token_indices((-5, 0, 10, 10), IMG, GRID), "-5.0"),  # left of the image
        (lambda: bbox_to_token_indices((0, 0, 61, 10), IMG, GRID), "61.0"),  # past the right edge
        (lambda: bbox_to_token_indices((0, 0, 10, 41), IMG, GRID), "41.0"),  # below the bottom
        (lambda: bbox_to_token_indices((30, 0, 10, 10), IMG, GRID), "30.0"),  # inverted x
        (lambda: bbox_to_token_indices((0, 5, 10, 5), IMG, GRID), "(0.0, 5.0, 10.0, 5.0)"),  # empty
        (lambda: bbox_to_token_indices((0, math.nan, 10, 10), IMG, GRID), "nan"),  # NaN coordinate
        (lambda: bbox_to_token_indices((0, 0, math.inf, 10), IMG, GRID), "inf"),  # infinite
        (lambda: bbox_to_token_indices((0, 0, 10), IMG, GRID), "(0, 0, 10)"),  # wrong length
        (lambda: bbox_to_token_indices((0, 0, 1, 1), (0, 40), GRID), "(0, 40)"),  # zero width
        (lambda: bbox_to_token_indices((0, 0, 1, 1), IMG, (1, 5, 6)), "(1, 5, 6)"),  # h odd
        (lambda: bbox_to_token_indices((0, 0, 1, 1), IMG, (1, 4)), "[1, 4]"),  # grid too short
        (lambda: bbox_to_token_indices((0, 0, 1, 1), IMG, (0, 4, 6)), "(0, 4, 6)"),  # t = 0
        (lambda: bbox_to_token_indices((0, 0, 1, 1), IMG, GRID, min_coverage=1.0), "1.0"),  # coverage
        (lambda: token_index_to_bbox(6, IMG, GRID), "token index 6"),  # index past the last token
    ],
)
def test_bad_input_raises_with_value(call, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        call()
    assert needle in str(err.value)


# ---------------------------------------------------------------- against the real processor
@pytest.mark.parametrize("name", list(PROCESSORS))
@settings(max_examples=50, deadline=None)
@given(case=image_and_box())
def test_mapping_matches_processor_grid(
    name: str, case: tuple[int, int, tuple[float, float, float, float]]
) -> None:
    processor = PROCESSORS[name]
    geometry = VisionGeometry.of(processor)
    width, height, bbox = case
    _, grid = _process(Image.new("RGB", (width, height)), processor)
    n_tokens = grid[0] * grid[1] * grid[2] // 4
    assert list(geometry.grid_thw((width, height))) == grid  # the processor's smart_resize, its factor
    assert geometry.num_tokens((width, height)) == n_tokens
    cell = geometry.cell
    size = resized_size((width, height), geometry.min_pixels, geometry.max_pixels, cell)
    assert size == (grid[2] * geometry.patch_size, grid[1] * geometry.patch_size)
    assert num_image_tokens(grid) == n_tokens
    full = bbox_to_token_indices((0, 0, width, height), (width, height), grid)
    assert full == list(range(n_tokens))  # the whole image is every token
    tiny = (bbox[0], bbox[1], bbox[0] + 1e-3, bbox[1] + 1e-3)
    assert len(bbox_to_token_indices(tiny, (width, height), grid)) >= 1
    indices = bbox_to_token_indices(bbox, (width, height), grid)
    assert indices == sorted(set(indices)) and indices[0] >= 0 and indices[-1] < n_tokens
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    cells = [token_index_to_bbox(i, (width, height), grid) for i in indices]
    assert any(c[0] <= cx <= c[2] and c[1] <= cy <= c[3] for c in cells)  # centre's cell is in
    assert all(_overlap_area(c, bbox) > 0 for c in cells)  # every returned cell overlaps the box
    for i, cell_box in zip(indices, cells, strict=True):  # a cell's own box maps back to it alone
        assert bbox_to_token_indices(cell_box, (width, height), grid) == [i]


def _cases(c: int) -> list[tuple[tuple[int, int], tuple[int, int, int, int]]]:
    """Images and boxes in units of the merged cell c (28 px for Qwen2.5-VL, 32 for Qwen3-VL)."""
    return [
        ((8 * c, 4 * c), (4 * c, 0, 8 * c, 4 * c)),  # right half of a 2:1 image (no resize)
        ((8 * c, 4 * c), (4 * c, 0, 8 * c, 2 * c)),  # top-right quadrant: tells rows from columns
        ((6 * c, 10 * c), (c, 7 * c, 2 * c, 8 * c)),  # one cell at row 7, col 1 of a portrait image
        ((2 * c, c), (c, 0, 2 * c, c)),  # upscaled 1.5× by 2×: the box's left column is half a cell
        ((1000, 300), (500, 0, 1000, 150)),  # downscaled, cell edges fall off the box edges
    ]


@pytest.mark.parametrize(
    ("name", "size", "box"),
    [(name, *case) for name, c in (("qwen2.5-vl", 28), ("qwen3-vl", 32)) for case in _cases(c)],
)
def test_token_order_matches_pixels(name: str, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    image = Image.new("RGB", size)
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill="white")
    brightness, grid = _process(image, PROCESSORS[name])
    lit = set(np.flatnonzero(brightness.numpy() > 0.1).tolist())  # tokens the model sees as bright
    touched = set(bbox_to_token_indices(box, size, grid))
    mostly = set(bbox_to_token_indices(box, size, grid, min_coverage=0.9))
    assert mostly, "every case has a cell the box covers > 90 %"
    assert mostly <= set(np.flatnonzero(brightness.numpy() > 0.7).tolist())
    assert lit <= touched  # no bright token outside the mapped cells


@pytest.mark.parametrize("name", list(PROCESSORS))
@settings(max_examples=30, deadline=None)
@given(case=image_and_box())
def test_bright_tokens_lie_in_mapped_cells(
    name: str, case: tuple[int, int, tuple[float, float, float, float]]
) -> None:
    width, height, (x1, y1, x2, y2) = case
    box = (
        math.floor(x1),
        math.floor(y1),
        max(math.ceil(x2), math.floor(x1) + 1),
        max(math.ceil(y2), math.floor(y1) + 1),
    )
    image = Image.new("RGB", (width, height))
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill="white")
    brightness, grid = _process(image, PROCESSORS[name])
    touched = set(bbox_to_token_indices(box, (width, height), grid))
    lit = set(np.flatnonzero(brightness.numpy() > 0.15).tolist())
    assert lit <= touched
    mostly = bbox_to_token_indices(box, (width, height), grid, min_coverage=0.95)
    assert (brightness[mostly] > 0.7).all()


def test_geometry_reads_the_processor() -> None:
    assert VisionGeometry.of(PROCESSORS["qwen2.5-vl"]) == VisionGeometry(14, 2, MIN_PIXELS, MAX_PIXELS)
    qwen3 = VisionGeometry.of(PROCESSORS["qwen3-vl-8b"])
    assert (qwen3.patch_size, qwen3.merge_size, qwen3.cell) == (16, 2, 32)
    assert qwen3.grid_thw((400, 300)) == (1, 18, 24)  # 400×300 → 384×288 (within the bounds): 18 × 24 patches
    assert qwen3.num_tokens((400, 300)) == 9 * 12


# ---------------------------------------------------------------- sequences
IMG_TOK = 9
# image A: 60×40 px, grid (1, 4, 6) → 6 tokens, 20-px cells; box marks cell (0, 1) → local 1
# image B: 100×50 px, grid (1, 2, 4) → 2 tokens, 50-px cells; box marks cell (0, 1) → local 1
GRIDS = torch.tensor([[1, 4, 6], [1, 2, 4]])
SIZES = [(60, 40), (100, 50)]
REGIONS = [[(25, 5, 35, 15)], [(60, 10, 90, 40)]]


def test_sequence_two_images_in_one_sequence() -> None:
    ids = torch.tensor([5, 1, *[IMG_TOK] * 6, 2, 7, 1, IMG_TOK, IMG_TOK, 2])
    image_mask, region_mask = sequence_region_mask(ids, IMG_TOK, GRIDS, REGIONS, SIZES)
    assert torch.nonzero(image_mask).flatten().tolist() == [2, 3, 4, 5, 6, 7, 11, 12]
    assert torch.nonzero(region_mask).flatten().tolist() == [3, 12]  # 2 + 1 and 11 + 1


def test_sequence_batch_of_two() -> None:
    # row 0 holds image A, row 1 holds image B then image A again (right-padded with 0)
    ids = torch.tensor(
        [
            [1, *[IMG_TOK] * 6, 2, 0, 0, 0, 0, 0],
            [1, IMG_TOK, IMG_TOK, 2, 1, *[IMG_TOK] * 6, 2, 3],
        ]
    )
    grids = torch.tensor([[1, 4, 6], [1, 2, 4], [1, 4, 6]])
    regions = [REGIONS[0], REGIONS[1], [(0, 20, 60, 40)]]  # last: bottom row, local 3, 4, 5
    image_mask, region_mask = sequence_region_mask(ids, IMG_TOK, grids, regions, [*SIZES, SIZES[0]])
    assert image_mask.shape == ids.shape and image_mask.sum() == 14
    assert torch.nonzero(region_mask).tolist() == [[0, 2], [1, 2], [1, 8], [1, 9], [1, 10]]


@pytest.mark.parametrize(
    ("ids", "needle"),
    [
        ([1, *[IMG_TOK] * 6, 2, 1, IMG_TOK, 2], "expected 8 image tokens"),  # image B lost a token
        ([1, *[IMG_TOK] * 5, 2, 1, *[IMG_TOK] * 3, 2], "image 0"),  # right total, wrong split
    ],
)
def test_sequence_count_mismatch_raises(ids: list[int], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        sequence_region_mask(torch.tensor(ids), IMG_TOK, GRIDS, REGIONS, SIZES)


@pytest.mark.parametrize(
    ("grids", "tokens", "merge"),
    [
        ([[1, 4, 6]], 6, 2),  # 24 patches, 6 tokens: merge 2
        ([[1, 4, 6], [1, 2, 4]], 8, 2),  # two images
        ([[1, 6, 6]], 4, 3),  # another tower's merge
        ([[1, 4, 6]], 24, 1),  # no merging
    ],
)
def test_batch_merge_size(grids: list[list[int]], tokens: int, merge: int) -> None:
    ids = torch.tensor([[1, *[IMG_TOK] * tokens, 2]])
    assert batch_merge_size(ids, IMG_TOK, torch.tensor(grids)) == merge


@pytest.mark.parametrize("tokens", [0, 5, 7])
def test_batch_merge_size_rejects_counts_that_fit_no_merge(tokens: int) -> None:
    with pytest.raises(
        ValueError, match=f"{tokens} tokens equal to image_token_id=9 for 1 images of 24 patches"
    ):
        batch_merge_size(torch.tensor([[1, *[IMG_TOK] * tokens, 2]]), IMG_TOK, [[1, 4, 6]])


def test_sequence_image_split_across_rows_raises() -> None:
    # 6 tokens of image A split 3 + 3 over two rows: counts agree, but it is not one run
    ids = torch.tensor([[1, 2, IMG_TOK, IMG_TOK, IMG_TOK], [IMG_TOK, IMG_TOK, IMG_TOK, 2, 0]])
    with pytest.raises(ValueError, match="image 0"):
        sequence_region_mask(ids, IMG_TOK, GRIDS[:1], REGIONS[:1], SIZES[:1])
