"""What a user sees, checked against numbers computed here without the package.

Each expected value is worked out independently: the original post's blend (0.6 photo + 0.4 of
OpenCV's JET colours), torchvision's standard Resize(256) + CenterCrop(224) pipeline for where the
network looks, the ImageNet statistics, RISE's Gaussian blur (kernel 11, sigma 5) made by OpenCV,
softmax probabilities of the model's own logits, the 16-bit grey scale, and ImageNet class indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from gradcam_tutorial import (
    ClassNameError,
    Explanation,
    cli,
    explain,
    get_spec,
    load_image,
    overlay,
    resolve_class,
    show_overlay,
)
from gradcam_tutorial.evaluation import faithfulness

# ---------------------------------------------------------------- independent references


def jet_rgb() -> np.ndarray:
    """OpenCV's JET table as ``(256, 3)`` RGB: the original post's colour map, straight from OpenCV."""
    levels = np.arange(256, dtype=np.uint8)[:, None]
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)[:, 0, ::-1]


def jet_of(heatmap: np.ndarray) -> np.ndarray:
    """A ``[0, 1]`` map coloured the post's way: scaled to 0..255, looked up in JET."""
    return jet_rgb()[np.round(255 * np.clip(heatmap, 0, 1)).astype(np.uint8)]


def blend(photo: np.ndarray, colours: np.ndarray, heat_share: float) -> np.ndarray:
    """``(1 - heat_share)`` photo plus ``heat_share`` colours, in float: the reference mix."""
    return (1.0 - heat_share) * photo.astype(np.float64) + heat_share * colours.astype(np.float64)


def standard_input(photo: Image.Image) -> torch.Tensor:
    """EfficientNet-Lite0's input the textbook way: Resize(256), CenterCrop(224), mean = std = 0.5."""
    pipeline = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    return pipeline(photo)[None]


# ---------------------------------------------------------------- 1: the post's 0.6 / 0.4 overlay


def test_overlay_is_six_tenths_photo_and_four_tenths_jet():
    """The default overlay mixes the photo and its JET-coloured map 0.6 / 0.4, as the original post."""
    rng = np.random.default_rng(15)
    photo = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    heatmap = rng.random((24, 40)).astype(np.float32)
    expected = blend(photo, jet_of(heatmap), 0.4)
    assert np.abs(overlay(photo, heatmap).astype(float) - expected).max() <= 1
    assert np.abs(overlay(Image.fromarray(photo), heatmap).astype(float) - expected).max() <= 1


def test_overlay_resizes_a_small_map_onto_the_photo_before_blending():
    """A layer-sized map is spread over the photo first (a flat map stays flat), then mixed 0.6 / 0.4."""
    photo = np.full((48, 64, 3), (200, 40, 90), dtype=np.uint8)
    expected = blend(photo, jet_of(np.full((48, 64), 0.75)), 0.4)
    assert np.abs(overlay(photo, np.full((7, 7), 0.75, np.float32)).astype(float) - expected).max() <= 1


def test_drawn_overlay_on_a_figure_is_the_posts_blend():
    """What ``show_overlay`` puts on the axis is the same 0.6 photo + 0.4 JET mix."""
    from matplotlib.figure import Figure

    rng = np.random.default_rng(16)
    photo = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    heatmap = rng.random((20, 30)).astype(np.float32)
    ax = Figure().subplots()
    show_overlay(ax, Image.fromarray(photo), heatmap, colorbar=False)
    drawn = np.asarray(ax.images[0].get_array(), dtype=float)
    assert np.abs(drawn - blend(photo, jet_of(heatmap), 0.4)).max() <= 1


# ---------------------------------------------------------------- the CLI's overlays (1 and 9)


@pytest.fixture(scope="module")
def cli_overlays(effnet, grid, tmp_path_factory) -> dict[str, np.ndarray]:
    """The overlay PNG the ``gradcam`` command writes for one small photo, per ``--alpha`` (and none).

    Runs :func:`gradcam_tutorial.cli.main` in-process with the session's model, so the weights are
    loaded once. Key ``"photo"`` holds the photo as it was saved.
    """
    folder = tmp_path_factory.mktemp("cli")
    image, tiles = grid
    photo = image.crop(tiles[1].box).resize((96, 64), Image.Resampling.BILINEAR)  # the espresso, non-square
    photo.save(folder / "cup.png")
    written = {"photo": np.asarray(photo)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "create_model", lambda name, pretrained=True: effnet)
        for alpha in ("0", "0.25", "1", None):
            out = folder / f"out-{alpha}"
            options = [] if alpha is None else ["--alpha", alpha]
            status = cli.main([str(folder / "cup.png"), "--class", "espresso", "--out", str(out), *options])
            assert status == 0
            record = json.loads((out / "cup.json").read_text())
            png = out / record["classes"][0]["overlay"]
            written["default" if alpha is None else alpha] = np.asarray(Image.open(png).convert("RGB"))
    return written


def test_cli_alpha_zero_writes_the_photo_itself(cli_overlays):
    """``--alpha 0``: no heatmap at all, the written overlay is the photo pixel for pixel."""
    assert np.array_equal(cli_overlays["0"], cli_overlays["photo"])


def test_cli_alpha_one_writes_pure_jet_colours(cli_overlays):
    """``--alpha 1``: nothing of the photo is left, every pixel is a colour of the JET map."""
    pure = cli_overlays["1"].astype(np.int64)
    table = jet_rgb().astype(np.int64)
    codes = (pure[..., 0] << 16) | (pure[..., 1] << 8) | pure[..., 2]
    assert np.isin(codes, (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]).all()
    assert not np.array_equal(cli_overlays["1"], cli_overlays["photo"])


def test_cli_overlay_is_coldest_outside_the_centre_crop(cli_overlays):
    """On the 96x64 photo the network sees the centred 56x56 square (0.875 of 64) at x 20..76, y 4..60.

    Outside it the map is 0, JET's darkest blue; inside, the hot colours of the espresso appear.
    """
    pure = cli_overlays["1"]
    outside = np.ones(pure.shape[:2], dtype=bool)
    outside[4:60, 20:76] = False
    assert (pure[outside] == jet_rgb()[0]).all()
    assert (pure[~outside] != jet_rgb()[0]).any(axis=-1).mean() > 0.5


@pytest.mark.parametrize(("key", "heat_share"), [("0.25", 0.25), ("default", 0.4)])
def test_cli_overlay_mixes_photo_and_heatmap_colours_by_alpha(cli_overlays, key, heat_share):
    """``--alpha a`` writes ``(1 - a)`` photo + ``a`` heatmap colours; without it a = 0.4, the post's mix."""
    expected = blend(cli_overlays["photo"], cli_overlays["1"], heat_share)
    assert np.abs(cli_overlays[key].astype(float) - expected).max() <= 1


# ---------------------------------------------------------------- 2, 6, 8: one explanation of a wide photo

WIDE_BOX = (80, 16, 304, 240)  # Resize(256) keeps a 384x256 photo; CenterCrop(224) takes this box


@pytest.fixture(scope="module")
def wide(effnet, grid, mirror) -> tuple[Image.Image, Explanation]:
    """A 384x256 photo explained for two classes named in the original post's wording, all 1000 ranked."""
    image, _ = grid
    photo = image.crop((64, 128, 448, 384))
    return photo, explain(photo, *effnet, classes=["tabby cat", "Egyptian Mau"], top_k=1000)


def test_network_sees_the_standard_centre_crop(effnet, wide):
    """The model's input is torchvision's Resize(256) + CenterCrop(224) of the photo, nothing else."""
    _, spec = effnet
    photo, _ = wide
    assert torch.equal(spec.preprocess(photo), standard_input(photo))


def test_heatmap_lands_on_the_crop_the_network_saw(wide):
    """Inside the 224x224 centre box the map is the layer map resized there; outside it, 0."""
    photo, result = wide
    x0, y0, x1, y1 = WIDE_BOX
    outside = np.ones((photo.height, photo.width), dtype=bool)
    outside[y0:y1, x0:x1] = False
    for k, small in enumerate(result.small_heatmaps):
        full = result.heatmap(k)
        assert full.shape == (256, 384)
        assert not full[outside].any(), "the network saw nothing there"
        inside = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(full[y0:y1, x0:x1], inside, atol=1e-5)
        assert full.max() > 0.9  # a normalised map peaks near 1, so the checks above saw real content


def test_posts_wording_names_the_same_classes(wide):
    """'tabby cat' and 'Egyptian Mau' (the post's class list) are classes 281 and 285."""
    _, result = wide
    assert result.class_indices == [281, 285]
    assert result.class_names == ["tabby", "Egyptian cat"]


def test_probabilities_are_the_softmax_of_the_models_logits(effnet, wide):
    """All 1000 probabilities sum to 1 and equal softmax(logits) of an independent forward pass."""
    model, _ = effnet
    photo, result = wide
    with torch.no_grad():
        softmax = torch.softmax(model(standard_input(photo))[0].double(), dim=0).numpy()
    ranked = result.top_k
    assert len(ranked) == 1000
    assert sum(p for *_, p in ranked) == pytest.approx(1.0, abs=1e-4)
    top = np.argsort(-softmax)[:5]
    assert [i for i, *_ in ranked[:5]] == top.tolist()
    np.testing.assert_allclose([p for *_, p in ranked[:5]], softmax[top], atol=1e-5)
    np.testing.assert_allclose(result.probabilities, softmax[[281, 285]], atol=1e-5)


# ---------------------------------------------------------------- 3: ResNet-18's ImageNet statistics


def test_resnet18_input_uses_the_imagenet_mean_and_std():
    """A flat (255, 128, 0) photo becomes ((255, 128, 0) / 255 - mean) / std with ImageNet's numbers."""
    spec = get_spec("resnet18")  # no weights needed: only its preprocessing is looked at
    x = spec.preprocess(Image.new("RGB", (300, 200), (255, 128, 0)))
    assert x.shape == (1, 3, 224, 224)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (np.array([255, 128, 0]) / 255 - mean) / std  # about (2.249, 0.205, -1.804)
    for channel in range(3):
        np.testing.assert_allclose(x[0, channel].numpy(), expected[channel], atol=1e-5)


# ---------------------------------------------------------------- 4: RISE's insertion start


def pixel_probe(row: int, column: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A two-class 'model' whose class-0 logit is channel 0 at one pixel: p = sigmoid(that value)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        value = x[:, 0, row, column]
        return torch.stack([value, torch.zeros_like(value)], dim=1)

    return forward


def test_insertion_starts_from_rises_gaussian_blur():
    """The insertion curve's first point is the class score on the input blurred by OpenCV's
    Gaussian with kernel 11 and sigma 5 (RISE); a bright dot shows the blur's width."""
    picture = np.zeros((3, 33, 33), dtype=np.float32)
    picture[:, 16, 16] = 10.0
    reference = cv2.GaussianBlur(picture[0], (11, 11), 5.0, borderType=cv2.BORDER_REFLECT_101)
    saliency = np.random.default_rng(4).random((33, 33))
    for row, column in [(16, 16), (16, 18), (16, 21), (11, 16), (14, 13)]:
        curves = faithfulness.perturbation_curves(
            pixel_probe(row, column), torch.from_numpy(picture), [saliency], 0, steps=2
        )
        p = float(curves.insertion[0, 0])
        assert math.log(p / (1 - p)) == pytest.approx(float(reference[row, column]), abs=1e-4)
    assert reference[16, 16] == pytest.approx(0.1197, abs=1e-3)  # a sigma-0.5 blur would leave about 6.2


# ---------------------------------------------------------------- 5, 6: class names


@pytest.mark.parametrize(
    ("words", "index"),
    [
        ("goose", 99),
        ("vizsl", 211),
        ("shepherd", 235),
        ("dane", 246),
        ("chow", 260),
        ("tabb", 281),
        ("tiger cat", 282),
        ("egyptian", 285),
        ("cowboy h", 515),
        ("boy hat", 515),
    ],
)
def test_names_and_partial_names_give_the_imagenet_index(words, index):
    """Known ImageNet indices, asked for by full or unambiguous partial names."""
    assert resolve_class(words) == index


@pytest.mark.parametrize(
    ("words", "index"),
    [("tabby cat", 281), ("Egyptian Mau", 285), ("German Shepherd Dog", 235), ("Chow Chow", 260), ("Chow Ch", 260)],
)
def test_the_posts_class_names_are_accepted(mirror, words, index):
    """The original post's JSON words 307 classes differently; its names work as well."""
    assert resolve_class(words) == index


@pytest.mark.parametrize(
    ("words", "listed"),
    [("cowboy", ["cowboy boot 514", "cowboy hat 515"]), ("goos", ["goose 99", "mongoose 298"])],
)
def test_ambiguous_partial_name_lists_the_right_indices(words, listed):
    """'cowboy' is in both 'cowboy boot' and 'cowboy hat': the error offers each with its true index."""
    with pytest.raises(ClassNameError) as caught:
        resolve_class(words)
    for entry in listed:
        assert entry in str(caught.value)


# ---------------------------------------------------------------- 7: 16-bit grey


def sixteen_bit_png(folder: Path, values: np.ndarray) -> Path:
    """Save ``values`` as a 16-bit greyscale PNG and return its path."""
    path = folder / "grey16.png"
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I;16") or check.mode == "I"  # a real 16-bit file
    return path


def test_sixteen_bit_grey_is_shown_on_the_full_16_bit_scale(tmp_path):
    """Values that reach only 32768 of 65535 are mid-grey (128), not stretched to white."""
    values = np.array([[0, 8192, 16384, 32768]] * 3)
    pixels = np.asarray(load_image(sixteen_bit_png(tmp_path, values))).astype(int)
    expected = np.round(values * 255 / 65535)  # 0, 32, 64, 128
    assert np.abs(pixels - expected[..., None]).max() <= 1
    assert pixels.max() < 140


def test_flat_sixteen_bit_grey_stays_mid_grey(tmp_path):
    """A picture that is 32768 everywhere is uniformly grey 128."""
    pixels = np.asarray(load_image(sixteen_bit_png(tmp_path, np.full((5, 7), 32768))))
    assert np.abs(pixels.astype(int) - 128).max() <= 1


def test_32_bit_integer_file_of_16_bit_data_is_on_the_16_bit_scale(tmp_path):
    """A 32-bit integer TIFF holding 16-bit data (as older Pillow also reads 16-bit PNGs) keeps its greys."""
    values = np.array([[0, 8192, 16384, 32768]] * 3)
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "grey32.tif")
    with Image.open(tmp_path / "grey32.tif") as check:
        assert check.mode == "I"
    pixels = np.asarray(load_image(tmp_path / "grey32.tif")).astype(int)
    assert np.abs(pixels - np.round(values * 255 / 65535)[..., None]).max() <= 1
