"""Finding the layer to explain (layers.py): by name, by module, or the last spatial one.

Checked against the README's last ``nn.Conv2d`` of ResNet-18 (``layer4.1.conv2``), output shapes
worked out from the convolution arithmetic, the classic ResNet head whose fixed 7x7 average pool only
fits a 224-pixel input, and a user's own forward hook to see where the probe ran.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    LayerError,
    last_conv2d,
    last_spatial_layer,
    resolve_layer,
)
from gradcam_tutorial.layers import trace_spatial_outputs

# ---------------------------------------------------------------- layers


@pytest.fixture(scope="module")
def resnet18_untrained() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None).eval()


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        # the suggestions are difflib.get_close_matches(name, layer names, n=5, cutoff=0.5)
        (
            "layer4.1.conv3",
            "the model has no layer named 'layer4.1.conv3'; did you mean "
            "layer4.1.conv2, layer4.1.conv1, layer4.0.conv2, layer4.0.conv1, layer3.1.conv2?",
        ),
        ("fc1", "the model has no layer named 'fc1'; did you mean fc, conv1?"),
        ("xyz", "the model has no layer named 'xyz'"),
        ("", "the model has no layer named ''"),  # the whole model is no layer of itself
        (3, "target layer must be a module or a dotted name, not 3"),
        (nn.Conv2d(3, 3, 1), "the given Conv2d module is not part of this model"),
    ],
)
def test_an_unknown_layer_is_refused_with_the_closest_names(resnet18_untrained, layer, message):
    with pytest.raises(LayerError) as caught:
        resolve_layer(resnet18_untrained, layer)
    assert str(caught.value) == message


def test_last_conv2d_is_the_readmes_resnet18_layer_and_a_model_without_one_is_refused():
    from torchvision.models import resnet18

    assert last_conv2d(resnet18(weights=None)) == "layer4.1.conv2"
    with pytest.raises(LayerError, match=re.escape("the model has no nn.Conv2d layer")) as caught:
        last_conv2d(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    assert str(caught.value) == "the model has no nn.Conv2d layer"


def _classic_head() -> nn.Sequential:
    """Downsample by 32, then a fixed ``AvgPool2d(7, stride=1)``, as the first ResNets did.

    That pool only reduces the map to one cell for a 224-pixel input: (224 + 2 - 3) // 32 + 1 = 7;
    a 225-pixel input gives 8 x 8, a 2 x 2 pool output and a classifier that no longer fits.
    """
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, stride=32, padding=1), nn.AvgPool2d(7, stride=1), nn.Flatten(), nn.Linear(8, 2)
    )


def test_the_default_probe_is_one_224_pixel_image():
    model = _classic_head()
    expected = [("0", (1, 8, 7, 7)), ("1", (1, 8, 1, 1)), ("2", (1, 8)), ("3", (1, 2))]
    assert trace_spatial_outputs(model) == expected
    assert last_spatial_layer(model) == "0"


def test_the_input_size_decides_which_maps_are_still_spatial():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    assert last_spatial_layer(model, input_size=4) == "0"  # 4 -> 2 x 2 -> 1 x 1
    assert last_spatial_layer(model, input_size=8) == "1"  # 8 -> 4 x 4 -> 2 x 2


def test_a_map_two_cells_tall_and_one_wide_is_still_spatial():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((2, 1)), nn.Flatten(), nn.Linear(8, 3))
    assert last_spatial_layer(model, input_size=8) == "1"


def test_a_model_without_any_spatial_output_is_refused_with_the_reason():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    message = "no module of this model outputs a spatial (N, C, H, W) feature map"
    with pytest.raises(LayerError, match=re.escape(message)) as caught:
        last_spatial_layer(model, input_size=4)
    assert str(caught.value) == message


class _Pair(nn.Module):
    """Returns a tuple, as attention or recurrent modules do: it has no single output shape."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, 2 * x


class _WithTupleOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = _Pair()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, _ = self.pair(self.conv(x))
        return self.head(first.mean(dim=(2, 3)))


def test_modules_returning_tuples_are_left_out_of_the_trace():
    assert trace_spatial_outputs(_WithTupleOutput(), input_size=8) == [("conv", (1, 4, 8, 8)), ("head", (1, 2))]


def test_a_model_in_train_mode_is_probed_in_eval_mode_and_left_as_found():
    """A batch norm after the pooling cannot normalise a batch of one in train mode (torch raises
    "Expected more than 1 value per channel"), and one before it would move its running statistics:
    the one-image probe runs in eval mode, and the model's flags and buffers are as they were."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(4),
        nn.Linear(4, 2),
    )
    train_mode_with_batchnorm(model)
    with left_as_found(model):
        assert last_spatial_layer(model, input_size=8) == "1"


def test_a_model_without_parameters_is_probed_on_the_cpu():
    model = nn.Sequential(nn.AvgPool2d(2), nn.Flatten())
    assert trace_spatial_outputs(model, input_size=8) == [("0", (1, 3, 4, 4)), ("1", (1, 48))]
    assert last_spatial_layer(model, input_size=8) == "0"


def _devices_seen(model: nn.Module, input_size: int) -> list[torch.device]:
    """Where the model really ran, as a user's own forward pre-hook on it sees the input."""
    seen: list[torch.device] = []
    handle = model.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].device))
    previous = torch.get_default_device()
    torch.set_default_device("meta")  # a caller's default for new tensors that is not the model's device
    try:
        trace_spatial_outputs(model, input_size=input_size)
    finally:
        torch.set_default_device(previous)
        handle.remove()
    return seen


def test_the_probe_runs_on_the_models_device_not_torchs_default_device():
    assert _devices_seen(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), 8) == [torch.device("cpu")]
    assert _devices_seen(nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), 8) == [torch.device("cpu")]
