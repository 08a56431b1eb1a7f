"""The report's faithfulness runs: deletion, insertion, Average Drop and ROAD of Grad-CAM and its
baselines on photos, their summaries, and the figure of their mean curves.

The measures are defined in :mod:`.faithfulness` and :mod:`.road`; :func:`score_maps` is the one
per-photo scoring path, shared with the variants' comparison (:mod:`.variants`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cam import GradCAM
from ..data import Sample, ValPhoto
from ..models import ModelSpec
from ..viz import resize_heatmap
from . import baselines, faithfulness, road, stats
from .shared import gradcam_map, interval, model_input

METHODS = ("gradcam", "last_conv", "random", "center")
DEFAULT_STEPS = 16  # how far the AUCs move when doubled: results/report-full.json, "steps_check"


@dataclass(frozen=True)
class PhotoScores:
    """One photo's perturbation scores, one row per map: the curves, and ROAD's probabilities
    (``{"morf", "lerf"}`` -> ``(maps, percentages)``) where percentages were asked for."""

    curves: faithfulness.PerturbationCurves
    road: dict[str, np.ndarray] | None


def score_maps(
    scorer: nn.Module,
    x: torch.Tensor,
    maps: Sequence[torch.Tensor],
    class_idx: int,
    steps: int,
    seed: int = 0,
    road_percentages: Sequence[float] = (),
) -> PhotoScores:
    """Deletion, insertion and (optionally) ROAD of input-sized ``maps`` of one input ``(1, C, H, W)``;
    each map is ranked once for all three."""
    ranks = [faithfulness.saliency_rank(m, seed) for m in maps]
    curves = faithfulness.perturbation_curves(scorer, x[0], maps, class_idx, steps=steps, seed=seed, ranks=ranks)
    scores = None
    if road_percentages:
        scores = road.road_scores(scorer, x[0], maps, class_idx, road_percentages, seed=seed, ranks=ranks)
    return PhotoScores(curves, scores)


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

    with_road = first.road_morf is not None
    return dataclasses.replace(
        first,
        class_indices=joined("class_indices"),
        deletion=joined("deletion"),
        insertion=joined("insertion"),
        full_probability=joined("full_probability"),
        explained_probability=joined("explained_probability"),
        road_morf=joined("road_morf") if with_road else None,
        road_lerf=joined("road_lerf") if with_road else None,
    )


def _method_maps(
    cams: tuple[GradCAM, GradCAM], x: torch.Tensor, class_idx: int, seed: int
) -> tuple[list[torch.Tensor], float]:
    """The maps of :data:`METHODS` for one input, at input size, and the class's probability."""
    size = (x.shape[-2], x.shape[-1])
    gradcam, probability, small = gradcam_map(cams[0], x, class_idx)
    last_conv, _, _ = gradcam_map(cams[1], x, class_idx)
    # the random map has Grad-CAM's own resolution, so it is as blobby as the map it stands in for
    random = torch.from_numpy(resize_heatmap(baselines.random_map(small, seed + class_idx), size))
    center = torch.from_numpy(baselines.center_map(size))
    return [gradcam, last_conv, random, center], probability


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
    deletion, insertion, full, explained, morf, lerf = [], [], [], [], [], []
    scorer = faithfulness.channels_last_copy(model)
    cams = (GradCAM(model, spec.target_layer), GradCAM(model, spec.last_conv_layer))
    for number, sample in enumerate(samples):
        x = model_input(sample, spec)
        maps, probability = _method_maps(cams, x, sample.class_index, seed)
        scored = score_maps(scorer, x, maps, sample.class_index, steps, seed, road_percentages)
        deletion.append(scored.curves.deletion)
        insertion.append(scored.curves.insertion)
        full.append(probability)
        explained.append(faithfulness.masked_probabilities(scorer, x[0], maps, sample.class_index))
        if scored.road is not None:
            morf.append(scored.road["morf"])
            lerf.append(scored.road["lerf"])
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


def _confidence_terms(faith: Faithfulness, seed: int) -> dict[str, object]:
    """Average Drop and Increase in Confidence per method, with intervals of their per-photo terms."""
    full = faith.full_probability[:, None]
    drops = np.maximum(0.0, full - faith.explained_probability) / full
    rises = (faith.explained_probability > full).astype(float)
    explained = {m: faith.explained_probability[:, i] for i, m in enumerate(faith.methods)}
    return {
        "avg_drop": {m: faithfulness.average_drop(faith.full_probability, v) for m, v in explained.items()},
        "increase_in_confidence": {
            m: faithfulness.increase_in_confidence(faith.full_probability, v) for m, v in explained.items()
        },
        "avg_drop_ci95": {m: list(stats.bootstrap_ci(drops[:, i], seed=seed)) for i, m in enumerate(faith.methods)},
        "increase_in_confidence_ci95": {
            m: list(stats.bootstrap_ci(rises[:, i], seed=seed)) for i, m in enumerate(faith.methods)
        },
    }


def summarise_faithfulness(faith: Faithfulness, seed: int = 0) -> dict[str, object]:
    """The faithfulness numbers of the results' top level, unrounded (see :mod:`.faithfulness`).

    Unrounded so that a reader of the numbers rounds once: rounding to 4 decimals and then printing
    3 can turn a last-bit difference between two CPUs into a different third decimal.
    """
    insertion, deletion = faith.auc("insertion"), faith.auc("deletion")

    def paired(curve: dict[str, np.ndarray], other: str) -> list[float]:
        return list(stats.paired_bootstrap_ci(curve["gradcam"], curve[other], seed=seed))

    return {
        "n_photos": len(faith.class_indices),
        "steps": int(len(faith.fractions) - 1),
        "insertion_auc": {m: interval(insertion[m], seed) for m in faith.methods},
        "deletion_auc": {m: interval(deletion[m], seed) for m in faith.methods},
        "insertion_diff_ci95": paired(insertion, "random"),
        "deletion_diff_ci95": paired(deletion, "random"),
        "mean_curves": {
            "fractions": [float(f) for f in faith.fractions],
            "deletion": {m: [float(v) for v in faith.deletion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
            "insertion": {m: [float(v) for v in faith.insertion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
        },
        "insertion_diff_vs_center_ci95": paired(insertion, "center"),
        "deletion_diff_vs_center_ci95": paired(deletion, "center"),
        **_confidence_terms(faith, seed),
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
    changes = [coarse.auc(c)[m] - fine.auc(c)[m] for c in ("insertion", "deletion") for m in check.methods]  # per photo
    out["max_mean_change_when_doubled"] = max(abs(float(change.mean())) for change in changes)
    out["mean_abs_photo_change_when_doubled"] = max(float(np.abs(change).mean()) for change in changes)
    return out


def summarise_road(faith: Faithfulness, seed: int = 0) -> dict[str, object]:
    """ROAD: mean probability after removing the most (MoRF) and least (LeRF) relevant pixels."""
    morf, lerf = faith.road("morf"), faith.road("lerf")
    out: dict[str, Any] = {
        "percentages": list(faith.road_percentages),
        "noise_std": road.NOISE_STD,
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


def plot_curves(summary: dict[str, Any], ax_deletion, ax_insertion, ax_road=None) -> None:
    """Mean deletion and insertion curves per method (and ROAD's, on ``ax_road``) from a summary:
    :func:`summarise_faithfulness`'s keys, with :func:`summarise_road`'s under ``"faithfulness"`` ->
    ``"road"`` for ROAD (the full run's results, or a live run's)."""
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
        _plot_road(summary["faithfulness"]["road"], ax_road)


def _plot_road(road_summary: dict[str, Any], ax) -> None:
    for order, style in (("morf", "-"), ("lerf", "--")):
        for index, (method, values) in enumerate(road_summary["mean_curves"][order].items()):
            ax.plot(
                road_summary["percentages"],
                values,
                ls=style,
                marker="o",
                ms=3,
                color=f"C{index}",
                label=f"{method} {order.upper()}",
            )
    ax.set_xlabel("% of pixels removed and imputed (ROAD)")
    ax.set_ylabel("probability of the true class")
    ax.set_title(f"ROAD, {road_summary['n_photos']} validation photos", fontsize=10)
    # below the axis: the LeRF curves run along the top and the MoRF curves fill the bottom left
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def plot_aucs(summary: dict[str, Any], ax_insertion, ax_deletion) -> None:
    """Mean insertion and deletion AUC per method with their 95 % bootstrap intervals, from a summary."""
    for ax, key in ((ax_insertion, "insertion_auc"), (ax_deletion, "deletion_auc")):
        names = list(summary[key])
        means = np.array([summary[key][m]["mean"] for m in names])
        bounds = np.array([summary[key][m]["ci95"] for m in names])
        ax.bar(names, means, yerr=np.abs(bounds.T - means), capsize=4, color="tab:blue")
        ax.set_title(f"{key.replace('_', ' ')} (95 % bootstrap CI)")
