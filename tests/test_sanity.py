"""The sanity check's measures (evaluation/sanity.py) against their definitions (Adebayo et al. 2018).

Spearman correlation against ``scipy.stats.spearmanr``, SSIM against scikit-image, cascading
randomisation against layers re-initialised by hand under the documented seeds (stage ``i`` under
``seed + i``, top stage first), and the caller's model left as found.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity as skimage_ssim
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial.evaluation import sanity
from gradcam_tutorial.evaluation.sanity import (
    cascading_randomisation,
    rank_correlation,
    reinitialise,
    structural_similarity,
)

# --- map similarity --------------------------------------------------------------------------------


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


def _minmax(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return (values - values.min()) / (values.max() - values.min())


def test_rank_correlation_is_spearmans_rho_and_a_flat_map_ranks_nothing():
    rng = np.random.default_rng(3)
    a, b = rng.random((6, 7)), rng.random((6, 7))
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    # a map whose spread is a billionth of its level still ranks its pixels
    faint = 1.0 + 1e-9 * np.arange(12.0).reshape(3, 4)
    assert rank_correlation(faint, np.arange(12.0).reshape(3, 4)) == pytest.approx(1.0)
    assert rank_correlation(faint, -np.arange(12.0)) == pytest.approx(-1.0)
    assert rank_correlation(np.full((3, 4), 2.5), np.arange(12.0)) == 0.0


def test_rank_correlation_ranks_the_float64_pixels_it_checked_for_flatness():
    # 2**53 and 2**53 + 1 are one float64 number: as float64 pixels they tie, also when the map comes
    # in extended precision (NumPy's longdouble), which tells them apart
    big = np.array([0, 2**53, 2**53 + 1, 2**54], dtype=np.longdouble)
    other = np.array([0, 2, 1, 3], dtype=np.longdouble)
    expected = spearmanr(big.astype(np.float64), other.astype(np.float64)).statistic
    assert expected == pytest.approx(np.sqrt(0.9))  # ranks (1, 2.5, 2.5, 4) against (1, 3, 2, 4)
    assert rank_correlation(big, other) == pytest.approx(expected, abs=1e-12)
    assert rank_correlation(other, big) == pytest.approx(expected, abs=1e-12)


def test_rank_correlation_of_maps_of_different_size_names_both_sizes():
    with pytest.raises(ValueError, match=re.escape("maps differ in size: 12 vs 16 pixels")):
        rank_correlation(np.zeros((3, 4)), np.zeros((4, 4)))


def test_structural_similarity_known_values():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    assert sanity.structural_similarity(a, a) == pytest.approx(1.0)
    assert sanity.structural_similarity(a, 5 * a + 2) == pytest.approx(1.0)  # scaled to [0, 1] first
    assert sanity.structural_similarity(a, rng.random((32, 32))) < 0.2
    assert sanity.structural_similarity(rng.random((7, 7)), rng.random((7, 7))) < 0.9  # small maps work


def test_ssim_scales_single_precision_maps_in_double_precision():
    rng = np.random.default_rng(8)
    a, b = rng.random((9, 11), dtype=np.float32), rng.random((9, 11), dtype=np.float32)
    expected = skimage_ssim(_minmax(a), _minmax(b), data_range=1.0, win_size=7)
    assert structural_similarity(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_ssim_of_one_dimensional_profiles_uses_a_seven_pixel_window():
    x = np.linspace(0.0, 1.0, 9)
    a, b = x, x**2
    expected = skimage_ssim(_minmax(a), _minmax(b), data_range=1.0, win_size=7)
    assert structural_similarity(a, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("shape", "window"), [((16, 16), 7), ((6, 9), 5), ((5, 12), 5), ((8, 8), 7), ((4, 9), 3)])
def test_ssim_uses_the_largest_odd_window_up_to_7_that_fits(shape, window):
    rng = np.random.default_rng(0)
    a, b = rng.random(shape), rng.random(shape)
    scaled = [(m - m.min()) / (m.max() - m.min()) for m in (a, b)]
    expected = skimage_ssim(*scaled, data_range=1.0, win_size=window)
    assert structural_similarity(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        structural_similarity(np.zeros((16, 16)) + np.eye(16), np.eye(4))


# --- cascading randomisation ------------------------------------------------------------------------


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


class _Block(nn.Module):
    """A block that, like many model zoos' blocks, re-initialises its layer in its own hook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), _Block())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _trained_net() -> _Net:
    torch.manual_seed(123)
    net = _Net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # "learned" weights, unlike any fresh initialisation
    return net


def _fresh(layer: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The layer's default initialisation drawn right after ``torch.manual_seed(seed)``."""
    layer = copy.deepcopy(layer)
    torch.manual_seed(seed)
    layer.reset_parameters()
    return {k: v.clone() for k, v in layer.state_dict().items()}


def _layer_of(net: nn.Module, stage: str) -> nn.Module:
    return net.get_submodule(stage + ".conv" if stage == "blocks.2" else stage)


def _assert_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_cascading_randomisation_goes_top_down_cumulatively_under_seed_plus_depth_from_zero():
    net = _trained_net()
    seen = []
    # the model itself is never touched: the shared guard (weights, buffers, train mode, hooks)
    with left_as_found(net):
        for depth, (stage, randomised) in enumerate(cascading_randomisation(net)):
            seen.append(stage)
            # this stage is freshly initialised under seed 0 + depth, every stage above it stays so
            for upper, name in enumerate(seen):
                _assert_state(_layer_of(randomised, name).state_dict(), _fresh(_layer_of(net, name), upper))
            # the stages below are still the trained ones
            for name in ("stem", "blocks.0", "blocks.2", "fc"):
                if name not in seen:
                    _assert_state(_layer_of(randomised, name).state_dict(), _layer_of(net, name).state_dict())
            assert depth == len(seen) - 1
        assert seen == ["fc", "blocks.2", "blocks.0", "stem"]


def test_cascading_randomisation_takes_the_stages_and_seed_it_is_given():
    net = _trained_net()
    stages = []
    for depth, (stage, randomised) in enumerate(cascading_randomisation(net, seed=7, stages=["stem", "fc"])):
        stages.append(stage)
        _assert_state(_layer_of(randomised, stage).state_dict(), _fresh(_layer_of(net, stage), 7 + depth))
        _assert_state(randomised.blocks.state_dict(), net.blocks.state_dict())
    assert stages == ["stem", "fc"]


def test_reinitialise_resets_each_layer_once_and_keeps_batch_norm_statistics():
    block = nn.Sequential(_Block(), nn.BatchNorm2d(4))
    with torch.no_grad():
        block[1].weight.fill_(3.0)
        block[1].bias.fill_(2.0)
        block[1].running_mean.fill_(0.5)
    torch.manual_seed(4)
    reinitialise(block)
    # the block's own hook would draw the convolution a second time: only the layer's own counts
    _assert_state(block[0].conv.state_dict(), _fresh(block[0].conv, 4))
    assert torch.equal(block[1].weight, torch.ones(4)) and torch.equal(block[1].bias, torch.zeros(4))
    assert torch.equal(block[1].running_mean, torch.full((4,), 0.5))
