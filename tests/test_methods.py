"""Grad-CAM's relatives (methods.py) against pytorch-grad-cam and torchcam, against known answers, and
against each paper's formula applied by hand on a tiny network.

Every variant is checked on raw maps (post-ReLU, layer resolution) relative to the map's peak, and
on min-max normalised maps in absolute terms, within 1e-5. Where a library defines a method
differently, the test says so and checks the library that follows the paper.

The gradient-based tests run over every entry of ``COMBINE``, the table of formulas: a variant added
there is checked against the peers and against its class without a new test.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    CAM_METHODS,
    COMBINE,
    GradCAM,
    HiResCAM,
    LayerError,
    ScoreCAM,
    combine_gradcam,
    compute_methods,
    normalize_maps,
    resolve_layer,
)
from gradcam_tutorial import methods as methods_module
from gradcam_tutorial.evaluation.peers import (
    TORCHCAM_CLASSES,
    preserve_model_state,
    pytorch_grad_cam_maps,
    torchcam_maps,
)
from test_oracles import grid_input

TOLERANCE = 1e-5
# the table of gradient-based formulas: each entry is one parameter of every test below that uses it
GRADIENT_METHODS = list(COMBINE)
# torchcam's Grad-CAM++ puts sum_ij(A * G^3) in the alpha denominator where the paper (and
# pytorch-grad-cam) has sum_ij(A) * G^3 at each pixel; its Score-CAM scales each channel before
# upsampling it. Both differ from the paper, so only pytorch-grad-cam is the oracle for those.
TORCHCAM_DIFFERS = {"gradcam++", "scorecam"}

# (architecture, input side, two layers whose output no in-place op overwrites later)
TORCHVISION = [
    ("resnet18", 128, ("layer3", "layer4")),
    ("vgg11", 128, ("features.10", "features.20")),
    # XGrad-CAM divides by each channel's spatial sum: on a layer with signed outputs (a dense block's
    # concatenated convolutions) sums near zero amplify float32 rounding past 1e-5 in any
    # implementation, so DenseNet is compared after a ReLU and at a transition convolution.
    ("densenet121", 64, ("features.transition1.relu", "features.transition2.conv")),
    ("mobilenet_v3_small", 128, ("features.6", "features.8")),
]
CLASSES = [1, 285, 667]
# Score-CAM runs one forward pass per channel (the peer too): one 256-channel layer of ResNet and
# VGG, two narrower ones of DenseNet and MobileNet, inputs kept small.
SCORE_CAM_CASES = [
    ("resnet18", 64, "layer3"),
    ("vgg11", 64, "features.7"),
    ("densenet121", 64, "features.transition1.conv"),
    ("densenet121", 64, "features.transition2.conv"),
    ("mobilenet_v3_small", 128, "features.6"),
    ("mobilenet_v3_small", 128, "features.8"),
]


class _UpsampleLikeOurs(nn.Upsample):
    """pytorch-grad-cam's Score-CAM upsampling (``align_corners=True``) replaced by ours."""

    def __init__(self, size: tuple[int, int]):
        super().__init__(size=size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    built = {}
    for arch, _, _ in TORCHVISION:
        torch.manual_seed(0)
        built[arch] = getattr(torchvision.models, arch)(weights=None).eval()
    return built


def assert_close_maps(ours: torch.Tensor, theirs: torch.Tensor, label: str) -> None:
    assert theirs.shape == ours.shape, label
    assert (theirs - ours).abs().max().item() <= TOLERANCE * ours.abs().max().item(), label
    assert (normalize_maps(theirs) - normalize_maps(ours)).abs().max().item() <= TOLERANCE, label


def has_contrast(raw: torch.Tensor) -> bool:
    """At least four levels after scaling: a flat map would match any other flat map."""
    return torch.unique(normalize_maps(raw)).numel() >= 4


def check_against_peers(method: str, model: nn.Module, layer: str, x: torch.Tensor, classes: list[int]) -> None:
    """Every class's map agrees with each peer's; random weights give the odd flat map (all zero after
    the ReLU), which counts as evidence only if the peer's is as flat, and most maps must have contrast."""
    with CAM_METHODS[method](model, layer) as cam:
        ours = cam.compute(x, [classes] * x.shape[0]).maps
    _, module = resolve_layer(model, layer)
    peers = {"pytorch_grad_cam": pytorch_grad_cam_maps}
    if method in TORCHCAM_CLASSES and method not in TORCHCAM_DIFFERS:
        peers["torchcam"] = torchcam_maps
    contrasted = [has_contrast(ours[:, k]) for k in range(len(classes))]
    assert sum(contrasted) >= max(1, len(classes) - 1), f"{method} {layer}: too many flat maps"
    for peer, maps in peers.items():
        with preserve_model_state(model):
            theirs = maps(method, model, module, x, classes)
        for k, c in enumerate(classes):
            label = f"{method} {peer} {layer} class {c}"
            if contrasted[k]:
                assert_close_maps(ours[:, k], theirs[k], label)
            else:
                assert not has_contrast(theirs[k]), label


@pytest.mark.slow
@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize(("arch", "side", "layers"), TORCHVISION, ids=[case[0] for case in TORCHVISION])
def test_gradient_variants_match_peers_on_torchvision_models(models, grid, method, arch, side, layers):
    x = grid_input(grid[0], side)
    for layer in layers:
        check_against_peers(method, models[arch], layer, x, CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_variants_match_peers_on_efficientnet_lite0(effnet, grid, method):
    """Real weights, the image's top three classes; ``_swish`` is called twice, the head's call counts."""
    model, spec = effnet
    x = spec.preprocess(grid[0])
    top = model(x)[0].topk(3).indices.tolist()
    for layer in ("_blocks.15", "_swish"):
        check_against_peers(method, model, layer, x, top)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "side", "layer"), SCORE_CAM_CASES, ids=[f"{c[0]}-{c[2]}" for c in SCORE_CAM_CASES])
def test_score_cam_matches_pytorch_grad_cam(models, grid, monkeypatch, arch, side, layer):
    """Same masks as ours once its upsampling aligns pixel centres; torchcam scales before upsampling."""
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeOurs)
    check_against_peers("scorecam", models[arch], layer, grid_input(grid[0], side), CLASSES[:2])


@pytest.mark.slow
def test_score_cam_matches_pytorch_grad_cam_on_efficientnet_lite0(effnet, grid, monkeypatch):
    model, spec = effnet
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeOurs)
    x = torch.nn.functional.interpolate(spec.preprocess(grid[0]), size=96, mode="bilinear", antialias=True)
    for layer in ("_blocks.14", "_blocks.15"):
        check_against_peers("scorecam", model, layer, x, model(x)[0].topk(2).indices.tolist())


@pytest.mark.slow
def test_score_cam_differs_from_peers_as_documented(models, grid):
    """Without the patch, pytorch-grad-cam's ``align_corners=True`` and torchcam's order of scaling and
    upsampling each change the masks: the maps differ by more than ten times the tolerance, so the
    patched agreement is not vacuous."""
    model, x = models["resnet18"], grid_input(grid[0], 64)
    with ScoreCAM(model, "layer3") as cam:
        ours = normalize_maps(cam.compute(x, 285).maps[:, 0])
    _, module = resolve_layer(model, "layer3")
    for maps in (pytorch_grad_cam_maps, torchcam_maps):
        with preserve_model_state(model):
            (theirs,) = maps("scorecam", model, module, x, [285])
        assert (normalize_maps(theirs) - ours).abs().max().item() > 10 * TOLERANCE


@pytest.mark.slow
def test_score_cam_batches_and_chunks_do_not_change_maps(models, grid):
    model = models["resnet18"]
    x = torch.cat([grid_input(grid[0], 64), grid_input(grid[0].transpose(0), 64)])
    with ScoreCAM(model, "layer3", batch_size=256) as cam:
        together = cam.compute(x, [[1, 285], [667, 1]]).maps
    with ScoreCAM(model, "layer3", batch_size=7) as cam:
        first = cam.compute(x[:1], [[1, 285]]).maps
        second = cam.compute(x[1:], [[667, 1]]).maps
    torch.testing.assert_close(together, torch.cat([first, second]), rtol=1e-5, atol=1e-6 * float(together.max()))
    with pytest.raises(ValueError, match="batch_size"):
        ScoreCAM(model, "layer3", batch_size=0)


def test_hirescam_equals_gradcam_where_the_gradient_is_constant(models, grid):
    """After ResNet's ``layer4`` come only average pooling and ``fc``: the gradient is the same at every
    position, so HiResCAM and Grad-CAM give the same map; at ``layer3`` it is not, and they differ."""
    model, x = models["resnet18"], grid_input(grid[0], 224)
    for layer, same in (("layer4", True), ("layer3", False)):
        with GradCAM(model, layer) as grad_cam, HiResCAM(model, layer) as hires_cam:
            a, b = grad_cam.compute(x, [CLASSES]).maps, hires_cam.compute(x, [CLASSES]).maps
        gap = (a - b).abs().max().item() / a.abs().max().item()
        assert (gap <= 1e-5) if same else (gap > 1e-2), (layer, gap)


@pytest.mark.slow
def test_compute_methods_equals_each_method_alone(models, grid):
    model, x = models["resnet18"], grid_input(grid[0], 64)
    targets = [[1, 285]]
    together = compute_methods(model, "layer3", x, targets)
    assert list(together) == list(CAM_METHODS)
    for name, result in together.items():
        with CAM_METHODS[name](model, "layer3") as cam:
            alone = cam.compute(x, targets)
        torch.testing.assert_close(result.maps, alone.maps, rtol=0, atol=1e-6 * float(alone.maps.max()))
        assert result.class_indices.tolist() == alone.class_indices.tolist() == targets
    only_two = compute_methods(model, "layer3", x, targets, names=("layercam", "gradcam"))
    assert list(only_two) == ["layercam", "gradcam"]
    for bad in (("gradcam", "gradcam"), ("eigencam",), ()):
        with pytest.raises(ValueError, match="distinct methods"):
            compute_methods(model, "layer3", x, targets, names=bad)


def activation_and_gradients(
    model: nn.Module, layer: str, x: torch.Tensor, classes: list[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The layer's output ``A`` and ``d y_c / d A`` per class from a plain hook and a full autograd pass,
    independent of GradCAM's head-only walk back (the layer's output must not be changed in place)."""
    _, module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (activation,) = captured
    grads = [torch.autograd.grad(logits[:, c].sum(), activation, retain_graph=True)[0] for c in classes]
    return activation.detach(), grads


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_each_table_function_is_its_class_formula(models, grid, method):
    """``COMBINE[method]`` maps ``(A, G)`` to ``(B, h, w)`` before the ReLU, reads its inputs without
    changing them, is the function its class uses, and its ReLU is the class's map, class by class."""
    model, x = models["resnet18"], torch.cat([grid_input(grid[0], 64), grid_input(grid[0].transpose(0), 64)])
    combine = COMBINE[method]
    assert CAM_METHODS[method].combine is combine
    activation, grads = activation_and_gradients(model, "layer3", x, CLASSES)
    with CAM_METHODS[method](model, "layer3") as cam:
        maps = cam.compute(x, [CLASSES] * 2).maps
    for k, grad in enumerate(grads):
        inputs = (activation.clone(), grad.clone())
        raw = combine(*inputs)
        assert torch.equal(inputs[0], activation) and torch.equal(inputs[1], grad), method
        assert raw.shape == (2, *activation.shape[2:]), method
        expected = torch.relu(raw)
        assert has_contrast(expected), f"{method} class {CLASSES[k]}: a flat map would match anything"
        torch.testing.assert_close(maps[:, k], expected, rtol=0, atol=1e-6 * float(expected.max()))


def test_only_table_entries_and_score_cam_are_methods():
    """CAM_METHODS is the table's classes in the table's order, then Score-CAM, which has no gradient."""
    assert list(CAM_METHODS) == [*COMBINE, "scorecam"]
    assert COMBINE["gradcam"] is combine_gradcam is GradCAM.combine
    assert len(set(COMBINE.values())) == len(COMBINE), "two names share one formula"


def test_a_variant_registered_in_the_table_joins_compute_methods(models, grid, monkeypatch):
    """One function and one table entry: compute_methods then computes the new variant from the shared
    walk back, equal to a class that uses the same function, and CAM_METHODS would hold such a class."""

    def combine_negated(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Grad-CAM's map with its sign flipped: after the ReLU, where Grad-CAM's is zero."""
        return -combine_gradcam(activation, grad)

    class NegatedGradCAM(GradCAM):
        combine = staticmethod(combine_negated)

    model, x = models["resnet18"], grid_input(grid[0], 64)
    targets = [[1, 285]]
    with pytest.raises(ValueError, match="distinct methods"):
        compute_methods(model, "layer3", x, targets, names=("gradcam", "negated"))
    monkeypatch.setitem(COMBINE, "negated", combine_negated)
    together = compute_methods(model, "layer3", x, targets, names=("gradcam", "negated", "layercam"))
    assert list(together) == ["gradcam", "negated", "layercam"]
    generated = methods_module._class_of("negated", combine_negated)
    assert issubclass(generated, GradCAM) and generated.combine is combine_negated
    for cls in (NegatedGradCAM, generated):
        with cls(model, "layer3") as cam:
            alone = cam.compute(x, targets).maps
        torch.testing.assert_close(together["negated"].maps, alone, rtol=0, atol=1e-6 * float(alone.max()))
    negated, gradcam = together["negated"].maps, together["gradcam"].maps
    assert (negated > 0).any() and (gradcam > 0).any()
    assert not ((negated > 0) & (gradcam > 0)).any(), "the new entry's function was not the one applied"
    with CAM_METHODS["layercam"](model, "layer3") as cam:  # the others are untouched by the new entry
        torch.testing.assert_close(together["layercam"].maps, cam.compute(x, targets).maps, rtol=0, atol=0)


@pytest.mark.slow
def test_score_cam_class_maps_from_a_given_activation(models, grid):
    """The public step compute_methods uses: from the layer's activation to Score-CAM's maps, equal to
    ``compute``'s, with the masked passes in eval mode and the model left in train mode as found."""
    model = train_mode_with_batchnorm(copy.deepcopy(models["resnet18"]))
    x = grid_input(grid[0], 64)
    with ScoreCAM(model, "layer3") as cam:
        expected = cam.compute(x, [[1, 285]]).maps
        model.eval()
        activation, _ = activation_and_gradients(model, "layer3", x, [])
        model.train()
        with left_as_found(model):
            maps = cam.class_maps(x, activation, torch.tensor([[1, 285]]))
    assert (maps > 0).any()
    torch.testing.assert_close(maps, expected, rtol=0, atol=1e-6 * float(expected.max()))


@pytest.mark.slow
@pytest.mark.parametrize("method", [*CAM_METHODS, "compute_methods"])
def test_every_variant_leaves_the_model_as_found(models, grid, method):
    """Score-CAM's masked passes too: in train mode each would move the batch norms' statistics."""
    model = train_mode_with_batchnorm(copy.deepcopy(models["resnet18"]))
    model.layer1.requires_grad_(False)
    model.layer4.eval()
    model.fc.register_forward_hook(lambda *_: None)
    x = grid_input(grid[0], 64)
    with left_as_found(model):
        if method == "compute_methods":  # the gradient-based ones from one pass
            maps = compute_methods(model, "layer3", x, [[1, 285]], GRADIENT_METHODS)["layercam"].maps
        else:
            with CAM_METHODS[method](model, "layer3") as cam:
                maps = cam.compute(x, [[1, 285]]).maps
    assert maps.shape == (1, 2, 4, 4)


# --- Grad-CAM's relatives on a tiny network, by hand -----------------------------------------------


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


TINY_CLASSES = [[1, 3], [4, 1]]


@pytest.mark.parametrize(("activation_scale", "gradient_scale"), SCALES)
def test_gradient_variants_follow_their_papers_alone_and_together(activation_scale, gradient_scale):
    model = _Tiny(activation_scale, gradient_scale)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    activation, grads = _activation_and_gradients(model, x, TINY_CLASSES)
    names = list(BY_HAND)
    together = compute_methods(model, "features", x, TINY_CLASSES, names=names)
    assert list(together) == names
    for name, formula in BY_HAND.items():
        expected = torch.stack([torch.relu(formula(activation, g)) for g in grads], dim=1)
        with CAM_METHODS[name](model, "features") as cam:
            _assert_maps(cam.compute(x, TINY_CLASSES).maps, expected, f"{name} alone")
        _assert_maps(together[name].maps, expected, f"{name} in compute_methods")
        assert together[name].class_indices.tolist() == TINY_CLASSES


@pytest.mark.parametrize(("activation_scale", "gradient_scale"), [SCALES[0], SCALES[3]])
def test_score_cam_follows_its_definition_alone_and_together(activation_scale, gradient_scale):
    model = _Tiny(activation_scale, gradient_scale)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = _score_cam_by_hand(model, x, TINY_CLASSES)
    with ScoreCAM(model, "features") as cam:
        _assert_maps(cam.compute(x, TINY_CLASSES).maps, expected, "scorecam alone")
    together = compute_methods(model, "features", x, TINY_CLASSES, names=["layercam", "scorecam"])
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


class _Flat(nn.Module):
    """Sets channels 1 and 4 to 0 and channel 2 to 0.5 everywhere: three constant maps."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        a = a.clone()
        a[:, [1, 4]] = 0.0
        a[:, 2] = 0.5
        return a


def test_score_cam_scores_every_constant_channel_with_one_pass_of_the_zero_image():
    """A constant channel's scaled mask is 0, so its masked input is the zero image whatever the
    constant; the maps still follow the definition, channel by channel."""
    model = _Tiny(1.0, 1.0)
    model.features.append(_Flat())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    zero_passes = []
    handle = model.register_forward_pre_hook(lambda _m, inputs: zero_passes.append(not inputs[0].any()))
    try:
        with ScoreCAM(model, "features", batch_size=2) as cam:
            maps = cam.compute(x, TINY_CLASSES).maps
    finally:
        handle.remove()
    # per image: the explained pass is shared; three varying channels in batches of 2, one zero image
    assert zero_passes == [False, False, False, True, False, False, True]
    _assert_maps(maps, _score_cam_by_hand(model, x, TINY_CLASSES), "scorecam with constant channels")


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
