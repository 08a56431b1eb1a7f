"""every_class.py: all classes' Grad-CAM maps from one forward pass, equal to GradCAM's class by class."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from conftest import left_as_found
from gradcam_tutorial import GradCAM, HiResCAM, LayerError
from gradcam_tutorial.every_class import EveryClassCAM
from test_oracles import grid_input


def _assert_same_maps(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal to 1e-5 of the largest map value, and not vacuously: many maps have contrast."""
    assert ours.shape == reference.shape
    assert (reference.flatten(2).amax(-1) > 0).float().mean() > 0.2
    assert (ours - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()


def _one_forward_pass(model: nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls: list[int] = []
    return calls, model.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))


def test_every_class_at_efficientnets_default_layer_from_the_weights_and_by_forward_mode(effnet, grid):
    """All 1000 maps at ``features``, by the classifier's weights (one forward pass) and by forward
    mode, equal to GradCAM's 1000 walks back."""
    model, spec = effnet
    x = spec.preprocess(grid[0])
    with GradCAM(model, spec.target_layer) as cam:
        reference = cam.compute(x, [list(range(1000))]).maps
    for head in (spec.classifier, None):
        calls, handle = _one_forward_pass(model)
        try:
            with left_as_found(model), EveryClassCAM(model, spec.target_layer, head=head) as every:
                result = every.compute(x)
        finally:
            handle.remove()
        if head is not None:
            assert calls == [1]
        assert result.class_indices.tolist() == [list(range(1000))]
        _assert_same_maps(result.maps, reference)


@pytest.mark.slow
def test_every_class_inside_the_network_by_forward_mode(effnet, grid):
    """At ``_blocks.14`` the gradient varies over positions: 150 classes spread over the 1000 for each
    of two images against GradCAM, in chunks of channels that do not divide the 192."""
    model, spec = effnet
    x = torch.cat([spec.preprocess(grid[0]), spec.preprocess(grid[0].transpose(0))])
    classes = [list(range(0, 1000, 7))[:150], list(range(3, 1000, 7))[:150]]
    with GradCAM(model, spec.earlier_layer) as cam:
        reference = cam.compute(x, classes).maps
    with EveryClassCAM(model, spec.earlier_layer, chunk=50) as every:
        _assert_same_maps(every.compute(x, classes).maps, reference)
    with (
        EveryClassCAM(model, spec.earlier_layer, head=spec.classifier) as every,
        pytest.raises(LayerError, match=re.escape("reads 1280 features, but layer '_blocks.14' has 192 channels")),
    ):
        every.compute(x, classes)


def test_resnet_by_its_classifier_by_forward_mode_and_a_variant_by_batched_gradients(grid):
    model = torchvision.models.resnet18().eval()
    x = grid_input(grid[0], 96)
    with GradCAM(model, "layer4") as cam:
        reference = cam.compute(x, [list(range(1000))]).maps
    with EveryClassCAM(model, "layer4", head="fc") as every:
        _assert_same_maps(every.compute(x).maps, reference)
    classes = [list(range(0, 1000, 10))]
    with GradCAM(model, "layer3") as cam, EveryClassCAM(model, "layer3") as every:
        _assert_same_maps(every.compute(x, classes).maps, cam.compute(x, classes).maps)
    # a variant's formula applies to the batched gradients too
    hires = type("EveryClassHiResCAM", (EveryClassCAM,), {"combine": staticmethod(HiResCAM.combine)})
    with HiResCAM(model, "layer3") as cam, hires(model, "layer3", chunk=30) as every:
        _assert_same_maps(every.compute(x, classes).maps, cam.compute(x, classes).maps)


def test_a_head_that_does_not_give_the_logits_is_refused():
    model = torchvision.models.resnet18().eval()
    model.decoy = nn.Linear(512, 1000)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with (
        EveryClassCAM(model, "layer4", head="decoy") as every,
        pytest.raises(
            LayerError, match=re.escape("head 'decoy' applied to the spatial mean of layer 'layer4' does not give")
        ),
    ):
        every.compute(x)
    with pytest.raises(LayerError, match=re.escape("head 'layer4.1.bn2' is a BatchNorm2d, not a torch.nn.Linear")):
        EveryClassCAM(model, "layer4", head="layer4.1.bn2")
    with pytest.raises(ValueError, match="chunk must be at least 1, not 0"):
        EveryClassCAM(model, "layer4", chunk=0)


class _Twice(nn.Module):
    """A tiny classifier that calls one convolution twice: Grad-CAM explains its last call."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.conv = nn.Conv2d(6, 6, 3, padding=1)
        self.side = nn.Conv2d(3, 2, 1)  # runs, but the logits do not depend on it
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        h = torch.relu(self.conv(torch.relu(self.stem(x))))
        h = torch.tanh(self.conv(h))
        return self.fc(h.mean(dim=(2, 3)))


def test_non_square_maps_a_twice_called_layer_and_double_precision_by_every_way(grid):
    """Raw maps (not rescaled) of a non-square input equal GradCAM's by the weights, forward mode and
    batched gradients; a module called twice is shifted at its last call only; a float64 model works."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = grid_input(grid[0], 96)[..., :64]  # 96 x 64: layer3 is 6 x 4, layer4 3 x 2
    classes = [list(range(0, 1000, 25))]
    hires = type("EveryClassHiResCAM", (EveryClassCAM,), {"combine": staticmethod(HiResCAM.combine)})
    for layer, head, kind in (
        ("layer4", "fc", EveryClassCAM),
        ("layer3", None, EveryClassCAM),
        ("layer3", None, hires),
    ):
        reference_kind = HiResCAM if kind is hires else GradCAM
        with reference_kind(model, layer) as cam, kind(model, layer, head=head) as every:
            _assert_same_maps(every.compute(x, classes).maps, cam.compute(x, classes).maps)
    twice = _Twice().double().eval()
    y = torch.randn(2, 3, 9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for kind in (EveryClassCAM, hires):
        reference_kind = HiResCAM if kind is hires else GradCAM
        with reference_kind(twice, "conv") as cam, kind(twice, "conv") as every:
            _assert_same_maps(every.compute(y).maps, cam.compute(y, [list(range(10))] * 2).maps)


def test_forward_mode_warns_nothing_and_an_unused_layer_is_named(tmp_path):
    """Forward mode's internals raise no warning for the caller to see (in a fresh process, where
    torch warns for the first time); a layer the logits do not depend on is a LayerError naming it,
    on the batched-gradient path too."""
    script = (
        "import torch, sys; sys.path.insert(0, sys.argv[1]); from test_every_class import _Twice; "
        "from gradcam_tutorial.every_class import EveryClassCAM; "
        "every = EveryClassCAM(_Twice().eval(), 'conv'); every.compute(torch.randn(1, 3, 8, 8)); every.close()"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(Path(__file__).parent)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    model = _Twice().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    hires = type("EveryClassHiResCAM", (EveryClassCAM,), {"combine": staticmethod(HiResCAM.combine)})
    with hires(model, "side") as every, pytest.raises(LayerError, match="does not depend on layer 'side'"):
        every.compute(x)


def test_a_head_close_to_the_logits_is_refused():
    """The premise check is tight and absolute: a head whose output is 1.5 times the logits does not
    pass (a relative tolerance, or one as large as the logits, would let it through)."""
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.scaled = nn.Linear(512, 1000)
    with torch.no_grad():
        model.scaled.weight.copy_(1.5 * model.fc.weight)
        model.scaled.bias.copy_(1.5 * model.fc.bias)
    with (
        EveryClassCAM(model, "layer4", head="scaled") as every,
        pytest.raises(LayerError, match=re.escape("does not give the model's logits, so the part after the layer")),
    ):
        every.compute(x)
