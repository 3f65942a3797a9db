"""Tests of the region and attention pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sayo import viz
from sayo.data.schema import Region
from sayo.viz import attention_heatmap, draw_regions, heatmap_grid, save_png

GREY = (128, 128, 128)


def test_draw_regions_outlines_a_copy() -> None:
    image = Image.new("RGB", (120, 80), GREY)
    out = draw_regions(image, [Region(bbox=(10, 20, 50, 60), label="red square"), (70, 5, 110, 40)])
    assert out.size == (120, 80) and out.mode == "RGB"
    assert image.getpixel((10, 30)) == GREY  # the input is untouched
    assert out.getpixel((10, 30)) == viz.REGION_COLOUR  # left edge of the first box
    assert out.getpixel((109, 20)) == viz.REGION_COLOUR  # right edge (x2 - 1) of the second box
    assert out.getpixel((30, 40)) == GREY  # the inside stays visible


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_draw_regions_accepts_any_mode(mode: str) -> None:
    out = draw_regions(Image.new(mode, (40, 30)), [(1, 1, 20, 20)], labels=False)
    assert (out.size, out.mode) == ((40, 30), "RGB")


def _hot_vs_cold_change(
    attention: object, size: tuple[int, int], hot: tuple[int, int], cold: tuple[int, int]
):
    image = Image.new("RGB", size, GREY)
    out = np.asarray(attention_heatmap(image, attention), dtype=np.int64)  # [H, W, 3]
    change = np.abs(out - np.array(GREY)).sum(-1)  # [H, W]
    return change[hot[1], hot[0]], change[cold[1], cold[0]]


def test_heatmap_size_mode_and_hot_cell() -> None:
    attention = np.zeros((4, 4))
    attention[1, 2] = 1.0  # hot cell: columns 2, rows 1 of a 4×4 grid over 100×100 px
    image = Image.new("RGB", (100, 100), GREY)
    out = attention_heatmap(image, attention)
    assert (out.size, out.mode) == ((100, 100), "RGB")
    hot, cold = _hot_vs_cold_change(attention, (100, 100), hot=(62, 37), cold=(12, 87))
    assert hot > 2 * cold > 0


def test_heatmap_stretches_grid_over_non_square_image() -> None:
    # A 3×5 grid over a 200×60 image: cell (row 2, col 0) covers x in [0, 40), y in [40, 60).
    attention = torch.zeros(3, 5)
    attention[2, 0] = 5.0  # a tensor, unnormalised
    hot, cold = _hot_vs_cold_change(attention, (200, 60), hot=(20, 50), cold=(180, 10))
    assert hot > 2 * cold


def test_heatmap_title_and_regions() -> None:
    image = Image.new("RGB", (90, 70), GREY)
    out = attention_heatmap(image, np.ones((2, 3)), regions=[Region(bbox=(5, 5, 30, 30))], title="base")
    assert out.width == 90 and out.height > 70  # a title bar is added above
    bar = out.height - 70
    assert out.getpixel((5, bar + 15)) == viz.REGION_COLOUR
    assert out.getpixel((60, 2)) == (255, 255, 255)  # title bar background


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        (np.zeros(5), "grid_h, grid_w"),  # 1-D
        (np.zeros((0, 3)), "grid_h, grid_w"),  # empty
        (np.array([[np.nan, 1.0]]), "NaN"),
    ],
)
def test_heatmap_rejects_bad_attention(attention: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attention_heatmap(Image.new("RGB", (10, 10)), attention)


def test_heatmap_grid_layout() -> None:
    items = [(Image.new("RGB", (64, 48), GREY), np.eye(3), None, f"#{i}") for i in range(5)]
    grid = heatmap_grid(items, columns=4, tile_width=100, padding=4)
    tile_h = round(attention_heatmap(*items[0][:3], title="#0").height * 100 / 64)
    assert grid.size == (4 * 100 + 5 * 4, 2 * tile_h + 3 * 4)
    assert grid.mode == "RGB"


def test_save_png_writes_valid_png(tmp_path: Path) -> None:
    path = save_png(Image.new("RGB", (12, 8), GREY), tmp_path / "sub" / "pic.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (12, 8) and image.getpixel((3, 3)) == GREY
    assert [p.name for p in path.parent.iterdir()] == ["pic.png"]


def test_save_png_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_png(Image.new("RGB", (4, 4), GREY), tmp_path / "pic.png")
    before = path.read_bytes()

    def broken_save(self: Image.Image, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(Image.new("RGB", (4, 4), (0, 0, 0)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pic.png"]
