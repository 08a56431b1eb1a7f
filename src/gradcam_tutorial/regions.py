"""How a heatmap's mass divides between rectangular regions of the picture it explains.

The tutorial's per-class tables and the report's pointing game both read a map this way: a share
per region, so a map that puts 90 % of its mass on the cat's tile says so in one number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = Sequence[float]  # (left, top, right, bottom), right and bottom exclusive


def region_shares(heatmap: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Share of the (non-negative) map's mass inside each ``(left, top, right, bottom)`` box."""
    values = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, None)
    total = values.sum()
    masses = np.array(
        [values[int(top) : int(bottom), int(left) : int(right)].sum() for left, top, right, bottom in boxes]
    )
    return masses / total if total > 0 else np.zeros(len(boxes))


def halves(size: tuple[int, int]) -> dict[str, Box]:
    """The left and right halves of a ``(width, height)`` picture, by name."""
    width, height = size
    return {"left half": (0, 0, width // 2, height), "right half": (width // 2, 0, width, height)}


def quadrants(size: tuple[int, int]) -> dict[str, Box]:
    """The four quadrants of a ``(width, height)`` picture, by name: regions to read a map by when
    nothing is known about what is where."""
    width, height = size
    w2, h2 = width // 2, height // 2
    return {
        "top left": (0, 0, w2, h2),
        "top right": (w2, 0, width, h2),
        "bottom left": (0, h2, w2, height),
        "bottom right": (w2, h2, width, height),
    }
