"""From a photo to heatmaps on that photo: the path the notebooks, the report and the CLI share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from PIL import Image
from torch import nn

from .cam import GradCAM
from .classes import resolve_class
from .images import to_rgb
from .layers import resolve_layer
from .models import ModelSpec
from .viz import heatmap_on_photo


@dataclass(frozen=True)
class Explanation:
    """One forward pass's explanation: a small heatmap per class, the top-k predictions, and the
    geometry that places each map on the photo's own pixel grid.

    Full-size maps are made on request (:meth:`heatmap`, :attr:`heatmaps`): on a 40-megapixel photo
    each one is 160 MB of float32, so code that handles one class at a time never holds them all.
    """

    image: Image.Image
    class_indices: list[int]
    class_names: list[str]
    probabilities: list[float]
    small_heatmaps: np.ndarray  # (K, h, w) in [0, 1], at the layer's resolution
    top_k: list[tuple[int, str, float]]
    box: tuple[float, float, float, float]  # the part of the photo the network saw, exact
    pixel_box: tuple[int, int, int, int]  # the same in whole pixels: where the input was cropped
    layer: str

    def heatmap(self, k: int) -> np.ndarray:
        """Class ``k``'s map on the photo's pixel grid, ``(height, width)`` float32 in [0, 1]."""
        return heatmap_on_photo(self.small_heatmaps[k], self.image.size, self.pixel_box)

    @cached_property
    def heatmaps(self) -> np.ndarray:
        """All classes' maps on the photo's pixel grid, ``(K, height, width)``; kept once made."""
        return np.stack([self.heatmap(k) for k in range(len(self.small_heatmaps))])


def explain(
    image: Image.Image,
    model: nn.Module,
    spec: ModelSpec,
    classes: Sequence[int | str] | int | str | None = None,
    layer: nn.Module | str | None = None,
    top_k: int = 5,
    cam: GradCAM | None = None,
) -> Explanation:
    """Explain ``classes`` (names or indices, one or a sequence; default: the top class) on one photo.

    A photo in any Pillow mode is first converted to RGB as a viewer would show it (:func:`to_rgb`).

    All classes come from one forward pass. Heatmaps are normalised per class and placed on the
    part of the photo the network saw (see :meth:`ModelSpec.visible_box`).

    Explaining many photos, pass one ``cam`` (a :class:`GradCAM` of this model, at ``layer`` or the
    spec's default) to every call: it remembers what makes the next call cheaper.
    """
    names = spec.categories
    if isinstance(classes, (str, int, np.integer)):  # one class, by index or name (bools are refused below)
        classes = [classes]
    targets = None if classes is None or len(classes) == 0 else [resolve_class(c, names) for c in classes]
    image = to_rgb(image)  # L, P, RGBA, CMYK, YCbCr, LAB, 16-bit, an RGB colour key; plain RGB as is
    x = spec.preprocess(image)
    wanted = layer if layer is not None else spec.target_layer
    if cam is None:
        cam = GradCAM(model, wanted)
    elif cam.model is not model:
        raise ValueError("cam explains another model; make a GradCAM of this one")
    elif layer is not None and resolve_layer(model, layer)[1] is not cam.layer:
        raise ValueError(f"cam explains layer {cam.layer_name!r}, not the requested {layer!r}")
    result = cam.compute(x, None if targets is None else [targets])
    small = result.normalized()[0].cpu().numpy().astype(np.float32)
    probabilities = torch.softmax(result.logits[0], dim=0)
    top = torch.topk(probabilities, k=min(top_k, probabilities.numel()))
    indices = result.class_indices[0].tolist()
    return Explanation(
        image=image,
        class_indices=indices,
        class_names=[names[i] for i in indices],
        probabilities=[float(p) for p in result.probabilities[0]],
        small_heatmaps=small,
        top_k=[(int(i), names[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)],
        box=spec.visible_box(image.size),
        pixel_box=spec.pixel_box(image.size),
        layer=cam.layer_name,
    )
