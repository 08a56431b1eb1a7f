"""The report's baseline maps (evaluation/baselines.py) against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_tutorial.evaluation.baselines import center_map, random_map


@pytest.mark.parametrize("shape", [(9, 16), (20, 7)])
def test_centre_prior_is_a_gaussian_with_sigma_a_quarter_of_each_side(shape):
    height, width = shape
    prior = center_map(shape)
    assert prior.dtype == np.float32 and prior.shape == shape
    y, x = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    expected = np.exp(
        -((y - height / 2) ** 2) / (2 * (height / 4) ** 2) - (x - width / 2) ** 2 / (2 * (width / 4) ** 2)
    )
    np.testing.assert_allclose(prior, expected, rtol=1e-6)


def test_random_map_is_the_seeds_uniform_noise_in_single_precision():
    noise = random_map((5, 6), seed=11)
    assert noise.dtype == np.float32
    np.testing.assert_array_equal(noise, np.random.default_rng(11).random((5, 6)).astype(np.float32))
