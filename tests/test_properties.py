"""Property tests: any size, any Pillow mode, any fitting file format goes through load -> explain,
and on photos that are not square a map lands where its evidence was.

Width and height are drawn independently from 1..4096, so strips like 4096x1 occur. Whatever the
file, the heatmaps must be finite, min-max scaled from Grad-CAM's raw map, of the image's displayed
size and 0 outside the part the network saw; the only exceptions allowed are the package's
documented ones (and none is expected for a file Pillow itself wrote).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from gradcam_tutorial import GradCAM, explain, get_spec, load_image

CROP_FRACTION = 224 / 256  # EfficientNet-Lite0 sees a centred square of this share of the shorter side

# The formats each mode can be written in by Pillow (what a user's file of that mode could be).
FORMATS = {
    "1": ["PNG", "TIFF"],
    "L": ["PNG", "JPEG", "TIFF"],
    "LA": ["PNG", "TIFF"],
    "P": ["PNG", "GIF", "TIFF"],
    "P+transparency": ["PNG", "GIF"],
    "RGB": ["PNG", "JPEG", "TIFF"],
    "RGBA": ["PNG", "TIFF"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["TIFF"],
    "F": ["TIFF"],
}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "GIF": ".gif"}


def make_image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    """Blocky random content of any size, cheap to make: a tiny random picture scaled up."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (min(height, 8), min(width, 8), 4), dtype=np.uint8), "RGBA")
    rgba = small.resize((width, height), Image.NEAREST)
    if mode == "RGBA":
        return rgba
    rgb = rgba.convert("RGB")
    if mode == "P+transparency":
        return rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    if mode == "LA":
        return rgba.convert("LA")
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0)
    return rgb.convert(mode)


@st.composite
def cases(draw):
    mode = draw(st.sampled_from(sorted(FORMATS)))
    return (
        draw(st.integers(1, 4096)),
        draw(st.integers(1, 4096)),
        mode,
        draw(st.sampled_from(FORMATS[mode])),
        draw(st.integers(0, 2**16)),
    )


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(case=cases())
@example(case=(4096, 1, "RGB", "PNG", 0))
@example(case=(1, 4096, "I;16", "PNG", 1))
@example(case=(1, 1, "P+transparency", "PNG", 2))
@example(case=(3000, 2, "CMYK", "JPEG", 3))
@example(case=(2, 4096, "F", "TIFF", 4))
def test_any_image_gives_finite_unit_heatmaps_of_its_size(effnet, case):
    width, height, mode, fmt, seed = case
    note(f"{width}x{height} {mode} as {fmt}")
    image = make_image(width, height, mode, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"image{SUFFIX[fmt]}"
        extra = {"transparency": 0} if mode == "P+transparency" else {}
        image.save(path, fmt, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a one-frame GIF; warnings are tested elsewhere
            loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (width, height)
    model, spec = effnet
    cam = RecordingCAM(model, spec.target_layer)
    result = explain(loaded, model, spec, top_k=3, cam=cam)
    assert result.heatmaps.shape == (1, height, width)
    assert np.isfinite(result.heatmaps).all() and np.isfinite(result.small_heatmaps).all()
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0
    assert 0.0 <= result.probabilities[0] <= 1.0
    # min-max scaled from the raw map: 0 at its coolest cell, 1 at its hottest (all 0 only if it is flat)
    raw = cam.last.maps[0, 0].double().numpy()
    span = raw.max() - raw.min()
    flat = span <= 1e-6 * abs(raw.max())
    note(f"raw map from {raw.min():.3g} to {raw.max():.3g}")
    expected = np.zeros_like(raw) if flat else (raw - raw.min()) / span
    np.testing.assert_allclose(result.small_heatmaps[0], expected, atol=1e-5)
    # the network saw a centred square of the photo; beyond it the map is 0
    left, top, right, bottom = visible_square(width, height)
    top, bottom, left, right = math.floor(top), math.ceil(bottom), math.floor(left), math.ceil(right)
    heatmap = result.heatmaps[0]
    assert not (heatmap[:top].any() or heatmap[bottom:].any() or heatmap[:, :left].any() or heatmap[:, right:].any())


class RecordingCAM(GradCAM):
    """Grad-CAM that keeps its last raw result, so a test can see the map before normalisation."""

    last = None

    def compute(self, input_batch, targets=None):
        self.last = super().compute(input_batch, targets)
        return self.last


def visible_square(width: int, height: int) -> tuple[float, float, float, float]:
    """The centred square the network sees, worked out here: 224/256 of the shorter side."""
    side = CROP_FRACTION * min(width, height)
    return (width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2


def test_preprocessing_cost_does_not_grow_with_aspect_ratio(effnet):
    """The visible square is cropped before resizing, so a 4096x1 strip makes a normal 224x224 input."""
    _, spec = effnet
    strip = Image.new("RGB", (4096, 1), (200, 40, 90))
    x = spec.preprocess(strip)
    assert x.shape == (1, 3, 224, 224)
    expected = (np.array([200, 40, 90]) / 255 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(x[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-3)  # the strip's colour, not a blank
    assert spec.pixel_box((4096, 1)) == (2048, 0, 2049, 1)


class BrightnessModel(nn.Module):
    """A classifier whose Grad-CAM answer is known: class 0's logit is the mean of the red channel
    average-pooled to 7x7 (layer ``pool``), so the map is ReLU of that grid, hot where the input is
    brighter than the normalisation mean and 0 where it is darker."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.pool(x[:, :1]).mean(dim=(1, 2, 3))
        return torch.cat([score[:, None], torch.zeros(len(x), 999)], dim=1)


@st.composite
def off_square_photos(draw):
    """A photo between 1.2 and 4 times wider than high or higher than wide, and one of the 7x7 cells."""
    short = draw(st.integers(64, 600))
    long = draw(st.integers(math.ceil(1.2 * short), 4 * short))
    size = (long, short) if draw(st.booleans()) else (short, long)
    return size, (draw(st.integers(0, 6)), draw(st.integers(0, 6)))


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["efficientnet_lite0", "resnet18"])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(case=off_square_photos())
@example(case=((1600, 500), (3, 0)))
@example(case=((640, 480), (3, 3)))
@example(case=((300, 1000), (6, 6)))
def test_map_lands_on_its_evidence_in_photos_that_are_not_square(model_name, case):
    """A bright patch filling one cell of the network's 7x7 grid, seen through each model's own
    geometry (EfficientNet: a centred square; ResNet-18: the whole photo stretched), gives a map that
    is hot in that cell alone and, on the photo, peaks inside the patch's cell and is 0 beyond the
    cell's bilinear reach and outside the part the network saw."""
    (width, height), (row, column) = case
    note(f"{width}x{height}, cell {row}, {column}")
    spec = dataclasses.replace(get_spec(model_name), target_layer="pool")
    if spec.crop_fraction is None:
        left, top, right, bottom = 0.0, 0.0, float(width), float(height)
    else:
        left, top, right, bottom = visible_square(width, height)
    cell_w, cell_h = (right - left) / 7, (bottom - top) / 7
    x0, x1 = left + column * cell_w, left + (column + 1) * cell_w  # the cell on the photo
    y0, y1 = top + row * cell_h, top + (row + 1) * cell_h
    photo = Image.new("RGB", (width, height), (102, 102, 102))  # darker than either model's mean
    photo.paste((255, 255, 255), (math.ceil(x0) + 1, math.ceil(y0) + 1, math.floor(x1) - 1, math.floor(y1) - 1))

    result = explain(photo, BrightnessModel(), spec, classes=[0])
    one_hot = np.zeros((7, 7), dtype=np.float32)
    one_hot[row, column] = 1.0
    np.testing.assert_array_equal(result.small_heatmaps[0], one_hot)
    heatmap = result.heatmap(0)
    assert heatmap.shape == (height, width) and heatmap.max() >= 0.5
    peak_y, peak_x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert x0 - 1 <= peak_x < x1 + 1 and y0 - 1 <= peak_y < y1 + 1, (peak_x, peak_y)
    ys, xs = np.nonzero(heatmap)
    # bilinear interpolation reaches from the cell's centre to its neighbours' centres, no further;
    # 2 pixels of slack for the crop box rounded to whole pixels
    assert xs.min() >= max(left, x0 - cell_w / 2) - 2 and xs.max() + 1 <= min(right, x1 + cell_w / 2) + 2
    assert ys.min() >= max(top, y0 - cell_h / 2) - 2 and ys.max() + 1 <= min(bottom, y1 + cell_h / 2) + 2
