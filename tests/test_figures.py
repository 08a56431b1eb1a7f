"""The figures the tutorial draws: what a reader sees on the axes, read back from matplotlib.

Colours are checked against OpenCV's JET table and the post's 0.6 / 0.4 blend (test_user_visible's references); the
layout constants (panel size, outline style, title size) are the ones the committed notebooks show.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from gradcam_tutorial import overlay_grid, show_overlay
from gradcam_tutorial.viz import colour_bar_map
from test_user_visible import blend, jet_of, jet_rgb

BAR_LABEL = "Grad-CAM (normalised)"


def posts_blend(photo: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    return blend(photo, jet_of(heatmap), 0.4)


@pytest.fixture
def photo_and_map() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    heatmap = np.clip(rng.random((30, 40)), 0, 1).astype(np.float32)
    return photo, heatmap


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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
