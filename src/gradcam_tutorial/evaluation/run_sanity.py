"""The report's sanity check (Adebayo et al. 2018): cascading randomisation on photos, its summary
and its figure. The similarity measures and the randomisation are defined in :mod:`.sanity`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cam import GradCAM
from ..data import Sample, ValPhoto
from ..models import ModelSpec
from . import saliency
from .sanity import cascading_randomisation, prepare, randomisation_stages, rank_correlation, structural_similarity
from .shared import gradcam_map, model_input

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
    makers = {
        "gradcam": lambda: gradcam_map(GradCAM(model, spec.target_layer), x, class_idx)[0].numpy(),
        "gradient": lambda: saliency.gradient_saliency(model, x, class_idx),
        "guided_backprop": lambda: saliency.guided_backprop(model, x, class_idx),
    }
    return {method: makers[method]() for method in methods}


def _reference(
    originals: list[dict[str, Any]], methods: Sequence[str], following: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Each photo's map against the next photo's, per method: the last against ``following``'s
    (the next photo of a longer run) or, without it, against the first."""
    n = len(originals)
    if n < 2 and following is None:
        return {m: np.zeros(n) for m in methods}
    ring = originals + ([following] if following is not None else originals[:1])
    return {m: np.array([abs(rank_correlation(ring[i][m], ring[i + 1][m])) for i in range(n)]) for m in methods}


def sanity_check(
    model: nn.Module,
    spec: ModelSpec,
    samples: Sequence[Sample | ValPhoto],
    depths: Sequence[int] | None = None,
    seed: int = 0,
    methods: Sequence[str] = SANITY_METHODS,
    progress: Callable[[int], object] | None = None,
    following: Sample | ValPhoto | None = None,
) -> Sanity:
    """Cascading randomisation: compare maps before and after re-initialising the top stages.

    ``depths`` picks after how many stages the maps are compared (default: every stage; the last
    one, all stages, is full randomisation). ``following`` is the photo after ``samples`` in a run
    split into parts: the last photo's unrelated-photos reference is taken against it, so the parts
    give the whole run's numbers.
    """
    stages = randomisation_stages(model)
    wanted = sorted(set(depths)) if depths is not None else list(range(1, len(stages) + 1))
    inputs = [model_input(s, spec) for s in samples]
    originals = [
        {m: prepare(v) for m, v in saliency_maps(model, spec, x, s.class_index, methods).items()}
        for x, s in zip(inputs, samples, strict=True)
    ]  # each ranked and scaled once, for every depth
    spearman = {m: np.zeros((len(samples), len(wanted))) for m in methods}
    ssim = {m: np.zeros((len(samples), len(wanted))) for m in methods}
    column = 0
    for depth, (_stage, randomised) in enumerate(cascading_randomisation(model, seed, stages), start=1):
        if depth not in wanted:
            continue
        for row, (x, sample) in enumerate(zip(inputs, samples, strict=True)):
            for method, values in saliency_maps(randomised, spec, x, sample.class_index, methods).items():
                prepared = prepare(values)
                spearman[method][row, column] = rank_correlation(originals[row][method], prepared)
                ssim[method][row, column] = structural_similarity(originals[row][method], prepared)
        column += 1
        if progress is not None:
            progress(1)
        if depth == wanted[-1]:
            break
    after = None
    if following is not None:
        x = model_input(following, spec)
        after = {m: prepare(v) for m, v in saliency_maps(model, spec, x, following.class_index, methods).items()}
    reference = _reference(originals, methods, after)
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


def summarise_sanity(sanity: Sanity) -> dict[str, object]:
    """The ``"sanity"`` entry: the unrelated-photos reference, the fully randomised similarity and
    the mean curves over depth (what :func:`plot_sanity` draws)."""
    return {
        "n_photos": int(next(iter(sanity.spearman.values())).shape[0]),
        "depth": sanity.depths[-1],
        "reference_abs_spearman": float(sanity.reference["gradcam"].mean()),
        "reference_abs_spearman_by_method": {m: float(v.mean()) for m, v in sanity.reference.items()},
        "final_abs_spearman": {m: float(np.abs(v[:, -1]).mean()) for m, v in sanity.spearman.items()},
        "final_ssim": {m: float(v[:, -1].mean()) for m, v in sanity.ssim.items()},
        "curve_abs_spearman": {m: [float(c) for c in np.abs(v).mean(0)] for m, v in sanity.spearman.items()},
        "curve_ssim": {m: [float(c) for c in v.mean(0)] for m, v in sanity.ssim.items()},
        "stages": list(sanity.stages),
    }


def summarise_sanity_headline(sanity: Sanity) -> dict[str, object]:
    """The sanity numbers of the results' top level: Grad-CAM's and the gradient's similarity after
    full randomisation (the older keys, kept for readers of earlier results)."""
    return {
        "sanity_n_photos": int(sanity.spearman["gradcam"].shape[0]),
        "sanity_mean_abs_spearman": float(np.abs(sanity.spearman["gradcam"][:, -1]).mean()),
        "sanity_mean_abs_spearman_gradient": float(np.abs(sanity.spearman["gradient"][:, -1]).mean()),
        "sanity_mean_ssim": float(sanity.ssim["gradcam"][:, -1].mean()),
    }


def _depth_axis(ax, stages: Sequence[str], label: str) -> None:
    ax.set_xticks(range(len(stages)), stages, rotation=90, fontsize=7)
    ax.set_xlabel("randomised down to (cumulative, from the top)")
    ax.set_ylabel(label)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)


def plot_sanity(summary: dict[str, Any], ax_spearman, ax_ssim=None) -> None:
    """Mean |Spearman| (and SSIM, on ``ax_ssim``) to the trained model's map vs. randomisation depth
    from :func:`summarise_sanity`'s entry; dashed, each method's unrelated-photos reference level.

    Results written before ``"curve_ssim"`` existed draw the |Spearman| panel only.
    """
    for method, curve in summary["curve_abs_spearman"].items():
        line = ax_spearman.plot(range(len(curve)), curve, marker="o", ms=3, label=method)[0]
        if summary["n_photos"] > 1:
            reference = summary["reference_abs_spearman_by_method"][method]
            ax_spearman.axhline(reference, ls="--", lw=1, color=line.get_color())
    ax_spearman.set_title(f"{summary['n_photos']} validation photos; dashed: maps of unrelated photos", fontsize=9)
    _depth_axis(ax_spearman, summary["stages"], "mean |Spearman| to the trained map")
    if ax_ssim is not None and "curve_ssim" in summary:
        for method, curve in summary["curve_ssim"].items():
            ax_ssim.plot(range(len(curve)), curve, marker="o", ms=3, label=method)
        _depth_axis(ax_ssim, summary["stages"], "mean SSIM to the trained map")
