"""Our Grad-CAM against three independent implementations, and against CAM where theory is exact.

Random-weight torchvision models are enough to test the arithmetic, but they easily give flat or
all-zero maps, which would agree trivially; every compared map is first checked for contrast. The
inputs are resized views of the demo grid, small where the architecture allows, one case at 224.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision import transforms

from gradcam_tutorial import GradCAM, normalize_maps
from gradcam_tutorial.evaluation.peers import PEERS, compare_with_peers, peer_maps
from gradcam_tutorial.models import IMAGENET_MEAN, IMAGENET_STD
from gradcam_tutorial.state import hook_snapshot

TOLERANCE = 1e-5

# (architecture, input side, layer, class): layers whose output is not overwritten in place later.
TORCHVISION_CASES = [
    ("resnet18", 224, "layer4", 285),
    ("resnet18", 64, "layer3", 667),
    ("resnet18", 64, "layer2.0", 1),
    ("vgg11", 64, "features.12", 285),  # an in-place ReLU module itself
    ("vgg11", 64, "features.19", 1),
    ("densenet121", 64, "features.denseblock2", 667),
    ("mobilenet_v3_small", 128, "features.8", 1),
    ("mobilenet_v3_small", 128, "features.6", 667),
]
EFFICIENTNET_CASES = [("_swish", None), ("_conv_head", 285), ("_blocks.15", 967)]


@pytest.fixture(scope="module")
def torchvision_models() -> dict[str, nn.Module]:
    built = {}
    for name in sorted({case[0] for case in TORCHVISION_CASES}):
        torch.manual_seed(0)
        built[name] = getattr(torchvision.models, name)(weights=None).eval()
    return built


def grid_input(grid_image, side: int) -> torch.Tensor:
    """The demo grid as an ImageNet-normalised batch of one, ``side`` pixels square."""
    to_tensor = transforms.Compose(
        [
            transforms.Resize((side, side), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return to_tensor(grid_image).unsqueeze(0)


def our_raw_map(model: nn.Module, layer: str, x: torch.Tensor, class_idx: int) -> torch.Tensor:
    with GradCAM(model, layer) as cam:
        return cam.compute(x, class_idx).maps[:, 0]


def assert_has_contrast(raw: torch.Tensor) -> None:
    """A flat map would match any other flat map; refuse to count such a case as evidence."""
    normalized = normalize_maps(raw)
    assert normalized.amax().item() == pytest.approx(1.0), "map is flat"
    assert torch.unique(normalized).numel() >= 4, "map has fewer than four distinct levels"


def assert_matches_peers(model: nn.Module, layer: str, x: torch.Tensor, class_idx: int) -> None:
    ours = our_raw_map(model, layer, x, class_idx)
    assert_has_contrast(ours)
    for peer in PEERS:
        theirs = peer_maps(peer, model, layer, x, class_idx)
        assert theirs.shape == ours.shape, peer
        # Raw maps agree to float32 rounding relative to the map's peak (scales differ wildly
        # between random-weight models), and so do the normalised maps, in absolute terms.
        assert (theirs - ours).abs().max().item() <= TOLERANCE * ours.abs().max().item(), peer
        assert (normalize_maps(theirs) - normalize_maps(ours)).abs().max().item() <= TOLERANCE, peer


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "side", "layer", "class_idx"), TORCHVISION_CASES)
def test_torchvision_models_match_peers(torchvision_models, grid, arch, side, layer, class_idx):
    assert_matches_peers(torchvision_models[arch], layer, grid_input(grid[0], side), class_idx)


@pytest.mark.slow
@pytest.mark.parametrize(("layer", "class_idx"), EFFICIENTNET_CASES)
def test_efficientnet_lite0_matches_peers(effnet, grid, layer, class_idx):
    """Real weights; ``_swish`` is one module called twice (stem and head): the head call counts."""
    model, spec = effnet
    x = spec.preprocess(grid[0])
    if class_idx is None:
        class_idx = int(model(x).argmax())
    assert_matches_peers(model, layer, x, class_idx)


@pytest.mark.slow
def test_compare_with_peers_reports_every_peer(effnet, grid):
    model, spec = effnet
    x = spec.preprocess(grid[0])
    differences = compare_with_peers(model, spec.target_layer, x, 285)
    assert set(differences) == set(PEERS)
    assert all(0.0 <= value <= TOLERANCE for value in differences.values()), differences


@pytest.mark.slow
def test_peers_leave_the_model_as_found(torchvision_models, grid):
    model = torchvision_models["resnet18"]
    model.train()
    hooks = hook_snapshot(model)
    try:
        for peer in PEERS:
            peer_maps(peer, model, "layer3", grid_input(grid[0], 64), 1)
            assert model.training, peer
            assert all(p.grad is None for p in model.parameters()), peer
            assert hook_snapshot(model) == hooks, peer
    finally:
        model.eval()


@pytest.mark.slow
def test_in_place_relu_after_the_layer(torchvision_models, grid):
    """VGG's conv ``features.13`` is followed by ReLU(inplace=True), which overwrites its output.

    Grad-CAM of the conv layer means its pre-ReLU output. We and captum agree on it. pytorch-grad-cam
    and torchcam keep a view of the output that the ReLU then overwrites, so they disagree on this
    model, and agree with us again on a copy whose ReLUs are not in place.
    """
    model = torchvision_models["vgg11"]
    x = grid_input(grid[0], 64)
    ours = our_raw_map(model, "features.13", x, 285)
    assert_has_contrast(ours)
    captum_map = peer_maps("captum", model, "features.13", x, 285)
    assert (captum_map - ours).abs().max().item() <= TOLERANCE * ours.max().item()
    for peer in ("pytorch_grad_cam", "torchcam"):
        assert (normalize_maps(peer_maps(peer, model, "features.13", x, 285)) - normalize_maps(ours)).abs().max() > 0.1
    not_in_place = copy.deepcopy(model)
    for module in not_in_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    assert_matches_peers(not_in_place, "features.13", x, 285)
    assert (our_raw_map(not_in_place, "features.13", x, 285) - ours).abs().max().item() <= TOLERANCE * ours.max().item()


@pytest.mark.slow
def test_gradcam_equals_cam_at_resnet_last_block(torchvision_models, grid):
    """After ``layer4`` ResNet only averages and applies ``fc``, so d y_c / d A_k[i, j] = w_fc[c, k] / (H W)
    everywhere: Grad-CAM weights are the CAM weights scaled by 1/(H W), exactly (Zhou et al. 2016)."""
    model = torchvision_models["resnet18"]
    x = grid_input(grid[0], 224)
    classes = [1, 285, 667, 965]
    activations: list[torch.Tensor] = []
    handle = model.layer4.register_forward_hook(lambda _m, _i, out: activations.append(out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    (features,) = activations
    height, width = features.shape[-2:]
    weights = model.fc.weight.detach()[classes]  # (K, C)
    expected = torch.relu(torch.einsum("kc,bchw->bkhw", weights, features)) / (height * width)
    with GradCAM(model, "layer4") as cam:
        result = cam.compute(x, [classes])
    for k in range(len(classes)):
        assert_has_contrast(result.maps[:, k])
    assert result.maps.shape == expected.shape == (1, len(classes), 7, 7)
    assert (result.maps - expected).abs().max().item() <= 1e-6 * expected.abs().max().item()
