"""From a photo to heatmaps on that photo: the path the notebooks, the report and the CLI share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from .cam import GradCAM
from .classes import resolve_class
from .images import to_rgb
from .models import ModelSpec
from .viz import heatmap_on_photo


@dataclass(frozen=True)
class Explanation:
    """Heatmaps in the photo's own pixel grid, one per explained class, and the top-k predictions."""

    image: Image.Image
    class_indices: list[int]
    class_names: list[str]
    probabilities: list[float]
    heatmaps: np.ndarray  # (K, height, width) in [0, 1]
    small_heatmaps: np.ndarray  # (K, h, w) at the layer's resolution
    top_k: list[tuple[int, str, float]]
    box: tuple[float, float, float, float]
    layer: str


def explain(
    image: Image.Image,
    model: nn.Module,
    spec: ModelSpec,
    classes: Sequence[int | str] | int | str | None = None,
    layer: nn.Module | str | None = None,
    top_k: int = 5,
) -> Explanation:
    """Explain ``classes`` (names or indices, one or a sequence; default: the top class) on one photo.

    A photo in any Pillow mode is first converted to RGB as a viewer would show it (:func:`to_rgb`).

    All classes come from one forward pass. Heatmaps are normalised per class and placed on the
    part of the photo the network saw (see :meth:`ModelSpec.visible_box`).
    """
    names = spec.categories
    if isinstance(classes, (str, int, np.integer)):  # one class, by index or name (bools are refused below)
        classes = [classes]
    targets = None if classes is None or len(classes) == 0 else [resolve_class(c, names) for c in classes]
    image = to_rgb(image) if image.mode != "RGB" else image  # L, P, RGBA, CMYK, YCbCr, LAB, 16-bit...
    x = spec.preprocess(image)
    with GradCAM(model, layer if layer is not None else spec.target_layer) as cam:
        result = cam.compute(x, None if targets is None else [targets])
    small = result.normalized()[0].cpu().numpy().astype(np.float32)
    box = spec.visible_box(image.size)
    pixels = spec.pixel_box(image.size)  # the crop the input was made from
    full = np.stack([heatmap_on_photo(m, image.size, pixels) for m in small])
    probabilities = torch.softmax(result.logits[0], dim=0)
    top = torch.topk(probabilities, k=min(top_k, probabilities.numel()))
    indices = result.class_indices[0].tolist()
    return Explanation(
        image=image,
        class_indices=indices,
        class_names=[names[i] for i in indices],
        probabilities=[float(p) for p in result.probabilities[0]],
        heatmaps=full,
        small_heatmaps=small,
        top_k=[(int(i), names[int(i)], float(p)) for p, i in zip(top.values, top.indices)],
        box=box,
        layer=cam.layer_name,
    )
