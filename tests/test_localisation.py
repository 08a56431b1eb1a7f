"""The localisation scores (evaluation/localisation.py): cases with known answers, the box geometry on
photos with known boxes, and independent computations.

* Energy against Quantus' ``RelevanceMassAccuracy`` and the pointing game against Quantus'
  ``PointingGame`` (Quantus 0.6.0, installed without dependencies: see
  requirements-oracles-nodeps.txt). Both are given our map as the attribution and our box mask as the
  segmentation ``s_batch``, with ``abs=False`` and ``normalise=False``: the maps are non-negative,
  so taking absolute values changes nothing, and Quantus' default division by the maximum would
  only add rounding to a ratio it leaves unchanged. No model is needed with precomputed
  attributions; ``x_batch`` is a dummy of the right shape.
* Where the definitions differ (ties for the peak, maps without mass, empty masks) a separate test
  pins the difference down, so that agreement elsewhere is not mistaken for identical definitions.
* Chance and box coverage against boxes drawn with Pillow at the photo's own resolution and resized
  with nearest-neighbour sampling, and against per-pixel loops on a small grid.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import quantus
from PIL import Image, ImageDraw

from gradcam_tutorial import regions
from gradcam_tutorial.evaluation.localisation import (
    TOLERANCE,
    box_coverage,
    box_mask,
    chance,
    energy,
    pointing_game,
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


# --- against the definitions, on maps with known answers -------------------------------------------


def test_pointing_game_on_synthetic_maps():
    boxes = [(0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64)]
    ys, xs = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xs - 48) ** 2 + (ys - 50) ** 2) / (2 * 6.0**2))
    result = pointing_game(blob, boxes, own=3)
    assert result.hit and result.peak == (48, 50) and result.peak_region == 3
    assert result.shares.sum() == pytest.approx(1.0) and result.shares[3] > 0.99
    assert not pointing_game(blob, boxes, own=0).hit
    split = np.zeros((64, 64))
    split[:32, :32], split[32:, 32:] = 1.0, 3.0
    np.testing.assert_allclose(regions.region_shares(split, boxes), [0.25, 0, 0, 0.75])
    empty = pointing_game(np.zeros((64, 64)), boxes, own=0)
    assert not empty.hit and np.all(empty.shares == 0)


def test_energy_of_a_faint_map_is_still_its_share_and_negative_values_count_as_nothing():
    inside = np.zeros((4, 4), dtype=bool)
    inside[:2] = True
    faint = np.full((4, 4), 0.01)  # total mass 0.16, below one
    assert energy(faint, inside) == pytest.approx(0.5)
    signed = np.zeros((4, 4))
    signed[0, 0], signed[3, 3] = 1.0, -5.0  # the negative pixel outside must not shrink the total
    assert energy(signed, inside) == pytest.approx(1.0)


def test_pointing_hit_ignores_nan_pixels_and_an_all_zero_map_misses():
    near = np.zeros((4, 4), dtype=bool)
    near[1, 1] = True
    heatmap = np.zeros((4, 4))
    heatmap[1, 1] = 0.5
    heatmap[3, 3] = np.nan  # a NaN is no peak
    assert pointing_hit(heatmap, near)
    everywhere = np.ones((4, 4), dtype=bool)
    assert not pointing_hit(np.zeros((4, 4)), everywhere)


@pytest.mark.parametrize(
    ("peak", "region"),
    [((2, 3), 0), ((5, 7), 0), ((6, 3), 1), ((2, 8), None)],  # (x, y); box 0 spans x 2..5, y 3..7
)
def test_a_box_holds_its_left_and_top_pixels_and_not_its_right_and_bottom_ones(peak, region):
    boxes = [(2, 3, 6, 8), (6, 3, 9, 8)]  # half-open pixel boxes (left, top, right, bottom)
    heatmap = np.zeros((10, 10))
    heatmap[peak[1], peak[0]] = 1.0
    result = pointing_game(heatmap, boxes, own=0)
    assert result.peak == peak and result.peak_region == region


def test_box_edges_are_half_open_where_pixel_centres_fall_on_them():
    # a 20x20 photo on a 10x10 grid: grid pixel centres at original 1, 3, 5, ..., 19
    mask = box_mask((10, 10), (20, 20), [(3, 5, 9, 11)])
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:5, 1:4] = True  # x in {3, 5, 7} (9 is the right edge, outside), y in {5, 7, 9}
    assert np.array_equal(mask, expected)


def test_tolerance_is_euclidean_distance_to_the_box_and_small_tolerances_count():
    # grid = photo: pixel centres at i + 0.5; box [2, 5) x [2, 5)
    box = [(2, 2, 5, 5)]
    strict = np.zeros((10, 10), dtype=bool)
    strict[2:5, 2:5] = True
    assert np.array_equal(box_mask((10, 10), (10, 10), box), strict)
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=0), strict)
    # within 1 pixel: one more row and column on every side, corners (0.71 away) included
    one = np.zeros((10, 10), dtype=bool)
    one[1:6, 1:6] = True
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=1), one)
    # within exactly 0.5: the sides' centres (0.5 away) are in, the corners (0.71 away) are not
    half = one.copy()
    half[[1, 1, 5, 5], [1, 5, 1, 5]] = False
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=0.5), half)
    assert TOLERANCE == 15.0


# --- against independent computations: Quantus, Pillow, per-pixel loops ----------------------------


GRID = (227, 227)  # (width, height) of the stored validation photos
ORIGINAL_SIZES = [(500, 375), (375, 500), (640, 427), (227, 227), (1000, 120)]


def random_boxes(
    rng: np.random.Generator, size: tuple[int, int], count: int, grid_size=GRID
) -> list[tuple[float, ...]]:
    """ImageNet-style boxes: whole original pixels, exclusive right and bottom edges, each at least
    three grid pixels wide and high, so that its mask is never empty."""
    width, height = size
    span_x, span_y = math.ceil(3 * width / grid_size[0]), math.ceil(3 * height / grid_size[1])
    boxes = []
    for _ in range(count):
        x0 = int(rng.integers(0, width - span_x + 1))
        y0 = int(rng.integers(0, height - span_y + 1))
        x1 = int(rng.integers(x0 + span_x, width + 1))
        y1 = int(rng.integers(y0 + span_y, height + 1))
        boxes.append((float(x0), float(y0), float(x1), float(y1)))
    return boxes


def photo_cases(seed: int) -> list[tuple[tuple[int, int], list[tuple[float, ...]]]]:
    """(original size, boxes) pairs: random boxes, boxes touching every border, the whole photo."""
    rng = np.random.default_rng(seed)
    cases = []
    for size in ORIGINAL_SIZES:
        width, height = size
        cases.append((size, random_boxes(rng, size, 1)))
        cases.append((size, random_boxes(rng, size, 3)))
        cases.append(
            (
                size,
                [
                    (0.0, 0.0, float(width // 3), float(height)),
                    (float(width * 4 // 5), float(height // 2), float(width), float(height)),
                ],
            )
        )
        cases.append((size, [(0.0, height - 7.0, float(width), float(height))]))  # a thin strip along the bottom
    cases.append(((500, 375), [(0.0, 0.0, 500.0, 375.0)]))  # a photo filled by its object
    cases.append(((500, 375), [(250.0, 0.0, 500.0, 375.0)]))  # an edge exactly on a grid pixel's centre
    return cases


def random_map(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A non-negative float32 map on the grid, as :func:`~gradcam_tutorial.explain` returns them."""
    width, height = GRID
    if kind == "uniform":
        return rng.random((height, width), dtype=np.float32)
    if kind == "ties":  # a handful of levels: exact ties everywhere, including for the maximum
        return (rng.integers(0, 4, (height, width)) / 3).astype(np.float32)
    if kind == "placed":  # a smooth blob inside a crop, zero outside it, as the report places maps
        x0, y0 = (int(v) for v in rng.integers(0, 60, 2))
        ys, xs = np.mgrid[0:height, 0:width]
        cx, cy = rng.uniform(x0, width - 1), rng.uniform(y0, height - 1)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * rng.uniform(5, 40) ** 2))
        blob[:y0] = 0
        blob[:, :x0] = 0
        return blob.astype(np.float32)
    if kind == "sparse":  # mostly exact zeros
        return (rng.random((height, width)) * (rng.random((height, width)) < 0.02)).astype(np.float32)
    if kind == "zero":
        return np.zeros((height, width), dtype=np.float32)
    raise ValueError(kind)


def quantus_scores(metric_class, maps: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    """Score precomputed maps against masks with a Quantus localisation metric, without a model."""
    metric = metric_class(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    a_batch = np.stack(maps)[:, None].astype(np.float64)  # (N, 1, H, W): channel first, one channel
    s_batch = np.stack(masks)[:, None]
    x_batch = np.zeros_like(a_batch, dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # 0/0 for maps without mass, empty-segmentation notices
        scores = metric(
            model=None,
            x_batch=x_batch,
            y_batch=np.zeros(len(maps), dtype=int),
            a_batch=a_batch,
            s_batch=s_batch,
            channel_first=True,
        )
    return np.asarray(scores)


@pytest.mark.slow
def test_energy_agrees_with_quantus_relevance_mass_accuracy():
    rng = np.random.default_rng(0)
    maps, masks = [], []
    for index, (size, boxes) in enumerate(photo_cases(1)):
        kind = ("uniform", "ties", "placed", "sparse")[index % 4]
        for tolerance in (0.0, TOLERANCE):
            maps.append(random_map(rng, kind))
            masks.append(box_mask(GRID, size, boxes, tolerance))
    maps.append(random_map(rng, "zero"))
    masks.append(masks[0])
    assert all(mask.any() for mask in masks)  # an empty mask is a difference of its own (below)

    theirs = quantus_scores(quantus.RelevanceMassAccuracy, maps, masks)
    ours = np.array([energy(heatmap, mask) for heatmap, mask in zip(maps, masks, strict=True)])

    has_mass = np.array([heatmap.sum() > 0 for heatmap in maps])
    assert np.all(np.isfinite(theirs[has_mass]))
    np.testing.assert_allclose(ours[has_mass], theirs[has_mass], rtol=0, atol=1e-12)
    # a map without mass: Quantus divides 0 by 0, ours scores 0
    assert np.all(np.isnan(theirs[~has_mass])) and np.all(ours[~has_mass] == 0.0)
    # not a trivial agreement: low, middling and full shares all occur
    assert ours.min() < 0.1 and np.any((ours > 0.2) & (ours < 0.8)) and ours.max() == pytest.approx(1.0)


def peak_free_of_ties_across(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximal pixels lie all inside or all outside the mask."""
    peaks = heatmap == heatmap.max()
    return bool(np.all(mask[peaks]) or not np.any(mask[peaks]))


@pytest.mark.slow
def test_pointing_hit_agrees_with_quantus_pointing_game():
    rng = np.random.default_rng(2)
    maps, masks = [], []
    for index, (size, boxes) in enumerate(photo_cases(3)):
        for tolerance in (0.0, TOLERANCE):
            mask = box_mask(GRID, size, boxes, tolerance)
            heatmap = random_map(rng, ("uniform", "placed", "ties")[index % 3])
            if index % 3 == 2:  # exact ties for the maximum, all on one side of the mask's edge
                side = mask if (index // 3) % 2 == 0 or mask.all() else ~mask
                level = heatmap.max()
                heatmap[heatmap == level] = level / 2
                chosen = rng.choice(np.flatnonzero(side), size=min(5, int(side.sum())), replace=False)
                heatmap.flat[chosen] = 2 * level
            elif index % 2 == 1 and not mask.all():  # make sure misses occur as well as hits
                heatmap.flat[rng.choice(np.flatnonzero(~mask))] = heatmap.max() + 1
            maps.append(heatmap)
            masks.append(mask)
    assert all(peak_free_of_ties_across(heatmap, mask) for heatmap, mask in zip(maps, masks, strict=True))
    assert any(np.sum(heatmap == heatmap.max()) > 1 for heatmap in maps)

    theirs = quantus_scores(quantus.PointingGame, maps, masks)
    ours = np.array([pointing_hit(heatmap, mask) for heatmap, mask in zip(maps, masks, strict=True)])

    assert theirs.dtype == bool
    np.testing.assert_array_equal(ours, theirs)
    assert 0 < ours.sum() < len(ours)  # hits and misses both occur


def test_pointing_and_energy_definitions_that_differ_from_quantus():
    """Where our definitions and Quantus 0.6.0's part, pinned so that a change on either side shows.

    * Ties for the peak: ours takes the first maximal pixel in raster order (``argmax``); Quantus
      counts a hit when *any* maximal pixel is in the mask.
    * A map without mass: ours misses and scores energy 0; for Quantus every pixel is maximal, so
      the pointing game hits wherever the mask is not empty, and the mass accuracy is 0/0 = NaN.
    * An empty mask (a box smaller than a grid pixel, between pixel centres): ours misses and scores
      0; Quantus' mass accuracy is NaN, and its pointing game returns True, because the NaN meant to
      flag the case is written into a bool array.
    """
    width, height = GRID
    size = (500, 375)
    mask = box_mask(GRID, size, [(251.0, 0.0, 500.0, 375.0)])  # columns 114 on
    assert mask[:, 114:].all() and not mask[:, :114].any()

    first_outside = np.zeros((height, width), dtype=np.float32)
    first_outside[10, 20] = first_outside[200, 200] = 1.0  # raster order: (10, 20) comes first
    first_inside = np.zeros((height, width), dtype=np.float32)
    first_inside[10, 200] = first_inside[200, 20] = 1.0
    assert not mask[10, 20] and mask[200, 200] and mask[10, 200] and not mask[200, 20]
    zero = np.zeros((height, width), dtype=np.float32)
    tiny_box = [(1.5, 1.5, 2.0, 2.0)]  # between the centres 1.1 and 3.3 of the first grid pixels
    empty = box_mask(GRID, size, tiny_box)
    assert not empty.any()
    other = np.random.default_rng(4).random((height, width), dtype=np.float32)

    maps = [first_outside, first_inside, zero, other]
    masks = [mask, mask, mask, empty]
    pointing = quantus_scores(quantus.PointingGame, maps, masks)
    mass = quantus_scores(quantus.RelevanceMassAccuracy, maps, masks)

    assert [pointing_hit(heatmap, near) for heatmap, near in zip(maps, masks, strict=True)] == [
        False,
        True,
        False,
        False,
    ]
    assert pointing.tolist() == [True, True, True, True]
    assert [energy(heatmap, inside) for heatmap, inside in zip(maps, masks, strict=True)] == [0.5, 0.5, 0.0, 0.0]
    np.testing.assert_array_equal(mass, [0.5, 0.5, np.nan, np.nan])


def exact_centres(count: int, length: int) -> list[Fraction]:
    """The grid pixels' centres in original pixels, as exact fractions."""
    return [Fraction((2 * index + 1) * length, 2 * count) for index in range(count)]


def edge_on_a_centre(grid_size, original_size, boxes, tolerance: float = 0.0) -> bool:
    """Whether a box edge (or an edge moved out by ``tolerance``) passes exactly through a grid
    pixel's centre, where rounding decides membership (see the last test)."""
    xs = set(exact_centres(grid_size[0], original_size[0]))
    ys = set(exact_centres(grid_size[1], original_size[1]))
    tol = Fraction(tolerance)
    return any(
        Fraction(x0) - tol in xs or Fraction(x1) + tol in xs or Fraction(y0) - tol in ys or Fraction(y1) + tol in ys
        for x0, y0, x1, y1 in boxes
    )


def drawn_mask(original_size: tuple[int, int], boxes, grid_size: tuple[int, int]) -> np.ndarray:
    """Boxes drawn with Pillow at the photo's resolution, resized to the grid by nearest neighbour
    (Pillow samples the source pixel under each target pixel's centre)."""
    image = Image.new("L", original_size, 0)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([int(x0), int(y0), int(x1) - 1, int(y1) - 1], fill=255)  # inclusive corners
    return np.asarray(image.resize(grid_size, Image.Resampling.NEAREST)) > 0


def looped_chance(grid_size, original_size, boxes, tolerance, pixel_box) -> float:
    """Chance by visiting every visible grid pixel and measuring its centre's distance to each box."""
    width, height = grid_size
    seen = hits = 0
    for row in range(pixel_box[1], pixel_box[3]):
        for col in range(pixel_box[0], pixel_box[2]):
            x = Fraction((2 * col + 1) * original_size[0], 2 * width)  # exact centre
            y = Fraction((2 * row + 1) * original_size[1], 2 * height)
            seen += 1
            for box in boxes:
                x0, y0, x1, y1 = (Fraction(edge) for edge in box)
                if tolerance == 0:
                    inside = x0 <= x < x1 and y0 <= y < y1
                else:  # squared distance to the box's closed rectangle, exactly
                    nearest_x, nearest_y = min(max(x, x0), x1), min(max(y, y0), y1)
                    inside = (x - nearest_x) ** 2 + (y - nearest_y) ** 2 <= Fraction(tolerance) ** 2
                if inside:
                    hits += 1
                    break
    return hits / seen


@pytest.mark.slow
def test_chance_and_box_coverage_against_brute_force():
    rng = np.random.default_rng(5)
    coverages = []
    for size, boxes in photo_cases(6):
        # coverage: the union of boxes drawn at the photo's own resolution
        full = drawn_mask(size, boxes, size)
        coverages.append(box_coverage(size, boxes))
        assert coverages[-1] == pytest.approx(full.mean(), abs=1e-15)
        if edge_on_a_centre(GRID, size, boxes):
            continue  # Pillow's rounding and ours decide such pixels (see the last test)

        # chance, no tolerance: the same boxes drawn and resized to the grid, inside a random crop
        x0, y0 = (int(v) for v in rng.integers(0, 60, 2))
        x1, y1 = int(rng.integers(x0 + 100, GRID[0] + 1)), int(rng.integers(y0 + 100, GRID[1] + 1))
        target = box_mask(GRID, size, boxes)
        drawn = drawn_mask(size, boxes, GRID)
        np.testing.assert_array_equal(target, drawn)
        expected = drawn[y0:y1, x0:x1].mean()
        assert chance(visible_mask(GRID, (x0, y0, x1, y1)), target) == pytest.approx(expected, abs=1e-15)

    assert min(coverages) < 0.1 and max(coverages) == 1.0

    # chance with and without a tolerance, per-pixel loops on a small grid
    small_grid, small_size = (31, 23), (70, 52)
    chances = []
    for index in range(12):
        boxes = random_boxes(rng, small_size, 1 + index % 3, small_grid)
        while any(edge_on_a_centre(small_grid, small_size, boxes, tolerance) for tolerance in (0.0, 2.5, TOLERANCE)):
            boxes = random_boxes(rng, small_size, 1 + index % 3, small_grid)
        pixel_box = (
            int(rng.integers(0, 5)),
            int(rng.integers(0, 5)),
            int(rng.integers(20, 32)),
            int(rng.integers(15, 24)),
        )
        visible = visible_mask(small_grid, pixel_box)
        for tolerance in (0.0, 2.5, TOLERANCE):
            ours = chance(visible, box_mask(small_grid, small_size, boxes, tolerance))
            assert ours == pytest.approx(looped_chance(small_grid, small_size, boxes, tolerance, pixel_box), abs=1e-12)
            chances.append(ours)
    assert min(chances) < 0.1 and max(chances) > 0.9
    assert chance(visible_mask(small_grid, (3, 3, 3, 9)), np.ones((23, 31), dtype=bool)) == 0.0  # nothing visible


def test_centre_exactly_on_a_box_edge():
    """A pixel whose centre lies exactly on a box's left edge is in the box, on its right edge is not.

    On a 227-pixel grid only the middle pixel (113) can have its centre exactly on a whole original
    pixel: at ``length / 2`` for an even length. Computed as ``113.5 * (length / 227)`` it came out
    one ulp off ``length / 2`` for 85 of the even lengths up to 2000 (500 among them), moving one
    row or column; ``box_mask`` now computes ``(2 * i + 1) * length / (2 * 227)``, which is exact.
    """
    wrong = []
    for length in (500, 250, 118, 120, 454, 640, 1000):
        half = length / 2
        assert exact_centres(GRID[0], length)[113] == half
        left_edge = box_mask(GRID, (length, length), [(half, half, float(length), float(length))])
        right_edge = box_mask(GRID, (length, length), [(0.0, 0.0, half, half)])
        if not (left_edge[113, 113] and not right_edge[113, 113]):
            wrong.append(length)
    assert wrong == []
