"""Faithfulness measures and bootstrap intervals against their definitions, on tiny inputs worked by hand.

* Deletion / insertion (Petsiuk et al. 2018): the class probability as the most salient pixels are
  replaced by the baseline (deletion) or copied into the start picture (insertion), in ``steps``
  equal chunks; the AUC is the trapezoid area over the fraction 0..1. With a linear scorer,
  ``p = sigmoid(<w, x>)``, every point of both curves is worked out here with NumPy.
* Average Drop / Increase in Confidence (Chattopadhay et al. 2018) on the explanation map
  ``x * mask``, the mask clipped to [0, 1].
* Percentile bootstrap: the interval at level L spans the (1 - L) / 2 and (1 + L) / 2 percentiles
  of the resampled means, so with two resamples it is a known blend of the two means.

Also the contracts callers rely on: inputs with a batch axis of one or a single channel, the
documented defaults, batches no larger than ``chunk``, the caller's model left untouched, and any
array-like NumPy reads as numbers (float32, float64, text from a CSV file).
Written after a mutation run found these details untested.
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
import torch
from torch import nn

from gradcam_tutorial.evaluation.faithfulness import (
    average_drop,
    channels_last_copy,
    curve_auc,
    increase_in_confidence,
    masked_probabilities,
    perturbation_curves,
    saliency_rank,
)
from gradcam_tutorial.evaluation.stats import bootstrap_ci, paired_bootstrap_ci

SIDE = 4  # 16 pixels: 4 and 8 steps change exactly 4 and 2 pixels each


class LinearScorer(nn.Module):
    """Two classes from one float32 linear layer: logit 0 = <w, x>, logit 1 = 0; records batch sizes."""

    def __init__(self, weights: np.ndarray):
        super().__init__()
        self.fc = nn.Linear(weights.size, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0] = torch.from_numpy(weights.ravel()).float()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.fc(x.flatten(1))


def probability(weights: np.ndarray, image: np.ndarray) -> float:
    """Softmax probability of class 0 for logits (<w, x>, 0), in double precision."""
    return float(1.0 / (1.0 + np.exp(-(weights * image).sum())))


def setup(channels: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.6, (channels, SIDE, SIDE))
    image = rng.random((channels, SIDE, SIDE)).astype(np.float32)
    return LinearScorer(weights), weights, image, rng


def hand_curves(weights, image, saliency, removed, start, steps):
    """Deletion and insertion curves by the definition: the top-k pixels by saliency, k = n * i / steps."""
    order = np.argsort(-saliency.ravel(), kind="stable")
    deletion, insertion = [], []
    for step in range(steps + 1):
        chosen = np.zeros(saliency.size, dtype=bool)
        chosen[order[: saliency.size * step // steps]] = True
        chosen = chosen.reshape(saliency.shape)
        deletion.append(probability(weights, np.where(chosen, removed, image)))
        insertion.append(probability(weights, np.where(chosen, image, start)))
    return np.array(deletion), np.array(insertion)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("batched", [False, True], ids=["CHW", "1CHW"])
def test_curves_replace_pixels_in_saliency_order_with_the_given_baseline_and_start(channels, batched):
    """Every point of both curves and both AUCs, for a colour or grey input with or without a batch axis."""
    model, weights, image, rng = setup(channels)
    saliency = rng.permutation(SIDE * SIDE).reshape(SIDE, SIDE).astype(np.float64)  # no ties
    removed = np.full(image.shape, 0.3, dtype=np.float32)  # a grey baseline, not the default 0
    start = rng.random(image.shape).astype(np.float32)
    x = torch.from_numpy(image)[None] if batched else torch.from_numpy(image)
    baseline, begin = torch.from_numpy(removed), torch.from_numpy(start)
    curves = perturbation_curves(model, x, [saliency], 0, steps=4, deletion_baseline=baseline, insertion_start=begin)
    deletion, insertion = hand_curves(weights, image, saliency, removed, start, 4)
    np.testing.assert_array_equal(curves.fractions, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curves.deletion, [deletion], atol=1e-6)
    np.testing.assert_allclose(curves.insertion, [insertion], atol=1e-6)
    np.testing.assert_allclose(curves.deletion_auc, [np.trapezoid(deletion, dx=0.25)], atol=1e-6)
    np.testing.assert_allclose(curves.insertion_auc, [np.trapezoid(insertion, dx=0.25)], atol=1e-6)


def test_curves_default_to_eight_steps_and_seed_zero_and_the_seed_orders_ties():
    model, _, image, _ = setup(3)
    x, flat, zeros = torch.from_numpy(image), np.zeros((SIDE, SIDE)), torch.zeros(3, SIDE, SIDE)
    default = perturbation_curves(model, x, [flat], 0, insertion_start=zeros)
    explicit = perturbation_curves(model, x, [flat], 0, steps=8, seed=0, insertion_start=zeros)
    np.testing.assert_array_equal(default.fractions, np.linspace(0, 1, 9))
    np.testing.assert_array_equal(default.deletion, explicit.deletion)
    np.testing.assert_array_equal(default.insertion, explicit.insertion)
    other = perturbation_curves(model, x, [flat], 0, steps=8, seed=1, insertion_start=zeros)
    assert not np.allclose(other.deletion, explicit.deletion)  # a flat map's order is the seed's


def test_a_map_of_the_wrong_size_is_refused_with_both_sizes_named():
    model, _, image, _ = setup(3)
    message = "saliency map 1 has shape (3, 3), input is (4, 4)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        maps = [np.zeros((SIDE, SIDE)), np.zeros((3, 3))]
        perturbation_curves(model, torch.from_numpy(image), maps, 0, insertion_start=torch.zeros(3, SIDE, SIDE))


def test_the_model_never_gets_a_batch_larger_than_chunk():
    model, _, image, _ = setup(3)
    x = torch.from_numpy(image)
    saliency, start = np.arange(16.0).reshape(SIDE, SIDE), torch.zeros_like(x)
    perturbation_curves(model, x, [saliency], 0, steps=4, insertion_start=start, chunk=2)
    # 3 shared endpoints + 3 inner points of each curve = 9 images
    assert model.batches == [2, 2, 2, 2, 1]
    model.batches.clear()
    masked_probabilities(model, x, [np.ones((SIDE, SIDE))] * 3, 0, chunk=1)
    assert model.batches == [1, 1, 1]


@pytest.mark.parametrize("batched", [False, True], ids=["CHW", "1CHW"])
def test_explanation_map_clips_float64_masks_to_the_unit_interval(batched):
    """``O_c`` is the probability on ``x * clip(mask, 0, 1)``; NumPy's default float64 masks are fine."""
    model, weights, image, rng = setup(3)
    wild = rng.choice([-2.0, 0.0, 0.25, 0.5, 1.0, 3.0], size=(SIDE, SIDE))
    masks = [wild, np.full((SIDE, SIDE), 0.5), np.full((SIDE, SIDE), 4.0)]
    x = torch.from_numpy(image)[None] if batched else torch.from_numpy(image)
    expected = [probability(weights, image * np.clip(mask, 0, 1)) for mask in masks]
    np.testing.assert_allclose(masked_probabilities(model, x, masks, 0), expected, atol=1e-6)


def test_saliency_rank_puts_nan_after_negative_values():
    assert saliency_rank(np.array([-1.0, np.nan, 0.5, -2.0])).tolist() == [1, 3, 0, 2]


def test_ties_follow_one_seeded_order_of_the_pixels_whatever_the_map():
    """Ties are broken by a seeded random permutation: within any group of equal values the pixels
    come in the order a flat map of that size and seed gets, so flat regions of two maps are treated alike."""
    flat = saliency_rank(np.zeros((16, 16)), seed=3).numpy()
    high = np.random.default_rng(0).random((16, 16)) > 0.5
    rank = saliency_rank(high.astype(float), seed=3).numpy()
    for group in (high.ravel(), ~high.ravel()):
        np.testing.assert_array_equal(np.argsort(rank[group]), np.argsort(flat[group]))
    assert rank[high.ravel()].max() < rank[~high.ravel()].min()


def test_auc_of_a_float32_curve_is_the_double_precision_trapezoid():
    curves = np.random.default_rng(4).random((3, 17)).astype(np.float32)
    expected = np.trapezoid(curves.astype(np.float64), dx=1 / 16, axis=-1)
    np.testing.assert_allclose(curve_auc(curves), expected, rtol=1e-14)


def test_numbers_read_as_text_from_a_csv_file_are_accepted():
    table = "full,explained,saliency\n0.8,0.4,0.3\n0.5,0.6,-1.5\n0.4,0.4,2\n0.2,0.05,0.7\n"
    rows = list(csv.reader(io.StringIO(table)))[1:]
    full, explained, saliency = ([row[i] for row in rows] for i in range(3))
    # drops 0.4/0.8, 0, 0, 0.15/0.2 -> mean 0.3125; only the second photo rises
    assert average_drop(full, explained) == pytest.approx(0.3125, rel=1e-12)
    assert increase_in_confidence(full, explained) == 0.25
    assert saliency_rank(saliency).tolist() == [2, 3, 0, 1]
    assert curve_auc(saliency) == pytest.approx((0.3 - 1.5 * 2 + 2 * 2 + 0.7) / 6, rel=1e-12)
    numbers = [float(value) for value in full]
    assert bootstrap_ci(full, n_boot=50) == bootstrap_ci(numbers, n_boot=50)
    assert paired_bootstrap_ci(full, explained, n_boot=50) == paired_bootstrap_ci(
        numbers, [float(value) for value in explained], n_boot=50
    )


def test_bootstrap_of_float32_values_is_computed_in_double_precision():
    values = np.random.default_rng(6).random(25).astype(np.float32)
    assert bootstrap_ci(values, n_boot=200) == bootstrap_ci(values.astype(np.float64), n_boot=200)


def test_interval_is_the_percentiles_of_the_resampled_means():
    """With two resamples the level-L interval is ``m0 + t (m1 - m0)`` and ``m1 - t (m1 - m0)``,
    t = (1 - L) / 2 (linear percentiles); level 1 gives the two means themselves."""
    data = [0.0, 1.0, 2.0, 7.0]
    low, high = bootstrap_ci(data, n_boot=2, seed=0, level=1.0)
    assert low < high and (4 * low).is_integer() and (4 * high).is_integer()  # means of four draws
    for level in (0.95, 0.8, 0.5):
        tail = (1 - level) / 2
        expected = (low + tail * (high - low), high - tail * (high - low))
        assert bootstrap_ci(data, n_boot=2, seed=0, level=level) == pytest.approx(expected, rel=1e-12)
    first, second = [3.0, 1.0, 4.0, 1.0, 5.0], [2.0, 7.0, 1.0, 8.0, 2.0]
    low, high = paired_bootstrap_ci(first, second, n_boot=2, seed=0, level=1.0)
    assert low < high and (5 * low).is_integer() and (5 * high).is_integer()  # means of five differences
    expected = (low + 0.25 * (high - low), high - 0.25 * (high - low))
    assert paired_bootstrap_ci(first, second, n_boot=2, seed=0, level=0.5) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_defaults_are_ten_thousand_resamples_seed_zero_and_95_percent():
    rng = np.random.default_rng(7)
    a, b = rng.random(30), rng.random(30)
    assert bootstrap_ci(a) == bootstrap_ci(a, n_boot=10_000, seed=0, level=0.95)
    assert paired_bootstrap_ci(a, b) == paired_bootstrap_ci(a, b, n_boot=10_000, seed=0, level=0.95)
    assert bootstrap_ci(a, n_boot=10_001) != bootstrap_ci(a)  # the check can see a different count


def test_bootstrap_of_one_value_is_that_value_and_bad_input_is_refused_by_name():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError, match=f"^{re.escape('bootstrap of no values')}$"):
        bootstrap_ci([])
    message = "paired samples differ in size: (3,) vs (2,)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        paired_bootstrap_ci([1.0, 2.0, 3.0], [1.0, 2.0])


def test_channels_last_copy_scores_alike_and_leaves_the_callers_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    model.train()
    copy = channels_last_copy(model)
    assert all(module.training for module in model.modules())  # the caller's model is still training
    assert not any(module.training for module in copy.modules())
    assert copy[0].weight.is_contiguous(memory_format=torch.channels_last)  # channels-last weights
    assert model[0].weight.is_contiguous() and not model[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 6, 6)
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(copy(x.contiguous(memory_format=torch.channels_last)), expected)
