"""The core's promises, each checked against a fact stated outside the package.

Layers: the README's last ``nn.Conv2d`` of ResNet-18 (``layer4.1.conv2``), output shapes worked out
here from the convolution arithmetic, the classic ResNet head whose fixed 7x7 average pool only fits
a 224-pixel input, and a user's own forward hook to see where the probe ran. Models: torchvision's
own error for a checkpoint with no tensors, ``torch.load``'s own error texts and its
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch, a checkpoint tagged as saved on a GPU, torchvision's own
transforms and the published ImageNet statistics for preprocessing. Grad-CAM: the formula of
Selvaraju et al. (ReLU of the channels weighted by the spatial mean of the class logit's gradient)
worked out with plain torch hooks on small models, and the full text of every refusal.
"""

from __future__ import annotations

import io
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.transforms import functional as TF

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    GradCAM,
    LayerError,
    ModelError,
    TargetError,
    WeightsUnavailableError,
    create_model,
    explain,
    get_spec,
    last_conv2d,
    last_spatial_layer,
    normalize_maps,
    resolve_layer,
)
from gradcam_tutorial.layers import trace_spatial_outputs
from gradcam_tutorial.models import UnknownModelError, load_weights
from test_cam import _SharedActivation

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the published statistics

# ---------------------------------------------------------------- layers


@pytest.fixture(scope="module")
def resnet18_untrained() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None).eval()


def test_a_layer_is_named_by_dotted_name_or_given_as_the_module_itself(resnet18_untrained):
    model = resnet18_untrained
    assert resolve_layer(model, "layer4.1.conv2") == ("layer4.1.conv2", model.layer4[1].conv2)
    assert resolve_layer(model, "layer4.1.conv2")[1] is model.layer4[1].conv2
    name, module = resolve_layer(model, model.layer3)
    assert name == "layer3" and module is model.layer3


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


# ---------------------------------------------------------------- models and weights


def _offline_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch home, and torch's downloader raising URLError as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch-home" / "hub"

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def test_resnet18_weights_missing_offline_gives_the_whole_instruction(tmp_path, monkeypatch):
    checkpoints = _offline_torch_home(tmp_path, monkeypatch)
    cached = checkpoints / "resnet18-f37072fd.pth"
    expected = (
        f"ResNet-18 ImageNet weights are not on this machine ({cached}) and could not be downloaded "
        f"from {URL} (URLError). On a connected machine run once: "
        "python -c 'import torchvision; torchvision.models.resnet18(weights=\"IMAGENET1K_V1\")', "
        f"or copy resnet18-f37072fd.pth into {checkpoints}; offline, use model 'efficientnet_lite0'."
    )
    with pytest.raises(WeightsUnavailableError) as caught:
        create_model("resnet18")
    assert str(caught.value) == expected


def test_resnet18_damaged_cached_weights_quote_the_error_on_one_line_cut_at_200_characters(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    checkpoints = _offline_torch_home(tmp_path, monkeypatch)
    checkpoints.mkdir(parents=True)
    cached = checkpoints / "resnet18-f37072fd.pth"
    torch.save({}, cached)  # a loadable file with no tensors: torchvision's load_state_dict refuses it
    with pytest.raises(RuntimeError) as own:
        resnet18(weights=None).load_state_dict({})
    quoted = " ".join(str(own.value).split())
    assert len(quoted) > 200 and "\n" in str(own.value)  # long and multi-line: both rules are exercised
    expected = (
        f"ResNet-18 weights in {cached} could not be loaded (RuntimeError: {quoted[:200]}); the file is damaged "
        f"or not a checkpoint: delete it to download it again from {URL}"
    )
    with pytest.raises(WeightsUnavailableError) as caught:
        create_model("resnet18")
    assert str(caught.value) == expected


def _saved_on_a_gpu(path: Path) -> None:
    """A checkpoint whose storage is tagged ``cuda:0``, as torch.save writes one from a GPU.

    Made on any machine: the legacy format pickles the location as a length-prefixed string.
    """
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(3.0)}, buffer, _use_new_zipfile_serialization=False)
    cpu_tag, gpu_tag = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    assert buffer.getvalue().count(cpu_tag) == 1
    path.write_bytes(buffer.getvalue().replace(cpu_tag, gpu_tag))


def test_weights_saved_on_a_gpu_load_onto_the_cpu(tmp_path):
    _saved_on_a_gpu(tmp_path / "gpu.pth")
    weight = load_weights(tmp_path / "gpu.pth")["weight"]
    assert weight.device == torch.device("cpu")
    assert torch.equal(weight, torch.arange(3.0))


class _RunsCodeOnLoad:
    """Unpickling this creates ``marker``: a stand-in for a checkpoint that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_code_in_a_checkpoint_is_refused_even_when_the_environment_asks_torch_for_unsafe_loads(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    torch.save({"weight": torch.zeros(2), "extra": _RunsCodeOnLoad(marker)}, tmp_path / "evil.pth")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # makes torch.load's default unsafe
    with pytest.raises(WeightsUnavailableError):
        load_weights(tmp_path / "evil.pth")
    assert not marker.exists()


def test_unloadable_weights_name_the_file_the_error_type_and_torchs_message(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception) as own:
        torch.load(path, map_location="cpu", weights_only=True)
    expected = f"{path}: not a loadable weights file ({type(own.value).__name__}: {own.value})"
    with pytest.raises(WeightsUnavailableError) as caught:
        load_weights(path)
    assert str(caught.value) == expected


def test_an_unknown_model_name_lists_the_choices():
    with pytest.raises(UnknownModelError) as caught:
        get_spec("vgg16")
    assert str(caught.value) == "unknown model 'vgg16'; choose one of efficientnet_lite0, resnet18"
    assert isinstance(caught.value, ValueError) and caught.value.__suppress_context__


def _photo(width: int, height: int) -> Image.Image:
    rng = torch.Generator().manual_seed(width * 7919 + height)
    pixels = torch.randint(0, 256, (height, width, 3), generator=rng, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_resnet18_sees_the_whole_photo_stretched_to_224_with_imagenet_statistics():
    spec = get_spec("resnet18")
    photo = _photo(80, 50)
    assert spec.visible_box(photo.size) == (0.0, 0.0, 80.0, 50.0)
    assert spec.pixel_box(photo.size) == (0, 0, 80, 50)
    post = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    x = spec.preprocess(photo)
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x, post(photo).unsqueeze(0), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("size", "box", "pixels"),
    [
        # 0.875 of the shorter side, centred: side 262.5 of a 400 x 300 photo, margins 68.75 and 18.75
        ((400, 300), (68.75, 18.75, 331.25, 281.25), (69, 19, 331, 281)),
        ((300, 400), (18.75, 68.75, 281.25, 331.25), (19, 69, 281, 331)),
        # under a pixel wide: rounding would leave nothing, one pixel is kept
        ((1000, 1), (499.5625, 0.0625, 500.4375, 0.9375), (500, 0, 501, 1)),
        ((1, 1000), (0.0625, 499.5625, 0.9375, 500.4375), (0, 500, 1, 501)),
        ((3, 3), (0.1875, 0.1875, 2.8125, 2.8125), (0, 0, 3, 3)),
    ],
)
def test_efficientnet_sees_the_centred_224_of_256_square(size, box, pixels):
    spec = get_spec("efficientnet_lite0")
    assert spec.visible_box(size) == pytest.approx(box, abs=1e-12)
    assert spec.pixel_box(size) == pixels


def test_efficientnet_input_is_the_crop_resized_to_224_and_scaled_by_its_own_half_statistics():
    spec = get_spec("efficientnet_lite0")
    photo = _photo(400, 300)
    left, top, right, bottom = 69, 19, 331, 281  # the whole-pixel box worked out above
    expected = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    )(TF.crop(photo, top, left, bottom - top, right - left))
    torch.testing.assert_close(spec.preprocess(photo), expected.unsqueeze(0), rtol=0, atol=0)


# ---------------------------------------------------------------- Grad-CAM


class _Tiny(nn.Module):
    """Stem, a strided block (the explained layer), ReLU, global average pool and a 4-class head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Conv2d(6, 5, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(5, classes)
        self.unused = nn.Conv2d(3, 3, 1)  # registered, never called
        self.side = nn.Conv2d(6, 2, 1)  # called, but the output ignores it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        self.side(x)
        return self.head(self.act(self.block(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(3)
    return _Tiny().eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    torch.manual_seed(4)
    return torch.randn(2, 3, 8, 8)


def grad_cam_by_hand(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[list[int]]) -> torch.Tensor:
    """Selvaraju et al.: ReLU(sum_k w_k A_k), w_k the spatial mean of d logit_c / d A_k; plain hooks."""
    kept: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (activation,) = kept
    maps = torch.zeros(x.shape[0], len(classes[0]), *activation.shape[2:])
    for b, row in enumerate(classes):
        for k, c in enumerate(row):
            (grad,) = torch.autograd.grad(logits[b, c], activation, retain_graph=True)
            weights = grad[b].mean(dim=(1, 2))
            maps[b, k] = torch.relu((weights[:, None, None] * activation[b]).sum(dim=0)).detach()
    return maps


def test_maps_scores_and_classes_follow_the_grad_cam_formula(tiny, batch):
    classes = [[1, 3], [2, 0]]
    expected = grad_cam_by_hand(tiny, tiny.block, batch, classes)
    with torch.no_grad():
        logits = tiny(batch)
    assert (expected > 0).any() and (expected == 0).any(), "the ReLU must matter for the test to mean something"
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, classes)
    assert result.maps.shape == (2, 2, 4, 4) and result.maps.dtype == torch.float32
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)
    assert result.class_indices.tolist() == classes
    torch.testing.assert_close(result.logits, logits)
    torch.testing.assert_close(result.probabilities, torch.softmax(logits, dim=1).gather(1, torch.tensor(classes)))
    low = expected.amin(dim=(2, 3), keepdim=True)
    high = expected.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(result.normalized(), (expected - low) / (high - low), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("targets", "rows"),
    [
        (None, "top"),
        (2, [[2], [2]]),
        (np.int64(2), [[2], [2]]),
        ([1, 3], [[1], [3]]),
        ((1, 3), [[1], [3]]),
        (torch.tensor([1, 3]), [[1], [3]]),
        (torch.tensor([[1, 2], [3, 0]]), [[1, 2], [3, 0]]),
        ([[1, 2], (3, 0)], [[1, 2], [3, 0]]),
    ],
)
def test_every_accepted_target_form_names_the_classes_it_means(tiny, batch, targets, rows):
    if rows == "top":
        with torch.no_grad():
            rows = tiny(batch).argmax(dim=1, keepdim=True).tolist()
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, targets)
    assert result.class_indices.tolist() == rows
    torch.testing.assert_close(result.maps, grad_cam_by_hand(tiny, tiny.block, batch, rows), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("targets", "size", "message"),
    [
        ([1], 2, "targets [1] do not fit a batch of 2"),
        ([], 2, "targets [] do not fit a batch of 2"),
        ([[1, 2], [3]], 2, "targets [[1, 2], [3]] do not fit a batch of 2"),
        ([[], []], 2, "targets [[], []] do not fit a batch of 2"),
        ("ab", 2, "targets 'ab' do not fit a batch of 2"),
        (True, 2, "targets True do not fit a batch of 2"),
        (torch.zeros(1, 1, 1, dtype=torch.long), 1, "do not fit a batch of 1; for several classes of one image"),
        ([1, 2], 1, "targets [1, 2] do not fit a batch of 1; for several classes of one image, nest them: [[a, b]]"),
        ([1.5, 2], 2, "class index must be an integer, not 1.5"),
        ([[True], [1]], 2, "class index must be an integer, not True"),
        (4, 2, "class index 4 is out of range 0..3"),
        ([0, -1], 2, "class index -1 is out of range 0..3"),
    ],
)
def test_targets_that_do_not_fit_are_refused_with_the_reason(tiny, batch, targets, size, message):
    with GradCAM(tiny, "block") as cam, pytest.raises(TargetError) as caught:
        cam.compute(batch[:size], targets)
    if message.startswith("do not fit"):
        assert message in str(caught.value)
    else:
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("photo.png", TypeError, "input must be a torch.Tensor, not str"),
        (torch.zeros(3, 8), ValueError, "input must be (C, H, W) or (B, C, H, W); got shape (3, 8)"),
        (torch.full((1, 3, 8, 8), float("nan")), ValueError, "input contains NaN or infinite values"),
        (torch.full((1, 3, 8, 8), float("inf")), ValueError, "input contains NaN or infinite values"),
    ],
)
def test_inputs_that_are_not_images_are_refused_with_the_reason(tiny, given, error, message):
    with GradCAM(tiny, "block") as cam, pytest.raises(error) as caught:
        cam.compute(given)
    assert str(caught.value) == message


def test_one_image_may_come_unbatched_and_in_double_precision(tiny, batch):
    expected = grad_cam_by_hand(tiny, tiny.block, batch[1:], [[2]])
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch[1].double(), 2)
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("unused", "layer 'unused' did not run during the forward pass"),
        ("side", "the model's output does not depend on layer 'side'"),
        ("head", "layer 'head' has no spatial output (shape (1, 4)); choose a convolutional layer or block"),
    ],
)
def test_a_layer_grad_cam_cannot_use_is_refused_with_the_reason(tiny, batch, layer, message):
    with GradCAM(tiny, layer) as cam, pytest.raises(LayerError) as caught:
        cam.compute(batch[:1])
    assert str(caught.value) == message


def test_a_layer_returning_a_tuple_is_refused_with_the_reason():
    with GradCAM(_WithTupleOutput(), "pair") as cam, pytest.raises(LayerError) as caught:
        cam.compute(torch.zeros(1, 3, 8, 8))
    assert str(caught.value) == "layer 'pair' returns tuple, not a tensor"


def test_compute_heatmap_gives_one_images_normalised_maps_with_plain_python_numbers(tiny, batch):
    x = batch[:1]
    raw = grad_cam_by_hand(tiny, tiny.block, x, [[1, 3]])[0]
    normalised = (raw - raw.amin(dim=(1, 2), keepdim=True)) / (raw.amax(dim=(1, 2)) - raw.amin(dim=(1, 2)))[
        :, None, None
    ]
    with torch.no_grad():
        probabilities = torch.softmax(tiny(x), dim=1)[0]
    with GradCAM(tiny, "block") as cam:
        heatmap, index, probability = cam.compute_heatmap(x, 3)
        unscaled, _, _ = cam.compute_heatmap(x, np.int64(3), normalize=False)
        stack, indices, stack_probabilities = cam.compute_heatmap(x, [1, 3])
        top, top_index, _ = cam.compute_heatmap(x)
        with pytest.raises(TargetError) as boolean:
            cam.compute_heatmap(x, True)
        with pytest.raises(ValueError) as batched:
            cam.compute_heatmap(batch)
    assert type(heatmap) is np.ndarray and heatmap.dtype == np.float32 and heatmap.shape == (4, 4)
    np.testing.assert_allclose(heatmap, normalised[1].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unscaled, raw[1].numpy(), rtol=1e-5, atol=1e-6)
    assert type(index) is int and index == 3
    assert type(probability) is float and probability == pytest.approx(float(probabilities[3]), rel=1e-6)
    assert stack.dtype == np.float32 and stack.shape == (2, 4, 4)
    np.testing.assert_allclose(stack, normalised.numpy(), rtol=1e-5, atol=1e-6)
    assert indices == [1, 3] and all(type(p) is float for p in stack_probabilities)
    assert stack_probabilities == pytest.approx([float(probabilities[1]), float(probabilities[3])], rel=1e-6)
    assert top_index == int(probabilities.argmax())
    assert top.shape == (4, 4)
    assert str(boolean.value) == "class index must be an integer, not True"
    assert str(batched.value) == "compute_heatmap explains one image; got a batch of 2, use compute()"


def test_a_closed_gradcam_says_so(tiny, batch):
    with GradCAM(tiny, "block") as cam:
        pass
    with pytest.raises(RuntimeError) as caught:
        cam.compute(batch)
    assert str(caught.value) == "this GradCAM was closed; create a new one"


def test_weights_made_under_inference_mode_get_one_clear_error(batch):
    with torch.inference_mode():
        model = _Tiny().eval()
    with GradCAM(model, "block") as cam, pytest.raises(ModelError) as caught:
        cam.compute(batch)
    assert str(caught.value) == (
        "the model's weights were created under torch.inference_mode(), and autograd cannot use "
        "them for Grad-CAM's gradient; create or load the model outside inference_mode"
    )


# ---------------------------------------------------------------- explain: from a photo to maps on it


@pytest.fixture(scope="module")
def thousand_classes() -> nn.Module:
    """A small stand-in with ImageNet's 1000 outputs, so class names and top-k are real."""
    torch.manual_seed(5)
    return _Tiny(classes=1000).eval()


def test_explain_reports_classes_names_scores_top_k_and_where_the_maps_lie(thousand_classes):
    from torchvision.models import ResNet18_Weights

    names = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # torchvision's ImageNet class names
    spec = get_spec("efficientnet_lite0")
    photo = _photo(400, 300)
    x = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    )(TF.crop(photo, 19, 69, 262, 262)).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(thousand_classes(x)[0], dim=0)
    raw = grad_cam_by_hand(thousand_classes, thousand_classes.block, x, [[285, 1]])[0]
    low, high = raw.amin(dim=(1, 2), keepdim=True), raw.amax(dim=(1, 2), keepdim=True)
    top = torch.argsort(probabilities, descending=True)[:3].tolist()

    result = explain(photo, thousand_classes, spec, classes=["Egyptian cat", 1], layer="block", top_k=3)

    assert result.image is photo and result.layer == "block"
    assert result.class_indices == [285, 1] and result.class_names == [names[285], names[1]] == [
        "Egyptian cat",
        "goldfish",
    ]
    assert result.probabilities == pytest.approx([float(probabilities[285]), float(probabilities[1])], rel=1e-5)
    assert [(i, n) for i, n, _ in result.top_k] == [(i, names[i]) for i in top]
    assert [p for _, _, p in result.top_k] == pytest.approx([float(probabilities[i]) for i in top], rel=1e-5)
    assert all(type(i) is int and type(p) is float for i, _, p in result.top_k)
    assert result.small_heatmaps.dtype == np.float32 and result.small_heatmaps.shape == (2, 112, 112)
    np.testing.assert_allclose(result.small_heatmaps, ((raw - low) / (high - low)).numpy(), rtol=1e-4, atol=1e-5)
    assert result.box == pytest.approx((68.75, 18.75, 331.25, 281.25)) and result.pixel_box == (69, 19, 331, 281)
    assert result.heatmap(1).shape == (300, 400) and result.heatmaps.shape == (2, 300, 400)
    np.testing.assert_array_equal(result.heatmaps[1], result.heatmap(1))
    assert result.heatmap(0)[:, :60].max() == 0  # left of the box the network never looked


def test_explain_shows_an_rgb_pngs_transparent_colour_as_white(thousand_classes, tmp_path):
    pixels = np.zeros((40, 50, 3), np.uint8)
    pixels[:, 25:] = (10, 200, 30)
    path = tmp_path / "keyed.png"
    Image.fromarray(pixels).save(path, transparency=(0, 0, 0))  # black is the colour key
    with Image.open(path) as photo:
        assert photo.mode == "RGB" and photo.info["transparency"] == (0, 0, 0)
        result = explain(photo, thousand_classes, get_spec("efficientnet_lite0"), classes=[1], layer="block")
    shown = np.asarray(result.image)
    assert (shown[:, :25] == 255).all() and (shown[:, 25:] == (10, 200, 30)).all()


def test_explain_defaults_to_the_top_class_at_the_specs_layer_and_the_top_five(thousand_classes):
    import dataclasses

    spec = dataclasses.replace(get_spec("resnet18"), target_layer="block")
    photo = _photo(64, 48)
    x = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )(photo).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(thousand_classes(x)[0], dim=0)
    best = int(probabilities.argmax())
    for classes in (None, []):
        result = explain(photo, thousand_classes, spec, classes=classes)
        assert result.class_indices == [best] and result.layer == "block"
        assert [i for i, _, _ in result.top_k] == torch.argsort(probabilities, descending=True)[:5].tolist()
    assert len(explain(photo, thousand_classes, spec, top_k=2000).top_k) == 1000
    grey = explain(photo.convert("L"), thousand_classes, spec, classes=best)
    assert grey.image.mode == "RGB" and grey.class_indices == [best]


def test_class_names_are_looked_up_in_the_specs_own_categories(tiny):
    """A spec for a fine-tuned model brings its own labels; names resolve against those, not ImageNet's."""
    import dataclasses

    class FourLabels(type(get_spec("resnet18"))):
        @property
        def categories(self) -> tuple[str, ...]:
            return ("ant", "bee", "wasp", "moth")

    spec = FourLabels(**{f.name: getattr(get_spec("resnet18"), f.name) for f in dataclasses.fields(FourLabels)})
    result = explain(_photo(32, 32), tiny, spec, classes=["wasp", "Bee"], layer="block", top_k=4)
    assert result.class_indices == [2, 1] and result.class_names == ["wasp", "bee"]
    assert sorted(name for _, name, _ in result.top_k) == ["ant", "bee", "moth", "wasp"]


def test_a_gradcam_for_another_model_or_layer_is_refused_with_the_reason(tiny, thousand_classes):
    import dataclasses

    spec = dataclasses.replace(get_spec("resnet18"), target_layer="block")
    photo = _photo(32, 32)
    with GradCAM(thousand_classes, "block") as cam:
        with pytest.raises(ValueError) as other_model:
            explain(photo, tiny, spec, cam=cam)
        with pytest.raises(ValueError) as other_layer:
            explain(photo, thousand_classes, spec, layer="stem", cam=cam)
        assert explain(photo, thousand_classes, spec, layer=thousand_classes.block, cam=cam).layer == "block"
    assert str(other_model.value) == "cam explains another model; make a GradCAM of this one"
    assert str(other_layer.value) == "cam explains layer 'block', not the requested 'stem'"


# ---------------------------------------------------------------- Grad-CAM: edge cases of the contract


def test_normalize_maps_scales_each_map_from_its_own_minimum_to_its_maximum():
    maps = torch.tensor([[[2.0, 4.0], [6.0, 3.0]], [[-1.0, 1.0], [0.0, 3.0]]])
    expected = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.5], [0.25, 1.0]]])
    torch.testing.assert_close(normalize_maps(maps), expected)
    torch.testing.assert_close(normalize_maps(maps[0]), expected[0])  # a single (h, w) map too
    # float noise on a flat map: a span of 3 float32 steps at 10000 is 3e-7 of the peak, below 1e-6
    noise = 10000.0 + 2.0**-10 * torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert noise.max() > noise.min()
    assert (normalize_maps(noise) == 0).all()


def test_normalize_maps_treats_a_span_of_exactly_rel_eps_of_the_peak_as_flat():
    at_the_floor = torch.tensor([[0.5, 1.0], [0.75, 1.0]])  # span 0.5 = 0.5 * peak, exactly
    assert (normalize_maps(at_the_floor, rel_eps=0.5) == 0).all()
    torch.testing.assert_close(normalize_maps(at_the_floor, rel_eps=0.49), torch.tensor([[0.0, 1.0], [0.5, 1.0]]))


@pytest.mark.parametrize("rel_eps", [1e-6, 0.0, -0.5])
def test_a_flat_map_becomes_zeros_never_nan_whatever_the_noise_floor(rel_eps):
    out = normalize_maps(torch.full((1, 2, 3, 3), 7.0), rel_eps=rel_eps)
    assert (out == 0).all()


def test_a_model_without_parameters_is_explained(batch):
    model = nn.Sequential(nn.AvgPool2d(2), nn.Flatten())  # 3 x 4 x 4 cells of an 8 x 8 input: 48 "classes"
    with GradCAM(model, "0") as cam:
        result = cam.compute(batch, [[5], [40]])
    by_hand = grad_cam_by_hand(model, model[0], batch.clone().requires_grad_(True), [[5], [40]])  # no weights: a graph
    torch.testing.assert_close(result.maps, by_hand)


def test_the_batch_goes_to_the_models_device_and_every_result_stays_there():
    """Shown with the meta device, which every machine has: the model there, the batch on the CPU."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = nn.Sequential(*model, nn.Linear(4, 3)).to("meta").eval()
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].device))
    with GradCAM(model, "0") as cam:
        result = cam.compute(torch.zeros(2, 3, 8, 8), [1, 2])
    meta = torch.device("meta")
    assert seen == [meta]
    assert result.maps.shape == (2, 1, 8, 8)
    assert [t.device for t in (result.maps, result.class_indices, result.probabilities, result.logits)] == [meta] * 4


def test_a_batch_is_handed_to_the_model_without_a_copy(tiny, batch):
    seen: list[int] = []
    handle = tiny.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].data_ptr()))
    try:
        with GradCAM(tiny, "block") as cam:
            cam.compute(batch, 1)
    finally:
        handle.remove()
    assert seen == [batch.data_ptr()]


class _NormalisesInPlace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(0.5).mul_(2.0)


def test_a_batch_made_under_inference_mode_is_explained_by_a_model_that_works_in_place():
    torch.manual_seed(6)
    model = nn.Sequential(_NormalisesInPlace(), _Tiny()).eval()
    with torch.inference_mode():
        x = torch.rand(1, 3, 8, 8)
    with GradCAM(model, "1.block") as cam:
        result = cam.compute(x, 2)
    expected = grad_cam_by_hand(model, model[1].block, x.clone(), [[2]])
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


def test_a_one_cell_map_is_refused_and_a_one_by_two_map_is_explained(batch):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((1, 2)), nn.AdaptiveAvgPool2d(1))
    model = nn.Sequential(*model, nn.Flatten(), nn.Linear(4, 3)).eval()
    with GradCAM(model, "2") as cam, pytest.raises(LayerError) as caught:
        cam.compute(batch[:1])
    assert str(caught.value) == (
        "layer '2' has no spatial output (shape (1, 4, 1, 1)); choose a convolutional layer or block"
    )
    with GradCAM(model, "1") as cam:
        maps = cam.compute(batch, [0, 2]).maps
    assert maps.shape == (2, 1, 1, 2)
    torch.testing.assert_close(maps, grad_cam_by_hand(model, model[1], batch, [[0], [2]]), rtol=1e-5, atol=1e-6)


def test_numpy_integers_of_any_width_are_class_indices(tiny, batch):
    rows = [[np.int32(1)], [np.int32(3)]]
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, rows)
    assert result.class_indices.tolist() == [[1], [3]] and result.class_indices.dtype == torch.int64
    torch.testing.assert_close(result.maps, grad_cam_by_hand(tiny, tiny.block, batch, [[1], [3]]))


def test_a_shared_layer_that_runs_fewer_times_than_last_call_still_explains_the_asked_class(batch):
    torch.manual_seed(8)
    model = _SharedActivation().eval()  # the activation runs twice per forward
    with torch.no_grad():
        top = model(batch).argmax(dim=1)
    wanted = [[int(c + 1) % 5] for c in top]  # never the top class
    with GradCAM(model, "act") as cam:
        cam.compute(batch, wanted)  # learns: two calls per forward
        model.calls = 1
        result = cam.compute(batch, wanted)
    assert result.class_indices.tolist() == wanted
    kept: list[torch.Tensor] = []
    handle = model.act.register_forward_hook(lambda _m, _i, out: kept.append(out))
    model(batch)
    handle.remove()
    assert len(kept) == 1
    torch.testing.assert_close(result.maps, grad_cam_by_hand(model, model.act, batch, wanted), rtol=1e-5, atol=1e-6)
