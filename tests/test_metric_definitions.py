"""The report's measures against their definitions, worked out here on maps with known answers.

Written after a mutation run (``make mutate``) found these definitions' details untested: the centre
prior's sigma, the edges of a box, maps with little or negative mass, NaN pixels, ties, the SSIM
window on small maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim
from torch import nn

from gradcam_tutorial.evaluation.baselines import center_map, random_map
from gradcam_tutorial.evaluation.faithfulness import saliency_rank
from gradcam_tutorial.evaluation.localisation import energy, pointing_game, pointing_hit
from gradcam_tutorial.evaluation.saliency import guided_gradcam
from gradcam_tutorial.evaluation.sanity import structural_similarity


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


def test_saliency_rank_puts_nan_last_and_breaks_ties_by_the_seed_only():
    values = np.array([0.2, np.nan, 0.9, 0.2, 0.2, 0.5])
    rank = saliency_rank(values)
    assert rank[2] == 0 and rank[5] == 1 and rank[1] == 5  # highest first, NaN last
    assert sorted(rank[[0, 3, 4]].tolist()) == [2, 3, 4]
    assert torch.equal(rank, saliency_rank(values, seed=0))  # the default seed is 0
    orders = {tuple(saliency_rank(values, seed=s)[[0, 3, 4]].tolist()) for s in range(30)}
    assert len(orders) == 6  # every order of the three tied pixels turns up: ties are shuffled
    assert torch.equal(saliency_rank(np.arange(6.0)), torch.arange(5, -1, -1))


@pytest.mark.parametrize(("shape", "window"), [((16, 16), 7), ((6, 9), 5), ((5, 12), 5), ((8, 8), 7), ((4, 9), 3)])
def test_ssim_uses_the_largest_odd_window_up_to_7_that_fits(shape, window):
    rng = np.random.default_rng(0)
    a, b = rng.random(shape), rng.random(shape)
    scaled = [(m - m.min()) / (m.max() - m.min()) for m in (a, b)]
    expected = skimage_ssim(*scaled, data_range=1.0, win_size=window)
    assert structural_similarity(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        structural_similarity(np.zeros((16, 16)) + np.eye(16), np.eye(4))


def test_guided_gradcam_of_one_image_is_float32_bilinear_by_default_with_or_without_a_batch_axis():
    """The Grad-CAM paper's product for one (3, H, W) picture, as the docstring promises."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    picture = torch.rand(3, 12, 10)
    default = guided_gradcam(model, "0", picture, 1)
    assert default.dtype == np.float32 and default.shape == (3, 12, 10)
    np.testing.assert_array_equal(default, guided_gradcam(model, "0", picture[None], 1, mode="bilinear"))
