"""The picture-making functions' promises, checked against OpenCV and matplotlib read back.

Colours come from OpenCV's JET table and the post's 0.6 / 0.4 blend computed here with OpenCV; a
resize is OpenCV's ``INTER_LINEAR``. What the docstrings and the README promise is checked where a
user meets it: out-of-range maps saturate instead of wrapping round, a greyscale or palette photo is
blended as its RGB conversion, a photo that is not RGB is refused with its shape, a one-panel grid
is still a grid, titles stay 10 pt in any matplotlib style, a map placed on a photo is 0 outside
the box the network saw, and a map in any memory layout resizes like a plain copy.
"""

from __future__ import annotations

import re

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gradcam_tutorial import colorize, overlay, overlay_grid, show_overlay
from gradcam_tutorial.viz import colour_bar_map, heatmap_on_photo, resize_heatmap
from test_user_visible import jet_of, jet_rgb

BAR_LABEL = "Grad-CAM (normalised)"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def posts_overlay(rgb: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """0.6 photo + 0.4 JET colours, rounded by OpenCV as the package promises to do."""
    return cv2.addWeighted(rgb, 0.6, jet_of(heatmap), 0.4, 0.0)


def test_colorize_defaults_to_jet_and_saturates_values_outside_0_to_1():
    """Below 0 is the coldest colour, above 1 the hottest: never a wrapped-round uint8 level."""
    values = np.array([[-2.0, -0.5, -1e-3, 0.0, 0.25, 0.5, 1.0, 1.001, 1.5, 3.0]])
    levels = [0, 0, 0, 0, 64, 128, 255, 255, 255, 255]  # round(255 * clip(v, 0, 1)), by hand
    np.testing.assert_array_equal(colorize(values), jet_rgb()[levels][None])


@pytest.mark.parametrize("name", ["jet", "viridis", "inferno"])
def test_a_colour_bar_map_is_named_for_opencvs_table(name):
    """Not to be mistaken for matplotlib's own map of the same name."""
    assert colour_bar_map(name).name == f"opencv-{name}"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB"])
def test_an_overlay_of_any_pil_photo_blends_its_rgb_conversion(mode):
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    photo = rgb.convert(mode)
    heatmap = rng.random((20, 24)).astype(np.float32)
    expected = posts_overlay(np.asarray(photo.convert("RGB")), heatmap)
    np.testing.assert_array_equal(overlay(photo, heatmap), expected)


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 4), (6, 5, 1), (6, 5, 3, 1)])
def test_an_array_photo_that_is_not_rgb_is_refused_with_its_shape(shape):
    message = f"photo must be RGB (h, w, 3); got shape {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        overlay(np.zeros(shape, dtype=np.uint8), np.zeros((6, 5), dtype=np.float32))


def test_a_grid_of_one_map_is_one_titled_panel_with_its_bar():
    rng = np.random.default_rng(11)
    photo = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    heatmap = rng.random((16, 20)).astype(np.float32)
    fig = overlay_grid(photo, [heatmap], ["only"], columns=1)
    assert tuple(fig.get_size_inches()) == pytest.approx((3.4, 3.4))
    (panel,) = [ax for ax in fig.axes if ax.get_ylabel() != BAR_LABEL]
    assert panel.get_title() == "only" and not panel.axison
    np.testing.assert_array_equal(panel.images[0].get_array(), posts_overlay(photo, heatmap))
    assert len(fig.axes) == 2


def test_panel_titles_stay_10_pt_under_a_larger_default_font():
    photo = np.zeros((8, 8, 3), dtype=np.uint8)
    heatmap = np.zeros((8, 8), dtype=np.float32)
    with plt.rc_context({"font.size": 16}):
        ax = plt.figure().add_subplot()
        show_overlay(ax, photo, heatmap, "cat")
        grid = overlay_grid(photo, [heatmap, heatmap], ["a", "b"])
    assert ax.title.get_fontsize() == 10
    titled = [a for a in grid.axes if a.get_title()]
    assert [a.title.get_fontsize() for a in titled] == [10, 10]


@pytest.mark.parametrize(
    ("photo_size", "box"),
    [((64, 48), (8, 4, 56, 44)), ((30, 20), (0, 0, 30, 20)), ((50, 40), (0, 5, 50, 35))],
)
def test_a_map_lands_in_its_box_scaled_by_opencv_and_is_0_elsewhere(photo_size, box):
    rng = np.random.default_rng(5)
    small = rng.uniform(-0.5, 1.5, (7, 9)).astype(np.float32)  # out of range on both sides
    width, height = photo_size
    x0, y0, x1, y1 = box
    expected = np.zeros((height, width), dtype=np.float32)
    expected[y0:y1, x0:x1] = np.clip(cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR), 0, 1)
    placed = heatmap_on_photo(small, photo_size, box)
    assert placed.shape == (height, width) and placed.dtype == np.float32
    np.testing.assert_allclose(placed, expected, atol=2e-6)
    assert placed.min() == 0.0 and placed.max() == 1.0


def test_resize_takes_stacks_of_any_depth_tensors_and_float64_and_returns_float32():
    rng = np.random.default_rng(2)
    maps = rng.random((2, 3, 5, 6))  # float64
    expected = np.stack(
        [[cv2.resize(m.astype(np.float32), (11, 9), interpolation=cv2.INTER_LINEAR) for m in row] for row in maps]
    )
    ours = resize_heatmap(maps, (9, 11))
    assert ours.shape == (2, 3, 9, 11) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=2e-6)
    tensor = torch.tensor(maps[1, 2], requires_grad=True)  # float64, with a graph attached
    from_tensor = resize_heatmap(tensor, (9, 11))
    assert isinstance(from_tensor, np.ndarray) and from_tensor.dtype == np.float32
    np.testing.assert_allclose(from_tensor, expected[1, 2], atol=2e-6)


def _read_only(maps: np.ndarray) -> np.ndarray:
    maps.flags.writeable = False
    return maps


LAYOUTS = {
    "big-endian": lambda plain: plain.astype(">f8"),
    "mirrored view": lambda plain: plain[::-1, ::-1],
    "float32 mirrored view": lambda plain: plain.astype(np.float32)[::-1],
    "float32 read-only": lambda plain: _read_only(plain.astype(np.float32)),
    "float32 column view": lambda plain: np.asfortranarray(plain, dtype=np.float32)[:, 1:],
}


@pytest.mark.filterwarnings("error")  # torch warns on arrays it cannot share
@pytest.mark.parametrize("layout", LAYOUTS)
def test_resize_takes_maps_in_any_memory_layout(layout):
    """A map read from a big-endian file, a flipped, sliced or read-only view resizes like a plain copy."""
    maps = LAYOUTS[layout](np.random.default_rng(4).random((5, 6)))
    expected = cv2.resize(np.ascontiguousarray(maps, dtype=np.float32), (11, 9), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_heatmap(maps, (9, 11)), expected, atol=2e-6)
