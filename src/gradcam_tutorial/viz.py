"""Turning a small heatmap into a picture a reader can trust.

Everything here works in RGB. OpenCV's colour maps return BGR, the classic source of heatmaps whose
"hot" regions look blue; :func:`colorize` converts before anything leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np
import torch
from PIL import Image

# OpenCV maps by name: JET as in the original post, VIRIDIS as a perceptually uniform choice (equal
# steps in value look like equal steps in colour, and it survives greyscale printing).
COLORMAPS = {"jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS, "inferno": cv2.COLORMAP_INFERNO}


# overlay() colours and blends this many rows at a time: a few MB of temporaries at any photo size
_BAND_ROWS = 512


def resize_heatmap(maps: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(h, w)`` map, or a ``(..., h, w)`` stack, to ``size = (height, width)``.

    Pixel centres are aligned (``align_corners=False``), as in OpenCV's ``INTER_LINEAR``, torchcam and
    pytorch-grad-cam. The one resize of the package: overlays, maps on photos and the report's metrics.
    Returns float32 NumPy.
    """
    # torch takes only native, positive-stride, writable arrays: a flipped or read-only map is copied
    as_array = np.require(maps, dtype=np.float32, requirements=["C", "W"]) if isinstance(maps, np.ndarray) else maps
    tensor = torch.as_tensor(as_array)
    tensor = tensor.detach().float().cpu()
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])
    out = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).numpy()


def heatmap_on_photo(heatmap: np.ndarray, photo_size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """Place a map computed on the crop ``box`` (whole pixels) of a photo into the photo's pixel grid.

    Pass the same box the network's input was cropped with (:meth:`ModelSpec.pixel_box`), so the map
    lands exactly where its pixels came from. Outside the box the network saw nothing, so the map is 0
    there rather than stretched over it.
    """
    width, height = photo_size
    x0, y0, x1, y1 = box
    placed = resize_heatmap(heatmap, (y1 - y0, x1 - x0))
    if placed.shape != (height, width):  # only a crop was seen: zeros around it
        full = np.zeros((height, width), dtype=np.float32)
        full[y0:y1, x0:x1] = placed
        placed = full
    return np.clip(placed, 0.0, 1.0, out=placed)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A ``[0, 1]`` map as an ``(h, w, 3)`` uint8 RGB image in the named colour map."""
    table = colour_table(colormap)
    scaled = np.round(255 * np.clip(np.nan_to_num(heatmap), 0.0, 1.0)).astype(np.uint8)
    return table[scaled]


@cache
def colour_table(colormap: str = "jet") -> np.ndarray:
    """The named colour map as a ``(256, 3)`` uint8 RGB table: OpenCV's, as in the original post.

    The one source of colours: overlays index it and colour bars are drawn from it
    (:func:`colour_bar_map`), so a bar shows exactly the colours of the map beside it.
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    levels = np.arange(256, dtype=np.uint8)[:, None]
    table = cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)[:, 0]
    table.flags.writeable = False
    return table


def colour_bar_map(colormap: str = "jet"):
    """:func:`colour_table` as a matplotlib colour map, for colour bars."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(colour_table(colormap) / 255.0, name=f"opencv-{colormap}")


def overlay(
    image: Image.Image | np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet"
) -> np.ndarray:
    """Blend ``(1 - alpha)`` photo with ``alpha`` coloured heatmap (0.6 / 0.4 as the original post).

    The heatmap is resized to the photo first if needed; input and output are RGB uint8.
    """
    if isinstance(image, Image.Image):
        picture = image if image.mode == "RGB" else image.convert("RGB")
        width, height = picture.size

        def band(top: int, bottom: int) -> np.ndarray:  # a few rows at a time, never the whole array
            return np.asarray(picture.crop((0, top, width, bottom)))
    else:
        photo = np.asarray(image)
        if photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"photo must be RGB (h, w, 3); got shape {photo.shape}")
        height, width = photo.shape[:2]

        def band(top: int, bottom: int) -> np.ndarray:
            return photo[top:bottom].astype(np.uint8, copy=False)

    if heatmap.shape != (height, width):
        heatmap = resize_heatmap(heatmap, (height, width))
    blended = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, _BAND_ROWS):  # in bands, so a 40 MP photo needs no full-size temporaries
        bottom = min(top + _BAND_ROWS, height)
        colour = colorize(heatmap[top:bottom], colormap)
        cv2.addWeighted(band(top, bottom), 1.0 - alpha, colour, alpha, 0.0, dst=blended[top:bottom])
    return blended


def _outline(ax, box: Sequence[float]) -> None:
    """A dashed rectangle around ``box = (left, top, right, bottom)``: the part the network saw."""
    from matplotlib.patches import Rectangle

    left, top, right, bottom = box
    ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, lw=1.2, ls="--", ec="white"))


def show_overlay(
    ax,
    image,
    heatmap,
    title: str = "",
    colormap: str = "jet",
    colorbar: bool = True,
    box: Sequence[float] | None = None,
    label: str = "Grad-CAM (normalised)",
):
    """Draw an overlay on a matplotlib axis, axes off, with a colour bar for the heatmap scale.

    ``box`` (the model's visible box) is outlined dashed: outside it the network saw nothing and the
    map is 0, which would otherwise look like a finding. ``label`` names what the colour bar measures.
    """
    import matplotlib.cm
    import matplotlib.colors

    ax.imshow(overlay(image, heatmap, colormap=colormap))
    if box is not None:
        _outline(ax, box)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    if colorbar:
        mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), cmap=colour_bar_map(colormap))
        ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label=label)
    return ax


def overlay_grid(
    image,
    heatmaps: Sequence[np.ndarray],
    titles: Sequence[str],
    columns: int = 3,
    colormap: str = "jet",
    box: Sequence[float] | None = None,
    label: str = "Grad-CAM (normalised)",
    panel: float = 3.4,
):
    """A figure with one overlay per heatmap (e.g. one per class), sharing one colour bar.

    ``label`` names what the colour bar measures; ``panel`` is each overlay's size in inches.
    """
    import matplotlib.pyplot as plt

    rows = -(-len(heatmaps) // columns)
    lines = max((title.count("\n") + 1 for title in titles), default=1)  # room above each panel for its title
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel * columns, panel * rows),
        squeeze=False,
        gridspec_kw={"hspace": 0.1 + 0.12 * lines},
    )
    for ax in axes.flat[len(heatmaps) :]:
        ax.axis("off")
    for ax, heatmap, title in zip(axes.flat[: len(heatmaps)], heatmaps, titles, strict=True):
        show_overlay(ax, image, heatmap, title, colormap=colormap, colorbar=False, box=box)
    import matplotlib.cm
    import matplotlib.colors

    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), cmap=colour_bar_map(colormap))
    fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, label=label)
    return fig
