"""Property test: any size, any Pillow mode, any fitting file format goes through load -> explain.

Width and height are drawn independently from 1..4096, so strips like 4096x1 occur. Whatever the
file, the heatmaps must be finite, in [0, 1] and of the image's displayed size; the only exceptions
allowed are the package's documented ones (and none is expected for a file Pillow itself wrote).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam_tutorial import explain, load_image

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
    result = explain(loaded, *effnet, top_k=3)
    assert result.heatmaps.shape == (1, height, width)
    assert np.isfinite(result.heatmaps).all() and np.isfinite(result.small_heatmaps).all()
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0
    assert 0.0 <= result.probabilities[0] <= 1.0


def test_preprocessing_cost_does_not_grow_with_aspect_ratio(effnet):
    """The visible square is cropped before resizing, so a 4096x1 strip makes a normal 224x224 input."""
    _, spec = effnet
    strip = Image.new("RGB", (4096, 1), (200, 40, 90))
    x = spec.preprocess(strip)
    assert x.shape == (1, 3, 224, 224)
    expected = (np.array([200, 40, 90]) / 255 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(x[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-3)  # the strip's colour, not a blank
    assert spec.pixel_box((4096, 1)) == (2048, 0, 2049, 1)
