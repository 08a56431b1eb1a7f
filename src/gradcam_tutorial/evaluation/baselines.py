"""The two maps every explanation has to beat: one that knows nothing, one that knows photographers."""

from __future__ import annotations

import numpy as np


def random_map(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform noise in [0, 1] from its own seeded generator: the map that knows nothing."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def center_map(shape: tuple[int, int], sigma_fraction: float = 0.25) -> np.ndarray:
    """A centred Gaussian (sigma = ``sigma_fraction`` of each side), peak 1: photographers' prior.

    Objects in ImageNet photos sit near the centre, so a method has to beat this to show it looks
    at the image at all.
    """
    height, width = shape
    ys = (np.arange(height) + 0.5 - height / 2) / (sigma_fraction * height)
    xs = (np.arange(width) + 0.5 - width / 2) / (sigma_fraction * width)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)
