"""What the figures draw: the crop box outline and the colour bar."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from gradcam_tutorial import colorize, overlay_grid, show_overlay


def test_show_overlay_outlines_the_visible_box_and_draws_a_colour_bar():
    image = Image.new("RGB", (64, 48), "white")
    fig, ax = plt.subplots()
    show_overlay(ax, image, np.zeros((7, 7)), "t", colormap="viridis", box=(8.0, 4.0, 56.0, 44.0))
    (rectangle,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert (rectangle.get_x(), rectangle.get_y(), rectangle.get_width(), rectangle.get_height()) == (8.0, 4.0, 48.0, 40.0)
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
