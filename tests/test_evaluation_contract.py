"""The sanity check, the localisation geometry and Grad-CAM's relatives against their definitions.

Written after a mutation run (``make mutate``) found details of these untested. Every expected value
is worked out here independently of the package:

* sanity check (Adebayo et al. 2018): Spearman correlation against ``scipy.stats.spearmanr``, SSIM
  against scikit-image, cascading randomisation against layers re-initialised by hand under the
  documented seeds (stage ``i`` under ``seed + i``, top stage first);
* localisation (Zhang et al. 2016): box masks on grids whose pixel centres fall exactly on box edges
  and at exactly the tolerance's distance;
* the CAM variants on a tiny network, with the activation and its gradient taken by plain torch hooks
  and each paper's formula applied in float64, at scales where the small constants matter.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity as skimage_ssim
from torch import nn

from conftest import left_as_found
from gradcam_tutorial import CAM_METHODS, LayerError, ScoreCAM, compute_methods
from gradcam_tutorial.evaluation.localisation import TOLERANCE, box_mask
from gradcam_tutorial.evaluation.saliency import gradient_saliency, guided_backprop
from gradcam_tutorial.evaluation.sanity import (
    cascading_randomisation,
    rank_correlation,
    reinitialise,
    structural_similarity,
)

# --- sanity check: map similarity ----------------------------------------------------------------


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


# --- sanity check: cascading randomisation -------------------------------------------------------


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


# --- saliency: the plain and the guided gradient, by hand ---------------------------------------


class _ReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


def test_gradient_maps_of_one_unbatched_image_are_single_precision_channel_maxima():
    model = _ReluNet()
    image = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(9))  # (C, H, W), no batch
    inputs = image[None].clone().requires_grad_(True)
    pre = model.conv(inputs)
    (plain,) = torch.autograd.grad(model.fc(torch.relu(pre).flatten(1))[0, 2], inputs, retain_graph=True)
    # Springenberg et al. 2015: at the ReLU only positive gradients pass, where its input was positive
    upstream = model.fc.weight[2].reshape(1, 4, 6, 6)
    (guided,) = torch.autograd.grad(pre, inputs, grad_outputs=upstream.clamp(min=0) * (pre > 0))
    for ours, grad in ((gradient_saliency(model, image, 2), plain), (guided_backprop(model, image, 2), guided)):
        assert ours.dtype == np.float32 and ours.shape == (6, 6)
        np.testing.assert_allclose(ours, grad[0].abs().amax(dim=0).detach().numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(gradient_saliency(model, image, 2), guided_backprop(model, image, 2))


# --- localisation: box masks ---------------------------------------------------------------------


def test_box_edges_are_half_open_where_pixel_centres_fall_on_them():
    # a 20x20 photo on a 10x10 grid: grid pixel centres at original 1, 3, 5, ..., 19
    mask = box_mask((10, 10), (20, 20), [(3, 5, 9, 11)])
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:5, 1:4] = True  # x in {3, 5, 7} (9 is the right edge, outside), y in {5, 7, 9}
    assert np.array_equal(mask, expected)


def test_tolerance_is_euclidean_distance_to_the_box_and_small_tolerances_count():
    # grid = photo: pixel centres at i + 0.5; box [2, 5) x [2, 5)
    box = [(2, 2, 5, 5)]
    strict = np.zeros((10, 10), dtype=bool)
    strict[2:5, 2:5] = True
    assert np.array_equal(box_mask((10, 10), (10, 10), box), strict)
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=0), strict)
    # within 1 pixel: one more row and column on every side, corners (0.71 away) included
    one = np.zeros((10, 10), dtype=bool)
    one[1:6, 1:6] = True
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=1), one)
    # within exactly 0.5: the sides' centres (0.5 away) are in, the corners (0.71 away) are not
    half = one.copy()
    half[[1, 1, 5, 5], [1, 5, 1, 5]] = False
    assert np.array_equal(box_mask((10, 10), (10, 10), box, tolerance=0.5), half)
    assert TOLERANCE == 15.0


# --- Grad-CAM's relatives on a tiny network, by hand ---------------------------------------------


class _Positive(nn.Module):
    """Softplus times a scale: activations that are positive everywhere, at a chosen size."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) * self.scale


class _Tiny(nn.Module):
    """8x8 input -> ``features`` (6 channels, 4x4) -> flatten -> 5 logits.

    The head is linear in the flattened activation, so d logit_c / d A is the class's weight row:
    it varies over space and has both signs. One weight is exactly 1.
    """

    def __init__(self, activation_scale: float, gradient_scale: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), _Positive(activation_scale))
        self.fc = nn.Linear(6 * 4 * 4, 5)
        with torch.no_grad():
            self.fc.weight.mul_(gradient_scale)
            self.fc.weight[1, 17] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def _activation_and_gradients(model: nn.Module, x: torch.Tensor, classes: list[list[int]]):
    """Target layer's activation and d logit / d activation per requested class, via a plain hook."""
    captured = []
    handle = model.features.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    activation = captured[0]
    grads = []
    for k in range(len(classes[0])):
        score = sum(logits[b, row[k]] for b, row in enumerate(classes))
        (grad,) = torch.autograd.grad(score, activation, retain_graph=True)
        grads.append(grad.double())
    return activation.detach().double(), grads


def _gradcam_pp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # Chattopadhay et al. 2018, eq. 19 with exp(score): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3),
    # 1e-6 added to the denominator as pytorch-grad-cam does; w_k = sum_ij alpha ReLU(g)
    alpha = g**2 / (2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3 + 1e-6)
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1)


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # Fu et al. 2020: w_k = sum_ij (A_ij / sum_ab A_ab) g_ij, 1e-7 added as pytorch-grad-cam does
    weights = (a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7) * g).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1)


BY_HAND = {
    # Selvaraju et al. 2017: channel weights are the spatial mean of the gradient
    "gradcam": lambda a, g: (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1),
    "gradcam++": _gradcam_pp,
    # Draelos & Carin 2020: the gradient times the activation, pixel by pixel
    "hirescam": lambda a, g: (g * a).sum(dim=1),
    "xgradcam": _xgradcam,
    # Jiang et al. 2021: the positive gradient times the activation, pixel by pixel
    "layercam": lambda a, g: (g.clamp(min=0) * a).sum(dim=1),
}


def _score_cam_by_hand(model: nn.Module, x: torch.Tensor, classes: list[list[int]]) -> torch.Tensor:
    # Wang et al. 2020, as the peers compute it: each channel upsampled (bilinear, centres aligned),
    # min-max scaled with 1e-8 added to the span, multiplies the input; the class's logits of the
    # masked inputs, softmaxed over channels, weight the channels
    activation, _ = _activation_and_gradients(model, x, classes)
    maps = []
    with torch.no_grad():
        for b, row in enumerate(classes):
            a = activation[b].float()
            scores = torch.zeros(a.shape[0], len(row), dtype=torch.float64)
            for k in range(a.shape[0]):
                mask = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
                scores[k] = model((x[b] * mask)[None])[0, row].double()
            weights = torch.softmax(scores, dim=0)  # (C, K)
            maps.append(torch.relu(torch.einsum("ck,chw->khw", weights, activation[b])))
    return torch.stack(maps)


def _assert_maps(ours: torch.Tensor, expected: torch.Tensor, label: str) -> None:
    assert ours.shape == expected.shape, label
    assert expected.amax() > 0, label
    difference = (ours.double() - expected).abs().max().item()
    assert difference <= 1e-4 * expected.abs().max().item(), label


# activations of ~1 or ~1e-6 (where XGrad-CAM's 1e-7 and Score-CAM's 1e-8 matter) and gradients of ~0.1
# or ~1e-3 (where Grad-CAM++'s 1e-6 matters); a head scaled up by 1e6 keeps Score-CAM's logits apart
SCALES = [(1.0, 1.0), (1e-6, 1.0), (1.0, 1e-2), (1e-6, 1e6)]
CLASSES = [[1, 3], [4, 1]]


@pytest.mark.parametrize(("activation_scale", "gradient_scale"), SCALES)
def test_gradient_variants_follow_their_papers_alone_and_together(activation_scale, gradient_scale):
    model = _Tiny(activation_scale, gradient_scale)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    activation, grads = _activation_and_gradients(model, x, CLASSES)
    names = list(BY_HAND)
    together = compute_methods(model, "features", x, CLASSES, names=names)
    assert list(together) == names
    for name, formula in BY_HAND.items():
        expected = torch.stack([torch.relu(formula(activation, g)) for g in grads], dim=1)
        with CAM_METHODS[name](model, "features") as cam:
            _assert_maps(cam.compute(x, CLASSES).maps, expected, f"{name} alone")
        _assert_maps(together[name].maps, expected, f"{name} in compute_methods")
        assert together[name].class_indices.tolist() == CLASSES


@pytest.mark.parametrize(("activation_scale", "gradient_scale"), [SCALES[0], SCALES[3]])
def test_score_cam_follows_its_definition_alone_and_together(activation_scale, gradient_scale):
    model = _Tiny(activation_scale, gradient_scale)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = _score_cam_by_hand(model, x, CLASSES)
    with ScoreCAM(model, "features") as cam:
        _assert_maps(cam.compute(x, CLASSES).maps, expected, "scorecam alone")
    together = compute_methods(model, "features", x, CLASSES, names=["layercam", "scorecam"])
    _assert_maps(together["scorecam"].maps, expected, "scorecam in compute_methods")


@contextlib.contextmanager
def _batch_sizes(model: nn.Module) -> Iterator[list[int]]:
    """The batch size of every forward pass of ``model`` inside the ``with`` block."""
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: sizes.append(inputs[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()


def test_score_cam_runs_masked_inputs_in_batches_of_four_by_default_and_checks_the_size():
    model = _Tiny(1.0, 1.0)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with _batch_sizes(model) as sizes:
        ScoreCAM(model, "features").compute(x, 2)
        ScoreCAM(model, "features", batch_size=1).compute(x, 2)
    # one explained pass, then the 6 channels' masked inputs: 4 + 2, and one by one
    assert sizes == [1, 4, 2, 1, 1, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match=re.escape("batch_size must be at least 1, not 0")):
        ScoreCAM(model, "features", batch_size=0)


def test_compute_methods_without_score_cam_runs_the_model_once():
    model = _Tiny(1.0, 1.0)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with _batch_sizes(model) as calls:
        compute_methods(model, "features", x, [[0, 1]], names=["gradcam", "hirescam"])
    assert calls == [1]


class _SideBranch(nn.Module):
    """A layer that runs but feeds nothing: the logits do not depend on it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.side = nn.Conv2d(3, 2, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_only_gradient_methods_need_the_logits_to_depend_on_the_layer():
    model = _SideBranch()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    message = "the model's output does not depend on layer 'side'"
    for names in (["gradcam"], ["layercam", "scorecam"]):
        with pytest.raises(LayerError, match=re.escape(message)):
            compute_methods(model, "side", x, 0, names=names)
    # Score-CAM masks the input with the layer's channels and needs no gradient: equal logits for
    # the masked inputs give every channel the same weight
    maps = compute_methods(model, "side", x, 0, names=["scorecam"])["scorecam"].maps
    assert maps.shape == (1, 1, 4, 4) and maps.amax() > 0


def test_compute_methods_names_the_methods_it_knows():
    x = torch.zeros(1, 3, 8, 8)
    expected = (
        "names must be distinct methods from gradcam, gradcam++, hirescam, xgradcam, layercam, scorecam; "
        "got ['gradcam', 'gradcam']"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        compute_methods(_Tiny(1.0, 1.0), "features", x, 0, names=["gradcam", "gradcam"])
    with pytest.raises(ValueError, match=re.escape(expected.replace("'gradcam']", "'ablationcam']"))):
        compute_methods(_Tiny(1.0, 1.0), "features", x, 0, names=["gradcam", "ablationcam"])
