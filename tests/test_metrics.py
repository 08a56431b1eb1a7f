"""The report's metrics on synthetic cases whose answers are known in advance."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import regions
from gradcam_tutorial.evaluation import baselines, faithfulness, localisation, saliency, sanity, stats

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


def test_map_of_wrong_size_is_refused(case):
    model, x, _ = case
    with pytest.raises(ValueError, match="shape"):
        faithfulness.perturbation_curves(model, x, [torch.ones(7, 7)], 0)


def test_saliency_rank_orders_high_first_and_breaks_ties_randomly():
    values = torch.tensor([[0.1, 0.9], [0.5, 0.3]])
    assert faithfulness.saliency_rank(values).tolist() == [3, 0, 1, 2]
    flat = faithfulness.saliency_rank(torch.zeros(8, 8), seed=1)
    assert sorted(flat.tolist()) == list(range(64))
    assert flat.tolist() != list(range(64))  # not raster order
    assert torch.equal(flat, faithfulness.saliency_rank(torch.zeros(8, 8), seed=1))


def test_pointing_game_on_synthetic_maps():
    boxes = [(0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64)]
    ys, xs = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xs - 48) ** 2 + (ys - 50) ** 2) / (2 * 6.0**2))
    result = localisation.pointing_game(blob, boxes, own=3)
    assert result.hit and result.peak == (48, 50) and result.peak_region == 3
    assert result.shares.sum() == pytest.approx(1.0) and result.shares[3] > 0.99
    assert not localisation.pointing_game(blob, boxes, own=0).hit
    split = np.zeros((64, 64))
    split[:32, :32], split[32:, 32:] = 1.0, 3.0
    np.testing.assert_allclose(regions.region_shares(split, boxes), [0.25, 0, 0, 0.75])
    empty = localisation.pointing_game(np.zeros((64, 64)), boxes, own=0)
    assert not empty.hit and np.all(empty.shares == 0)


def test_rank_correlation_known_values():
    rng = np.random.default_rng(0)
    a = rng.random((7, 7))
    assert sanity.rank_correlation(a, a) == pytest.approx(1.0)
    assert sanity.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert sanity.rank_correlation(a, np.exp(3 * a)) == pytest.approx(1.0)  # ranks only
    assert sanity.rank_correlation(a, np.zeros_like(a)) == 0.0
    assert sanity.rank_correlation(np.full((7, 7), np.nan), a) == 0.0
    assert sanity.rank_correlation(a * 1e-14, a) == pytest.approx(1.0)  # tiny but not flat: still ranks
    assert sanity.rank_correlation(np.full((7, 7), 1e-14), a) == 0.0
    with pytest.raises(ValueError):
        sanity.rank_correlation(a, np.zeros((3, 3)))


def test_rank_correlation_matches_scipy_spearman_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    for _ in range(5):
        a = np.maximum(rng.normal(size=(48, 40)), 0)  # about half the pixels tie at 0, as after a ReLU
        b = np.round(a + rng.normal(scale=0.5, size=a.shape), 1)  # ties of its own
        expected = spearmanr(a.ravel(), b.ravel()).statistic
        assert sanity.rank_correlation(a, b) == pytest.approx(expected, abs=1e-12)
        prepared = sanity.prepare(a)  # prepared once, compared again: same value
        assert sanity.rank_correlation(prepared, b) == sanity.rank_correlation(a, b)
        assert sanity.structural_similarity(prepared, sanity.prepare(b)) == sanity.structural_similarity(a, b)
    assert sanity.prepare(np.zeros((4, 4))).centred_ranks is None


def test_structural_similarity_known_values():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    assert sanity.structural_similarity(a, a) == pytest.approx(1.0)
    assert sanity.structural_similarity(a, 5 * a + 2) == pytest.approx(1.0)  # scaled to [0, 1] first
    assert sanity.structural_similarity(a, rng.random((32, 32))) < 0.2
    assert sanity.structural_similarity(rng.random((7, 7)), rng.random((7, 7))) < 0.9  # small maps work


def test_average_drop_and_increase_hand_computed():
    full = [0.8, 0.5, 0.4, 0.2]
    explained = [0.4, 0.6, 0.4, 0.05]
    # drops: 0.4/0.8 = 0.5, 0, 0, 0.15/0.2 = 0.75 -> mean 0.3125; only the second rises
    assert faithfulness.average_drop(full, explained) == pytest.approx(0.3125)
    assert faithfulness.increase_in_confidence(full, explained) == pytest.approx(0.25)


def test_masked_probabilities_multiply_the_input(case):
    model, x, truth = case
    probabilities = faithfulness.masked_probabilities(model, x, [truth, 1 - truth, torch.full((SIDE, SIDE), 0.5)], 0)
    np.testing.assert_allclose(probabilities, [sigmoid(GAIN), 0.5, sigmoid(GAIN / 2)], atol=1e-6)


def test_bootstrap_interval_contains_mean_shrinks_and_is_seeded():
    rng = np.random.default_rng(2)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    low, high = stats.bootstrap_ci(small, seed=0)
    assert low < small.mean() < high
    low_l, high_l = stats.bootstrap_ci(large, seed=0)
    assert low_l < large.mean() < high_l
    assert (high_l - low_l) < (high - low) / 4  # ~ 1/sqrt(n): 10x narrower expected
    assert stats.bootstrap_ci(small, seed=0) == (low, high)
    assert stats.bootstrap_ci(small, seed=1) != (low, high)
    assert stats.paired_bootstrap_ci(small + 1.0, small) == pytest.approx((1.0, 1.0))
    paired = stats.paired_bootstrap_ci(large + 0.1 + rng.normal(0, 0.01, 2000), large)
    assert paired[0] > 0 and paired[0] < 0.1 < paired[1]
    with pytest.raises(ValueError):
        stats.bootstrap_ci([])


def test_baseline_maps():
    centre = baselines.center_map((9, 11))
    assert np.unravel_index(np.argmax(centre), centre.shape) == (4, 5) and centre.max() == pytest.approx(1.0)
    np.testing.assert_allclose(centre, centre[::-1, ::-1], atol=1e-6)
    assert centre[0, 0] < 0.05
    a, b = baselines.random_map((7, 7), 1), baselines.random_map((7, 7), 1)
    assert np.array_equal(a, b) and not np.array_equal(a, baselines.random_map((7, 7), 2))
    assert a.min() >= 0 and a.max() <= 1


class Tiny(nn.Module):
    """A small conv net with a stem, a block list, a batch norm and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def test_cascading_randomisation_top_down_cumulative_seeded():
    torch.manual_seed(0)
    model = train_mode_with_batchnorm(Tiny())  # the copies are put in eval mode, the original is not
    model.blocks[0][1].running_mean.fill_(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stages = sanity.randomisation_stages(model)
    assert stages == ["fc", "blocks.2", "blocks.0", "stem"]  # the ReLU has no weights
    seen = []
    with left_as_found(model):  # the original is untouched
        for stage, randomised in sanity.cascading_randomisation(model, seed=5):
            assert not randomised.training
            changed = {
                k.split(".weight")[0].split(".bias")[0]
                for k, v in randomised.state_dict().items()
                if v.dtype.is_floating_point and not torch.equal(v, before[k])
            }
            seen.append((stage, changed))
        final_a = list(sanity.cascading_randomisation(model, seed=5))[-1][1].state_dict()
        final_b = list(sanity.cascading_randomisation(model, seed=5))[-1][1].state_dict()
    assert [s for s, _ in seen] == stages
    assert seen[0][1] == {"fc"}  # only the top stage after one step
    assert {"fc", "blocks.2"} <= seen[1][1] and "stem" not in seen[1][1]  # cumulative
    assert "stem" in seen[-1][1]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert torch.allclose(final_a["blocks.0.1.running_mean"], torch.full((4,), 0.3))  # statistics kept


def test_gradient_saliency_of_a_linear_model():
    weights = torch.zeros(2, 3, 4, 4)
    weights[1, 0, 1, 2], weights[1, 2, 1, 2], weights[1, 1, 3, 0] = 2.0, -5.0, 0.5
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2, bias=False))
    model[1].weight.data = weights.reshape(2, 48)
    grad_map = saliency.gradient_saliency(model, torch.randn(1, 3, 4, 4), 1)
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[1, 2], expected[3, 0] = 5.0, 0.5  # max over channels of |w|
    np.testing.assert_allclose(grad_map, expected)
    assert model[1].weight.grad is None
