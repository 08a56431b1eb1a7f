"""What the figures draw: the crop box outline and the colour bar."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from gradcam_tutorial import colorize, overlay, overlay_grid, show_overlay


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
