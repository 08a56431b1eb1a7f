"""Named regions a heatmap is read by: they must tile the picture, so the shares add up to one."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_tutorial.images import demo_grid
from gradcam_tutorial.regions import halves, quadrants, region_shares


@pytest.mark.parametrize("size", [(512, 512), (641, 427), (3, 5)])
def test_halves_and_quadrants_tile_the_picture(size):
    width, height = size
    for regions in (halves(size), quadrants(size)):
        covered = np.zeros((height, width), dtype=int)
        for left, top, right, bottom in regions.values():
            covered[top:bottom, left:right] += 1
        assert (covered == 1).all(), f"{list(regions)} overlap or leave a gap on {size}"
        shares = region_shares(np.random.default_rng(0).random((height, width)), list(regions.values()))
        assert shares.sum() == pytest.approx(1.0)
    assert list(halves(size)) == ["left half", "right half"]
    assert quadrants(size)["top right"] == (width // 2, 0, width, height // 2)


def test_grid_tiles_name_what_they_show():
    _, tiles = demo_grid(8)
    assert [tile.label for tile in tiles] == ["cat", "espresso", "military uniform", "moped"]


@pytest.mark.parametrize(
    ("size", "box"),
    [((512, 512), (32, 32, 480, 480)), ((641, 427), (107, 0, 534, 427)), ((300, 200), (0, 0, 300, 200))],
)
def test_placed_shares_are_the_shares_of_each_map_placed_on_the_photo(size, box):
    """The shortcut equals region_shares of heatmap_on_photo, map by map: regions that cross the box,
    lie outside it or outside the picture; a map of zeros has no shares."""
    from gradcam_tutorial.regions import placed_shares
    from gradcam_tutorial.viz import heatmap_on_photo

    maps = np.random.default_rng(1).random((4, 7, 5)).astype(np.float32)
    maps[2] = 0
    height = size[1]
    boxes = [*quadrants(size).values(), (10, 5, 100, 150), (0, 0, box[0], height), (200, 150, 900, 900)]
    expected = np.array([region_shares(heatmap_on_photo(m, size, box), boxes) for m in maps])
    np.testing.assert_allclose(placed_shares(maps, size, box, boxes), expected, atol=1e-7)
    assert (placed_shares(maps, size, box, boxes)[2] == 0).all()
    assert placed_shares(maps, size, box, []).shape == (4, 0)
