"""The faithfulness measures (evaluation/faithfulness.py): deletion and insertion curves, their AUCs,
Average Drop / Increase in Confidence and the saliency ranking, on synthetic models whose answers are
known in advance and against their definitions worked by hand.

* Deletion / insertion (Petsiuk et al. 2018): the class probability as the most salient pixels are
  replaced by the baseline (deletion) or copied into the start picture (insertion), in ``steps``
  equal chunks; the AUC is the trapezoid area over the fraction 0..1. With a linear scorer,
  ``p = sigmoid(<w, x>)``, every point of both curves is worked out here with NumPy.
* Average Drop / Increase in Confidence (Chattopadhay et al. 2018) on the explanation map
  ``x * mask``, the mask clipped to [0, 1].

Also the contracts callers rely on: inputs with a batch axis of one or a single channel, batches no
larger than ``chunk``, the caller's model left untouched, and any array-like NumPy reads as numbers
(float32, float64, text from a CSV file).
"""

from __future__ import annotations

import csv
import io
import math
import re

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gradcam_tutorial.evaluation import baselines, faithfulness
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

SIDE = 32


STEPS = 8


GAIN = 6.0


class RegionModel(nn.Module):
    """Two classes; the logit of class 0 is GAIN times the mean of channel 0 over the top-left quarter.

    Nothing outside that quarter matters, so the truthful saliency map is known exactly.
    """

    def __init__(self, side: int = SIDE):
        super().__init__()
        self.region = torch.zeros(side, side)
        self.region[: side // 2, : side // 2] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = (x[:, 0] * self.region).sum(dim=(1, 2)) / self.region.sum()
        return torch.stack([GAIN * evidence, torch.zeros_like(evidence)], dim=1)


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


@pytest.fixture()
def case():
    model = RegionModel()
    x = torch.ones(3, SIDE, SIDE)
    truth = model.region.clone()
    return model, x, truth


def curves_for(model, x, maps, seed=0):
    # deletion to 0, insertion from 0: both ends are then known exactly (p = 0.5 at logit 0)
    return faithfulness.perturbation_curves(
        model, x, maps, 0, steps=STEPS, seed=seed, insertion_start=torch.zeros_like(x)
    )


def test_perfect_map_reaches_the_analytic_best_curves(case):
    model, x, truth = case
    curves = curves_for(model, x, [truth])
    region = int(truth.sum())
    counts = np.round(np.linspace(0, SIDE * SIDE, STEPS + 1))
    # removing the region first: the logit falls linearly until the region is gone
    expected_deletion = [sigmoid(GAIN * (1 - min(n / region, 1.0))) for n in counts]
    expected_insertion = [sigmoid(GAIN * min(n / region, 1.0)) for n in counts]
    np.testing.assert_allclose(curves.deletion[0], expected_deletion, atol=1e-6)
    np.testing.assert_allclose(curves.insertion[0], expected_insertion, atol=1e-6)
    np.testing.assert_allclose(curves.fractions, np.linspace(0, 1, STEPS + 1))


def test_perfect_beats_random_beats_inverted(case):
    model, x, truth = case
    random = torch.from_numpy(baselines.random_map((SIDE, SIDE), seed=3))
    curves = curves_for(model, x, [truth, random, 1 - truth])
    deletion, insertion = curves.deletion_auc, curves.insertion_auc
    assert deletion[0] < deletion[1] < deletion[2]
    assert insertion[0] > insertion[1] > insertion[2]
    # a random order removes the region in proportion: logit ~ GAIN * (1 - f), a known curve
    fractions = np.linspace(0, 1, STEPS + 1)
    random_expected = faithfulness.curve_auc(np.array([sigmoid(GAIN * (1 - f)) for f in fractions]))
    assert abs(deletion[1] - random_expected) < 0.05
    # the inverted map removes the region last: the class keeps its full score for 3/4 of the way
    assert deletion[2] > 0.85


class LinearModel(nn.Module):
    """Two classes; the logit of class 0 is a fixed random weighting of the input's pixels.

    The weights are 0 within 5 pixels of the border, so the score never reads a pixel whose 11x11
    blur window leaves the picture: the expected numbers do not depend on the border rule (RISE's
    code pads with zeros, torchvision reflects).
    """

    def __init__(self, side: int = SIDE, seed: int = 0):
        super().__init__()
        weights = np.zeros((3, side, side))
        inner = np.random.default_rng(seed).normal(size=(3, side - 10, side - 10))
        weights[:, 5:-5, 5:-5] = 4.0 * inner / np.linalg.norm(inner)
        self.weights = torch.from_numpy(weights).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = (x * self.weights).sum(dim=(1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def test_curve_endpoints_are_shared_and_exact():
    """Deletion starts at the untouched input and ends at the all-removed one; insertion starts from
    RISE's Gaussian blur (kernel 11, sigma 5), here made by OpenCV, and ends at the input."""
    model = LinearModel()
    x = torch.from_numpy(np.random.default_rng(1).random((3, SIDE, SIDE))).float()
    weights = model.weights.numpy().astype(np.float64)
    pixels = x.numpy()
    start = np.stack([cv2.GaussianBlur(channel, (11, 11), sigmaX=5.0, sigmaY=5.0) for channel in pixels])
    full = sigmoid(float((weights * pixels).sum()))
    blurred_p = sigmoid(float((weights * start).sum()))
    assert abs(full - blurred_p) > 0.05, "the blur must change the score, or the check below proves nothing"
    curves = faithfulness.perturbation_curves(model, x, [np.arange(SIDE * SIDE).reshape(SIDE, SIDE), 1 - x[0]], 0)
    np.testing.assert_allclose(curves.deletion[:, 0], full, atol=1e-5)
    np.testing.assert_allclose(curves.deletion[:, -1], 0.5, atol=1e-6)  # removed = 0: logit 0
    np.testing.assert_allclose(curves.insertion[:, 0], blurred_p, atol=1e-5)
    np.testing.assert_allclose(curves.insertion[:, -1], full, atol=1e-5)


@pytest.mark.parametrize(("steps", "chunk"), [(8, 4), (5, 3), (1, 4)])
def test_curves_score_each_perturbed_input_once_in_order_and_in_chunks(steps, chunk):
    """The scorer sees the three endpoints, then per map deletion's and insertion's inner steps,
    exactly as :func:`perturbed_inputs` makes them (bit for bit), ``chunk`` at a time."""
    seen: list[torch.Tensor] = []

    def recording(batch: torch.Tensor) -> torch.Tensor:
        assert batch.shape[0] <= chunk
        seen.append(batch.clone())
        return LinearModel()(batch)

    generator = np.random.default_rng(2)
    x = torch.from_numpy(generator.random((3, SIDE, SIDE))).float()
    maps = [torch.from_numpy(generator.random((SIDE, SIDE))), np.zeros((SIDE, SIDE))]  # the second: all ties
    curves = faithfulness.perturbation_curves(recording, x, maps, 0, steps=steps, seed=4, chunk=chunk)
    removed, start = torch.zeros_like(x), faithfulness.blurred(x)
    expected = [x, removed, start]
    for heatmap in maps:
        rank = faithfulness.saliency_rank(heatmap, seed=4)
        expected += [*faithfulness.perturbed_inputs(removed, x, rank, steps)[1:-1]]
        expected += [*faithfulness.perturbed_inputs(x, start, rank, steps)[1:-1]]
    scored = torch.cat(seen)
    assert [len(batch) for batch in seen[:-1]] == [chunk] * (len(seen) - 1)
    assert torch.equal(scored, torch.stack(expected))
    assert curves.deletion.shape == curves.insertion.shape == (2, steps + 1)


def test_perturbed_inputs_step_from_start_to_x():
    x, start = torch.ones(3, 2, 3), torch.zeros(3, 2, 3)
    rank = torch.tensor([4, 0, 5, 1, 3, 2])
    inputs = faithfulness.perturbed_inputs(x, start, rank, steps=2)
    assert torch.equal(inputs[0], start) and torch.equal(inputs[-1], x)
    # step 1 of 2: the 3 first-ranked pixels (ranks 0, 1, 2) come from x
    np.testing.assert_array_equal(inputs[1, 0].numpy(), [[0, 1, 0], [1, 0, 1]])


def test_curve_auc_of_known_shapes():
    assert faithfulness.curve_auc(np.ones(5)) == pytest.approx(1.0)
    assert faithfulness.curve_auc(np.linspace(0, 1, 9)) == pytest.approx(0.5)
    assert faithfulness.curve_auc(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])) == pytest.approx([0.25, 0.25])


def test_masked_probabilities_multiply_the_input(case):
    model, x, truth = case
    probabilities = faithfulness.masked_probabilities(model, x, [truth, 1 - truth, torch.full((SIDE, SIDE), 0.5)], 0)
    np.testing.assert_allclose(probabilities, [sigmoid(GAIN), 0.5, sigmoid(GAIN / 2)], atol=1e-6)


# --- against the definitions, on 4x4 inputs worked by hand ----------------------------------------


TINY = 4  # 16 pixels: 4 and 8 steps change exactly 4 and 2 pixels each


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
    weights = rng.normal(0.0, 0.6, (channels, TINY, TINY))
    image = rng.random((channels, TINY, TINY)).astype(np.float32)
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
    saliency = rng.permutation(TINY * TINY).reshape(TINY, TINY).astype(np.float64)  # no ties
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
    x, flat, zeros = torch.from_numpy(image), np.zeros((TINY, TINY)), torch.zeros(3, TINY, TINY)
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
        maps = [np.zeros((TINY, TINY)), np.zeros((3, 3))]
        perturbation_curves(model, torch.from_numpy(image), maps, 0, insertion_start=torch.zeros(3, TINY, TINY))


def test_the_model_never_gets_a_batch_larger_than_chunk():
    model, _, image, _ = setup(3)
    x = torch.from_numpy(image)
    saliency, start = np.arange(16.0).reshape(TINY, TINY), torch.zeros_like(x)
    perturbation_curves(model, x, [saliency], 0, steps=4, insertion_start=start, chunk=2)
    # 3 shared endpoints + 3 inner points of each curve = 9 images
    assert model.batches == [2, 2, 2, 2, 1]
    model.batches.clear()
    masked_probabilities(model, x, [np.ones((TINY, TINY))] * 3, 0, chunk=1)
    assert model.batches == [1, 1, 1]


@pytest.mark.parametrize("batched", [False, True], ids=["CHW", "1CHW"])
def test_explanation_map_clips_float64_masks_to_the_unit_interval(batched):
    """``O_c`` is the probability on ``x * clip(mask, 0, 1)``; NumPy's default float64 masks are fine."""
    model, weights, image, rng = setup(3)
    wild = rng.choice([-2.0, 0.0, 0.25, 0.5, 1.0, 3.0], size=(TINY, TINY))
    masks = [wild, np.full((TINY, TINY), 0.5), np.full((TINY, TINY), 4.0)]
    x = torch.from_numpy(image)[None] if batched else torch.from_numpy(image)
    expected = [probability(weights, image * np.clip(mask, 0, 1)) for mask in masks]
    np.testing.assert_allclose(masked_probabilities(model, x, masks, 0), expected, atol=1e-6)


def test_saliency_rank_orders_high_first_nan_last_and_ties_by_one_seeded_shuffle():
    """Highest first, NaN after every number (negative ones too). Pixels of equal value come in a
    seeded random order: every order turns up over the seeds, the default seed is 0, and within any
    group of equal values the pixels follow the order a flat map of that size and seed gets, so the
    flat regions of two maps are treated alike. (Merged from three files' tests of the same rule.)"""
    assert saliency_rank(torch.tensor([[0.1, 0.9], [0.5, 0.3]])).tolist() == [3, 0, 1, 2]
    assert torch.equal(saliency_rank(np.arange(6.0)), torch.arange(5, -1, -1))
    assert saliency_rank(np.array([-1.0, np.nan, 0.5, -2.0])).tolist() == [1, 3, 0, 2]
    values = np.array([0.2, np.nan, 0.9, 0.2, 0.2, 0.5])
    rank = saliency_rank(values)
    assert rank[2] == 0 and rank[5] == 1 and rank[1] == 5  # highest first, NaN last
    assert sorted(rank[[0, 3, 4]].tolist()) == [2, 3, 4]
    assert torch.equal(rank, saliency_rank(values, seed=0))  # the default seed is 0
    orders = {tuple(saliency_rank(values, seed=s)[[0, 3, 4]].tolist()) for s in range(30)}
    assert len(orders) == 6  # every order of the three tied pixels turns up: ties are shuffled
    flat = saliency_rank(np.zeros((16, 16)), seed=3).numpy()
    assert sorted(flat.tolist()) == list(range(256)) and flat.tolist() != list(range(256))  # not raster order
    assert np.array_equal(flat, saliency_rank(np.zeros((16, 16)), seed=3).numpy())
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
