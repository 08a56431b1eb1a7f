"""Seeded percentile-bootstrap intervals (of a mean, of a paired difference of means) and the one
reading of a paired interval that every comparison word in the report uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# --- bootstrap -----------------------------------------------------------------------------------


def bootstrap_ci(values: ArrayLike, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample with replacement, seeded."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap of no values")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap_ci(
    a: ArrayLike, b: ArrayLike, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Interval of the mean of ``a - b`` over the same images (pairs resampled together)."""
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired samples differ in size: {first.shape} vs {second.shape}")
    return bootstrap_ci(first - second, n_boot, seed, level)


def reading(interval: Sequence[float], higher_is_better: bool = True) -> str:
    """``"better"``, ``"worse"`` or ``"same"``: what a paired interval of (a - b) says about a, so that
    no word claims a difference the interval does not show."""
    low, high = interval
    if low <= 0 <= high:
        return "same"
    return "better" if (low > 0) == higher_is_better else "worse"
