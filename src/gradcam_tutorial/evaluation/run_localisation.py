"""The report's localisation runs: the pointing game on the demo grid per layer, and energy and
pointing against the validation photos' ground-truth boxes, with their summaries.

The measures themselves are defined in :mod:`.localisation`; :class:`BoxTargets` is the one
per-photo scoring path, shared with the variants' comparison (:mod:`.variants`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cam import GradCAM
from ..data import ValPhoto
from ..explain import explain
from ..images import demo_grid, load_image
from ..methods import compute_methods
from ..models import ModelSpec
from ..viz import heatmap_on_photo
from . import baselines, faithfulness, localisation, stats
from .shared import interval

SMALL_OBJECTS = 0.25  # the informative subset: boxes cover under a quarter of the photo


def candidate_layers(spec: ModelSpec) -> list[str]:
    """The original post's layer, our default, and an earlier block, in that order."""
    return [spec.last_conv_layer, spec.target_layer, spec.earlier_layer]


def pointing_by_layer(
    model: nn.Module, spec: ModelSpec, layers: Sequence[str] | None = None
) -> dict[str, list[localisation.PointingResult]]:
    """Pointing game of each tile's class on the demo grid, per layer (one forward per layer)."""
    grid, tiles = demo_grid()
    boxes = [tile.box for tile in tiles]
    out = {}
    for layer in layers or candidate_layers(spec):
        explanation = explain(grid, model, spec, classes=[tile.class_index for tile in tiles], layer=layer)
        out[layer] = [localisation.pointing_game(explanation.heatmap(k), boxes, k) for k in range(len(tiles))]
    return out


def summarise_pointing(pointing: dict[str, list[localisation.PointingResult]]) -> dict[str, object]:
    """The demo grid's entries of the results: hits per layer and each tile's mass shares."""
    return {
        "pointing_game": {layer: int(sum(r.hit for r in results)) for layer, results in pointing.items()},
        "pointing_shares": {
            layer: [float(r.shares[k]) for k, r in enumerate(results)] for layer, results in pointing.items()
        },
    }


@dataclass(frozen=True)
class BoxTargets:
    """One validation photo's boxes on the grid its maps are placed on (the photo as stored).

    Every map, whatever made it, is placed as :func:`~gradcam_tutorial.explain` places it
    (:func:`~gradcam_tutorial.viz.heatmap_on_photo`) and scored by :meth:`score`; the boxes follow
    the photo's stretch.
    """

    size: tuple[int, int]  # the stored photo's (width, height)
    pixel_box: tuple[int, int, int, int]  # the part of it the network sees
    inside: np.ndarray  # pixels inside a box
    near: np.ndarray  # pixels within the pointing game's tolerance of a box

    @classmethod
    def of(cls, photo: ValPhoto, size: tuple[int, int], spec: ModelSpec) -> BoxTargets:
        return cls(
            size,
            spec.pixel_box(size),
            localisation.box_mask(size, photo.original_size, photo.boxes),
            localisation.box_mask(size, photo.original_size, photo.boxes, localisation.TOLERANCE),
        )

    def score(self, small: np.ndarray) -> tuple[float, float]:
        """Energy and pointing hit (1.0 or 0.0) of a map at any resolution, placed on the photo."""
        placed = heatmap_on_photo(small, self.size, self.pixel_box)
        return localisation.energy(placed, self.inside), float(localisation.pointing_hit(placed, self.near))

    def chance(self) -> tuple[float, float]:
        """What an even map over the visible part scores: energy, and a uniformly random peak's hit rate."""
        seen = localisation.visible_mask(self.size, self.pixel_box)
        return localisation.chance(seen, self.inside), localisation.chance(seen, self.near)


@dataclass(frozen=True)
class Localisation:
    """Per-photo localisation scores against the ground-truth boxes (see :mod:`.localisation`)."""

    methods: tuple[str, ...]  # Grad-CAM layers, then variants, then "center" and "random"
    energy: dict[str, np.ndarray]  # method -> (n,) share of the map's mass in the boxes
    pointing: dict[str, np.ndarray]  # method -> (n,) 1.0 when the peak is within tolerance of a box
    chance_energy: np.ndarray  # (n,) what an even map over the visible part scores
    chance_pointing: np.ndarray  # (n,) what a uniformly random peak scores
    coverage: np.ndarray  # (n,) share of the whole photo covered by the boxes


def _batch_maps(
    model: nn.Module, cams: dict[str, GradCAM], shared: str | None, variants: Sequence[str], x: torch.Tensor, targets
) -> dict[str, np.ndarray]:
    """Each method's ``(n, h, w)`` normalised maps of a batch at the layer's resolution; Grad-CAM at
    ``shared`` comes from the variants' passes."""
    small = {layer: cam.compute(x, targets).normalized()[:, 0].numpy() for layer, cam in cams.items()}
    if shared is not None:
        together = compute_methods(model, shared, x, targets, ("gradcam", *variants))
        small[shared] = together["gradcam"].normalized()[:, 0].numpy()
        small.update({v: together[v].normalized()[:, 0].numpy() for v in variants})
    return small


def evaluate_localisation(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[ValPhoto],
    layers: Sequence[str],
    seed: int = 0,
    batch: int = faithfulness.GRADCAM_BATCH,
    progress: Callable[[int], object] | None = None,
    variants: Sequence[str] = (),
    offset: int = 0,
) -> Localisation:
    """Energy and pointing game of Grad-CAM at each layer and of two baselines, true class.

    ``variants`` (gradient-based names of :data:`~gradcam_tutorial.methods.CAM_METHODS` other than
    ``"gradcam"``) are scored too, at the default layer, from the same passes as Grad-CAM there.
    The baselines are defined on the network's input like Grad-CAM and placed the same way
    (:class:`BoxTargets`): a centred Gaussian and a seeded random map at the target layer's resolution,
    seeded by the photo's position, ``offset`` being the first photo's position in the whole run (so
    a run split into parts draws the same random maps).
    """
    if "gradcam" in variants or "scorecam" in variants:
        raise ValueError("Grad-CAM is scored per layer already, and Score-CAM is too slow for every photo")
    shared = spec.target_layer if variants else None  # its Grad-CAM comes with the variants' passes
    if shared is not None and shared not in layers:
        raise ValueError(f"the variants are scored at the default layer {shared!r}: include it in layers")
    methods = (*layers, *variants, "center", "random")
    scores: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    chances, coverage = [], []
    cams = {layer: GradCAM(model, layer) for layer in layers if layer != shared}
    try:
        for start in range(0, len(photos), batch):
            chunk = photos[start : start + batch]
            images = [load_image(photo.path) for photo in chunk]
            x = torch.cat([spec.preprocess(image) for image in images])
            small = _batch_maps(model, cams, shared, variants, x, [photo.class_index for photo in chunk])
            shape = next(iter(small.values())).shape[-2:]
            for row, (photo, image) in enumerate(zip(chunk, images, strict=True)):
                targets = BoxTargets.of(photo, image.size, spec)
                maps = {method: small[method][row] for method in (*layers, *variants)}
                maps["center"] = baselines.center_map((x.shape[-2], x.shape[-1]))
                maps["random"] = baselines.random_map(shape, seed + offset + start + row)
                for method, values in maps.items():
                    scores[method].append(targets.score(values))
                chances.append(targets.chance())
                coverage.append(localisation.box_coverage(photo.original_size, photo.boxes))
            if progress is not None:
                progress(len(chunk))
    finally:
        for cam in cams.values():
            cam.close()
    table = {m: np.array(scores[m]).reshape(-1, 2) for m in methods}
    return Localisation(
        methods=methods,
        energy={m: table[m][:, 0] for m in methods},
        pointing={m: table[m][:, 1] for m in methods},
        chance_energy=np.array([c[0] for c in chances]),
        chance_pointing=np.array([c[1] for c in chances]),
        coverage=np.array(coverage),
    )


def summarise_localisation(loc: Localisation, default_layer: str, seed: int = 0) -> dict[str, object]:
    """The ``"localisation"`` entry of the results: means and intervals, all photos and small objects."""

    def block(keep: np.ndarray) -> dict[str, object]:
        out: dict[str, Any] = {"n_photos": int(keep.sum())}
        for method in loc.methods:
            out[method] = {
                "energy": interval(loc.energy[method][keep], seed),
                "pointing": interval(loc.pointing[method][keep], seed),
            }
        out["chance_energy"] = float(loc.chance_energy[keep].mean())
        out["chance_pointing"] = float(loc.chance_pointing[keep].mean())
        for measure in ("energy", "pointing"):
            values = getattr(loc, measure)
            out[f"{measure}_diff_vs_center_ci95"] = list(
                stats.paired_bootstrap_ci(values[default_layer][keep], values["center"][keep], seed=seed)
            )
        return out

    summary = block(np.ones(len(loc.coverage), dtype=bool))
    summary["default_layer"] = default_layer
    summary["tolerance_px"] = localisation.TOLERANCE
    summary["small_objects"] = {"max_box_coverage": SMALL_OBJECTS, **block(loc.coverage < SMALL_OBJECTS)}
    return summary
