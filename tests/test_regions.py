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
