"""Grad-CAM's relatives against pytorch-grad-cam, torchcam and captum, and against known answers.

Every variant is checked on raw maps (post-ReLU, layer resolution) relative to the map's peak, and
on min-max normalised maps in absolute terms, within 1e-5. Where a library defines a method
differently, the test says so and checks the library that follows the paper.

The gradient-based tests run over every entry of ``COMBINE``, the table of formulas: a variant added
there is checked against the peers and against its class without a new test.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from captum.attr import GuidedGradCam
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    CAM_METHODS,
    COMBINE,
    GradCAM,
    HiResCAM,
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
from gradcam_tutorial.evaluation.saliency import guided_gradcam
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
# Score-CAM runs one forward pass per channel: two layers per architecture, inputs kept small.
SCORE_CAM_CASES = [
    ("resnet18", 64, "layer3"),
    ("resnet18", 128, "layer4"),
    ("vgg11", 64, "features.7"),
    ("vgg11", 64, "features.10"),
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


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize(("arch", "side", "layers"), TORCHVISION, ids=[case[0] for case in TORCHVISION])
def test_gradient_variants_match_peers_on_torchvision_models(models, grid, method, arch, side, layers):
    x = grid_input(grid[0], side)
    for layer in layers:
        check_against_peers(method, models[arch], layer, x, CLASSES)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_variants_match_peers_on_efficientnet_lite0(effnet, grid, method):
    """Real weights, the image's top three classes; ``_swish`` is called twice, the head's call counts."""
    model, spec = effnet
    x = spec.preprocess(grid[0])
    top = model(x)[0].topk(3).indices.tolist()
    for layer in ("_blocks.15", "_swish"):
        check_against_peers(method, model, layer, x, top)


@pytest.mark.parametrize(("arch", "side", "layer"), SCORE_CAM_CASES, ids=[f"{c[0]}-{c[2]}" for c in SCORE_CAM_CASES])
def test_score_cam_matches_pytorch_grad_cam(models, grid, monkeypatch, arch, side, layer):
    """Same masks as ours once its upsampling aligns pixel centres; torchcam scales before upsampling."""
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeOurs)
    check_against_peers("scorecam", models[arch], layer, grid_input(grid[0], side), CLASSES[:2])


def test_score_cam_matches_pytorch_grad_cam_on_efficientnet_lite0(effnet, grid, monkeypatch):
    model, spec = effnet
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeOurs)
    x = torch.nn.functional.interpolate(spec.preprocess(grid[0]), size=96, mode="bilinear", antialias=True)
    for layer in ("_blocks.14", "_blocks.15"):
        check_against_peers("scorecam", model, layer, x, model(x)[0].topk(2).indices.tolist())


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


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    ("arch", "side", "layer"),
    [("resnet18", 64, "layer3"), ("vgg11", 64, "features.10"), ("densenet121", 64, "features.denseblock2")],
)
def test_guided_gradcam_matches_captum(models, grid, mode, arch, side, layer):
    """captum's GuidedGradCam: its Guided Backprop times its LayerGradCam upsampled to the input."""
    model, x = models[arch], grid_input(grid[0], side)
    ours = torch.from_numpy(guided_gradcam(model, layer, x, 285, mode=mode))
    _, module = resolve_layer(model, layer)
    with preserve_model_state(model):
        explainer = GuidedGradCam(model, module)
        theirs = explainer.attribute(x.clone().requires_grad_(True), target=285, interpolate_mode=mode)
    assert ours.shape == (3, side, side)
    assert ours.abs().max() > 0 and (ours != 0).float().mean() > 0.1
    assert (theirs[0].detach() - ours).abs().max().item() <= TOLERANCE * ours.abs().max().item()


def test_guided_gradcam_is_zero_where_gradcam_is(models, grid):
    """The product vanishes wherever the upsampled Grad-CAM map does (nearest: whole cells)."""
    model, x = models["resnet18"], grid_input(grid[0], 64)
    with GradCAM(model, "layer3") as cam:
        raw = cam.compute(x, 285).maps[0, 0]
    assert (raw == 0).any() and (raw > 0).any()
    guided = torch.from_numpy(guided_gradcam(model, "layer3", x, 285, mode="nearest"))
    cells = torch.nn.functional.interpolate(raw[None, None], size=(64, 64), mode="nearest")[0, 0]
    assert (guided[:, cells == 0] == 0).all()
    assert (guided[:, cells > 0] != 0).any()
    with pytest.raises(ValueError, match="mode"):
        guided_gradcam(model, "layer3", x, 285, mode="bicubic")
