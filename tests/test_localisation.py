"""Localisation scores on cases with known answers, and the box geometry on photos with known boxes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gradcam_tutorial.evaluation.localisation import (
    TOLERANCE,
    box_coverage,
    box_mask,
    chance,
    energy,
    pointing_hit,
    visible_mask,
)
from gradcam_tutorial.viz import heatmap_on_photo


def test_a_box_stretched_with_the_photo_covers_exactly_its_pixels():
    # a 454x227 photo squashed to 227x227 halves every x; the box keeps its y
    mask = box_mask((227, 227), (454, 227), [(100, 50, 200, 150)])
    expected = np.zeros((227, 227), dtype=bool)
    expected[50:150, 50:100] = True  # centres x + 0.5 in original 2x + 1 lie in [100, 200)
    assert np.array_equal(mask, expected)


def test_tolerance_reaches_exactly_its_distance_in_original_pixels():
    mask = box_mask((100, 100), (100, 100), [(40, 40, 60, 60)], tolerance=TOLERANCE)
    # row 50 (centre 50.5): pixels whose centre is within 15 of [40, 60]
    row = np.flatnonzero(mask[50])
    assert row[0] == 25 and row[-1] == 74  # centre 25.5 is 14.5 away, 24.5 is 15.5 away
    assert mask[30, 30] and not mask[28, 28]  # corner: sqrt(2) * 9.5 = 13.4 in, sqrt(2) * 11.5 = 16.3 out
    # on a grid at half resolution, the same 15 original pixels are 7.5 grid pixels
    half = box_mask((50, 50), (100, 100), [(40, 40, 60, 60)], tolerance=TOLERANCE)
    assert np.flatnonzero(half[25])[[0, -1]].tolist() == [12, 37]


def test_energy_pointing_and_chance_on_known_maps():
    inside = box_mask((10, 10), (10, 10), [(2, 2, 5, 5)])
    on_box = inside.astype(float)
    assert energy(on_box, inside) == 1.0
    assert energy(1 - on_box, inside) == 0.0
    assert energy(np.ones((10, 10)), inside) == pytest.approx(0.09)
    assert energy(np.zeros((10, 10)), inside) == 0.0  # no mass: points nowhere
    assert energy(np.full((10, 10), -1.0), inside) == 0.0  # negative values carry no mass
    peak = np.zeros((10, 10))
    peak[3, 4] = 1
    assert pointing_hit(peak, inside)
    peak[3, 4], peak[8, 8] = 0, 1
    assert not pointing_hit(peak, inside)
    assert not pointing_hit(np.zeros((10, 10)), inside)
    visible = visible_mask((10, 10), (0, 0, 5, 10))  # the left half was seen
    assert chance(visible, inside) == pytest.approx(9 / 50)
    assert chance(visible_mask((10, 10), (0, 0, 0, 0)), inside) == 0.0


def test_box_coverage_counts_overlapping_boxes_once():
    assert box_coverage((100, 50), [(0, 0, 50, 50)]) == pytest.approx(0.5)
    assert box_coverage((100, 50), [(0, 0, 50, 50), (25, 0, 75, 50)]) == pytest.approx(0.75)


def test_box_geometry_on_a_stretched_photo_with_a_known_box():
    """A photo drawn at its original size with a white box, squashed to 227x227 as the mirror did:
    the box mask covers the white pixels, and a map that is 1 exactly where the network input shows
    white, placed back on the photo the way explain() does, puts all its mass in the box."""
    from gradcam_tutorial import get_spec

    original, box = (500, 375), (180, 60, 330, 300)
    photo = Image.new("RGB", original, "black")
    ImageDraw.Draw(photo).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill="white")  # inclusive corners
    stored = photo.resize((227, 227), Image.BILINEAR)
    mask = box_mask(stored.size, original, [box])
    white = np.asarray(stored.convert("L")) > 127
    assert (mask != white).sum() <= 2 * (mask.shape[0] + mask.shape[1]) * 0.05  # edge pixels only
    assert (mask & white).sum() / white.sum() > 0.97

    spec = get_spec("efficientnet_lite0")
    x = spec.preprocess(stored)[0]
    input_white = (x.mean(0) > 0).numpy().astype(np.float32)  # what the network sees as the box
    placed = heatmap_on_photo(input_white, stored.size, spec.pixel_box(stored.size))
    assert energy(placed, mask) > 0.97
    assert energy(placed, box_mask(stored.size, original, [(0, 0, 180, 60)])) < 0.01
