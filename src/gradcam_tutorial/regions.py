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
