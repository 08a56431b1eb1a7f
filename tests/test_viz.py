"""The figures and overlays (viz.py): what a reader sees, read back from matplotlib.

Colours are checked against OpenCV's JET table and the post's 0.6 / 0.4 blend (test_user_visible's
references), a resize against OpenCV's ``INTER_LINEAR``; the layout constants (panel size, outline
style, title size) are the ones the committed notebooks show.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import re

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from PIL import Image

from gradcam_tutorial import colorize, overlay, overlay_grid, show_overlay
from gradcam_tutorial.viz import colour_bar_map, heatmap_on_photo, resize_heatmap
from test_user_visible import blend, jet_of, jet_rgb


def test_show_overlay_outlines_the_visible_box_and_draws_a_colour_bar():
    image = Image.new("RGB", (64, 48), "white")
    fig, ax = plt.subplots()
    show_overlay(ax, image, np.zeros((7, 7)), "t", colormap="viridis", box=(8.0, 4.0, 56.0, 44.0))
    (rectangle,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert (rectangle.get_x(), rectangle.get_y(), rectangle.get_width(), rectangle.get_height()) == (
        8.0,
        4.0,
        48.0,
        40.0,
    )
    assert rectangle.get_linestyle() == "--" and not rectangle.get_fill()
    assert len(fig.axes) == 2, "the image and its colour bar"
    assert fig.axes[1].get_ylabel() == "Grad-CAM (normalised)"
    plt.close(fig)


def test_overlay_grid_outlines_every_panel_and_uses_the_colour_map_it_is_given():
    image = Image.new("RGB", (32, 32), "white")
    fig = overlay_grid(image, [np.ones((4, 4))] * 3, ["a", "b", "c"], columns=2, colormap="viridis", box=(0, 0, 16, 16))
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b", "c")]
    assert len(panels) == 3 and all(len(ax.patches) == 1 for ax in panels)
    pixel = panels[0].images[0].get_array()[16, 16].astype(float)
    expected = 0.6 * 255 + 0.4 * colorize(np.ones((1, 1)), "viridis")[0, 0]  # white photo, map at 1.0
    assert np.abs(pixel - expected).max() <= 1
    assert fig.axes[-1].get_ylabel() == "Grad-CAM (normalised)", "one shared colour bar"
    plt.close(fig)


@pytest.mark.parametrize("height", [1, 511, 512, 513, 1300])
def test_overlay_in_bands_equals_one_blend_of_the_whole_photo(height):
    """overlay() works a band of rows at a time; no seam or skipped row may show at any height."""
    rng = np.random.default_rng(height)
    photo = rng.integers(0, 256, (height, 37, 3), dtype=np.uint8)
    heatmap = rng.random((height, 37)).astype(np.float32)
    whole = cv2.addWeighted(photo, 0.6, colorize(heatmap, "viridis"), 0.4, 0.0)
    assert np.array_equal(overlay(photo, heatmap, colormap="viridis"), whole)
    assert np.array_equal(overlay(Image.fromarray(photo), heatmap, colormap="viridis"), whole)


def test_explanation_places_each_map_on_request_as_the_stack_does(effnet):
    from gradcam_tutorial import explain
    from gradcam_tutorial.images import demo_grid

    grid, tiles = demo_grid()
    result = explain(grid.crop((0, 0, 512, 300)), *effnet, classes=[tile.class_index for tile in tiles])
    assert result.heatmaps.shape == (4, 300, 512)
    for k in range(4):
        assert np.array_equal(result.heatmap(k), result.heatmaps[k])
    assert result.heatmaps is result.heatmaps  # made once, then kept


@pytest.mark.slow
@pytest.mark.parametrize(("small", "size"), [((7, 7), (224, 224)), ((7, 7), (375, 500)), ((14, 10), (3000, 4000))])
def test_the_one_resize_is_opencvs_bilinear(small, size):
    """OpenCV's INTER_LINEAR (an independent implementation, half-pixel centres) is the oracle."""
    from gradcam_tutorial.viz import resize_heatmap

    heatmap = np.random.default_rng(0).random(small).astype(np.float32)
    ours = resize_heatmap(heatmap, size)
    theirs = cv2.resize(heatmap, size[::-1], interpolation=cv2.INTER_LINEAR)
    assert ours.shape == size and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    stack = resize_heatmap(np.stack([heatmap, 1 - heatmap]), size)  # a stack of maps at once
    np.testing.assert_allclose(stack[1], 1 - ours, atol=2e-6)


@pytest.mark.parametrize("name", ["jet", "viridis", "inferno"])
def test_colour_bars_show_the_overlays_own_colours(name):
    """The bar is drawn from the same table the overlay indexes: every level, the same RGB."""
    from gradcam_tutorial.viz import colour_bar_map

    levels = np.linspace(0.0, 1.0, 256)
    overlay_colours = colorize(levels[None, :], name)[0]
    bar_colours = np.round(np.asarray(colour_bar_map(name)(levels))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(bar_colours, overlay_colours)
    bgr = cv2.applyColorMap(
        np.arange(256, dtype=np.uint8)[None, :],
        {"jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS, "inferno": cv2.COLORMAP_INFERNO}[name],
    )
    np.testing.assert_array_equal(overlay_colours, bgr[0, :, ::-1])  # OpenCV's table, turned to RGB


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


def posts_blend(photo: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    return blend(photo, jet_of(heatmap), 0.4)


@pytest.fixture
def photo_and_map() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    heatmap = np.clip(rng.random((30, 40)), 0, 1).astype(np.float32)
    return photo, heatmap


def bar_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_ylabel() == BAR_LABEL]


def assert_jet_bar_from_0_to_1(cbar_ax) -> None:
    assert cbar_ax.get_ylim() == (0, 1)  # the scale the reader reads
    (solids,) = [c for c in cbar_ax.collections if isinstance(c, QuadMesh)]
    drawn = np.round(255 * solids.cmap(np.linspace(0, 1, 256))[:, :3]).astype(int)
    np.testing.assert_array_equal(drawn, jet_rgb().astype(int))


def assert_outlined(ax, box) -> None:
    (outline,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    left, top, right, bottom = box
    assert outline.get_xy() == (left, top)
    assert (outline.get_width(), outline.get_height()) == (right - left, bottom - top)
    assert not outline.get_fill() and outline.get_linestyle() == "--" and outline.get_linewidth() == 1.2
    assert outline.get_edgecolor() == to_rgba("white")


def test_one_overlay_shows_the_blend_titled_with_a_jet_bar_from_0_to_1(photo_and_map):
    photo, heatmap = photo_and_map
    fig, ax = plt.subplots()
    show_overlay(ax, photo, heatmap, "tabby", box=(4, 2, 36, 28))
    np.testing.assert_allclose(ax.images[0].get_array(), posts_blend(photo, heatmap), atol=1)
    assert ax.get_title() == "tabby" and ax.title.get_fontsize() == 10
    assert not ax.axison
    assert_outlined(ax, (4, 2, 36, 28))
    (cbar_ax,) = bar_axes(fig)
    assert_jet_bar_from_0_to_1(cbar_ax)
    # the bar takes 4.6 % of the panel's width, 4 % away from it
    assert cbar_ax.get_position().width == pytest.approx(0.046 * (0.9 - 0.125), rel=0.02)
    assert cbar_ax.get_position().x0 - ax.get_position().x1 == pytest.approx(0.04 * (0.9 - 0.125), rel=0.05)


def test_an_overlay_without_a_bar_or_box_draws_neither(photo_and_map):
    photo, heatmap = photo_and_map
    fig, ax = plt.subplots()
    show_overlay(ax, photo, heatmap, colorbar=False)
    assert fig.axes == [ax] and not ax.patches and ax.get_title() == ""


def test_a_grid_has_one_titled_panel_per_map_and_one_shared_bar(photo_and_map):
    photo, heatmap = photo_and_map
    maps = [heatmap, 1 - heatmap, heatmap**2, np.sqrt(heatmap)]
    titles = ["a", "b", "c", "d"]
    fig = overlay_grid(photo, maps, titles, box=(4, 2, 36, 28))
    assert tuple(fig.get_size_inches()) == pytest.approx((3 * 3.4, 2 * 3.4))  # three columns by default
    panels = [ax for ax in fig.axes if ax.get_ylabel() != BAR_LABEL]
    assert len(panels) == 6 and not any(ax.axison for ax in panels)
    for ax, heat, title in zip(panels, maps, titles, strict=False):
        assert ax.get_title() == title
        np.testing.assert_allclose(ax.images[0].get_array(), posts_blend(photo, heat), atol=1)
        assert_outlined(ax, (4, 2, 36, 28))
    assert not panels[4].images and not panels[5].images
    (cbar_ax,) = bar_axes(fig)
    assert_jet_bar_from_0_to_1(cbar_ax)
    right_edge = max(ax.get_position().x1 for ax in panels)
    assert cbar_ax.get_position().width == pytest.approx(0.02 * (0.9 - 0.125), rel=0.1)
    assert cbar_ax.get_position().x0 - right_edge == pytest.approx(0.02 * (0.9 - 0.125), rel=0.1)


@pytest.mark.slow
def test_a_grid_names_its_bar_and_leaves_room_for_two_line_titles(photo_and_map):
    """A grid of several methods says what its bar measures; a title of two lines does not reach the
    panel above it."""
    photo, heatmap = photo_and_map
    side = min(heatmap.shape)  # square panels fill their cells, as the tutorial's photos do
    photo, heatmap = np.ascontiguousarray(np.asarray(photo)[:side, :side]), heatmap[:side, :side]
    titles = [f"method {k}\nclass {k}" for k in range(24)]
    fig = overlay_grid(photo, [heatmap] * 24, titles, columns=4, label="each method's map", panel=2.6)
    assert tuple(fig.get_size_inches()) == pytest.approx((4 * 2.6, 6 * 2.6))
    assert [ax.get_ylabel() for ax in fig.axes].count("each method's map") == 1
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_ylabel() != "each method's map"]
    for upper, lower in zip(panels[:-4], panels[4:], strict=True):  # same column, one row apart
        title_bottom = lower.title.get_window_extent(renderer).y0
        panel_top = lower.get_window_extent(renderer).y1
        above = upper.get_window_extent(renderer).y0
        assert panel_top <= title_bottom and lower.title.get_window_extent(renderer).y1 <= above


def test_a_grid_with_a_missing_title_is_refused(photo_and_map):
    photo, heatmap = photo_and_map
    with pytest.raises(ValueError):
        overlay_grid(photo, [heatmap, heatmap], ["only one"])


def test_colour_bars_default_to_the_jet_of_the_overlays():
    drawn = np.round(255 * colour_bar_map()(np.linspace(0, 1, 256))[:, :3]).astype(int)
    np.testing.assert_array_equal(drawn, jet_rgb().astype(int))
