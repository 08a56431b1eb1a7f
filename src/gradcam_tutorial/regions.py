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


def placed_shares(
    maps: np.ndarray, photo_size: tuple[int, int], box: Sequence[int], boxes: Sequence[Box]
) -> np.ndarray:
    """``region_shares(heatmap_on_photo(m, photo_size, box), boxes)`` for every map ``m`` of a
    ``(K, h, w)`` stack of maps in [0, 1], ``(K, len(boxes))``, without making one photo-sized map.

    Bilinear resizing is linear and separable, so a region's mass is ``a @ m @ b``, where ``a`` and
    ``b`` sum the resize's weights over the region's rows and columns: 1000 classes on a
    40-megapixel photo cost what one small map does.
    """
    from .viz import resize_heatmap

    stack = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float64)), 0.0, 1.0)
    _, h, w = stack.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    # rows[i, j]: weight of the map's row j in the placed map's row y0 + i (columns alike)
    rows = resize_heatmap(np.eye(h, dtype=np.float32)[:, :, None], (y1 - y0, 1))[:, :, 0].T.astype(np.float64)
    cols = resize_heatmap(np.eye(w, dtype=np.float32)[:, None, :], (1, x1 - x0))[:, 0, :].T.astype(np.float64)

    def weights(table: np.ndarray, start: float, end: float, offset: int, limit: int) -> np.ndarray:
        lo, hi = max(int(start), offset, 0), min(int(end), offset + len(table), limit)
        return table[lo - offset : hi - offset].sum(0) if hi > lo else np.zeros(table.shape[1])

    width, height = photo_size
    total = np.einsum("khw,h,w->k", stack, rows.sum(0), cols.sum(0))
    columns = [
        np.einsum("khw,h,w->k", stack, weights(rows, top, bottom, y0, height), weights(cols, left, right, x0, width))
        for left, top, right, bottom in boxes
    ]
    masses = np.stack(columns, axis=1) if columns else np.zeros((len(stack), 0))
    safe = np.where(total > 0, total, 1.0)
    return np.where(total[:, None] > 0, masses / safe[:, None], 0.0)
