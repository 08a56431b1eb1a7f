"""Does the heatmap land on the object? Scores against ImageNet's ground-truth boxes.

* **Energy** (the energy-based pointing game of Score-CAM, Wang et al. 2020): the share of the
  map's mass inside the class's boxes. 1 means all of it is on the object.
* **Pointing game** (Zhang et al. 2016): a hit when the map's peak lies within ``tolerance`` pixels
  (15 in the paper) of a box, measured in the photo's *original* pixels, as the paper does.
* **Chance**: what box size alone gives. A map spread evenly over the part of the photo the network
  saw scores the boxes' share of that part in energy; a peak dropped uniformly at random there hits
  with the share of it that lies within the tolerance of a box. A photo filled by its object makes
  any map look good, so every score is read against its chance level.

Geometry. Maps are scored on the photo's own pixel grid, the grid :func:`~gradcam_tutorial.explain`
returns: the map is placed back into the crop the network saw and is 0 outside it. The boxes are
given in original pixels; the mirrored validation photos were stretched from that size, so a box
follows the same stretch (:meth:`ValPhoto.boxes_at`), and resize and crop are undone by the map's
placement. A grid pixel belongs to a box when its centre does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..regions import Box, region_shares

TOLERANCE = 15.0  # Zhang et al.'s pointing-game tolerance, in original pixels


def box_mask(
    grid_size: tuple[int, int], original_size: tuple[int, int], boxes: Sequence[Box], tolerance: float = 0.0
) -> np.ndarray:
    """``(height, width)`` bool mask of the grid pixels whose centre lies in a box, or within
    ``tolerance`` original pixels of one.

    ``boxes`` are ``(xmin, ymin, xmax, ymax)`` in original pixels with exclusive right and bottom
    edges; the grid is the photo resized (stretched) from ``original_size`` to ``grid_size``.
    """
    width, height = grid_size
    # grid pixel centres in original pixels, as (2i + 1) * L / 2n: exact where (i + 0.5) * (L / n)
    # rounds, e.g. the middle column of a 500-pixel photo on 227 columns lands on x = 250 exactly
    xs = (2 * np.arange(width) + 1) * original_size[0] / (2 * width)
    ys = (2 * np.arange(height) + 1) * original_size[1] / (2 * height)
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        if tolerance <= 0:
            mask |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        else:
            dx = np.maximum(np.maximum(x0 - xs, xs - x1), 0.0)
            dy = np.maximum(np.maximum(y0 - ys, ys - y1), 0.0)
            mask |= dy[:, None] ** 2 + dx[None, :] ** 2 <= tolerance**2
    return mask


def visible_mask(grid_size: tuple[int, int], pixel_box: tuple[int, int, int, int]) -> np.ndarray:
    """The grid pixels the network saw (:meth:`ModelSpec.pixel_box`), as a bool mask."""
    width, height = grid_size
    x0, y0, x1, y1 = pixel_box
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def energy(heatmap: np.ndarray, inside: np.ndarray) -> float:
    """Share of the (non-negative) map's mass on the ``inside`` pixels; 0 for a map with no mass."""
    values = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, None)
    total = values.sum()
    return float(values[inside].sum() / total) if total > 0 else 0.0


def pointing_hit(heatmap: np.ndarray, near: np.ndarray) -> bool:
    """Whether the map's peak pixel is one of the ``near`` pixels; a map with no mass misses.

    Of several equal peaks the first in raster order counts, as ``argmax`` picks it.
    """
    values = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=-np.inf)
    if not np.any(values > 0):
        return False
    return bool(near.flat[int(np.argmax(values))])


def chance(visible: np.ndarray, target: np.ndarray) -> float:
    """Share of the visible pixels that are target pixels: what an even map or a random peak scores."""
    seen = int(visible.sum())
    return float((target & visible).sum() / seen) if seen else 0.0


def box_coverage(original_size: tuple[int, int], boxes: Sequence[Box]) -> float:
    """Share of the whole photo covered by the union of its boxes (to pick out small objects)."""
    width, height = original_size
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[int(y0) : int(y1), int(x0) : int(x1)] = True
    return float(covered.mean())


# --- pointing game over regions (the demo grid's tiles) --------------------------------------------


@dataclass(frozen=True)
class PointingResult:
    """Where one map puts its mass: share per region, peak pixel ``(x, y)``, and the verdict."""

    shares: np.ndarray  # share of the map's total mass inside each region, in region order
    peak: tuple[int, int]
    peak_region: int | None  # index of the region holding the peak, None if outside all
    hit: bool  # the own region holds the largest share


def pointing_game(heatmap: np.ndarray, boxes: Sequence[Box], own: int) -> PointingResult:
    """Mass shares per box and whether box ``own`` (the object's region) holds the most mass.

    A map with no mass at all points nowhere and never hits.
    """
    shares = region_shares(heatmap, boxes)
    y, x = np.unravel_index(int(np.argmax(heatmap)), np.shape(heatmap))
    inside = [i for i, (left, top, right, bottom) in enumerate(boxes) if left <= x < right and top <= y < bottom]
    hit = bool(shares.sum() > 0 and int(np.argmax(shares)) == own)
    return PointingResult(shares, (int(x), int(y)), inside[0] if inside else None, hit)
