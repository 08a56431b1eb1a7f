"""Grad-CAM's variants on the same photos and measures, each paired with Grad-CAM (the report's table).

Per photo, every variant explains the true class at one layer from one forward pass
(:func:`~gradcam_tutorial.methods.compute_methods`), and each map goes through the measures of the
rest of the report: energy and pointing against the boxes, deletion and insertion AUCs, the ROAD
gap (LeRF minus MoRF), and the |Spearman| between the trained model's map and the fully randomised
model's (the last point of the sanity check's cascade). Score-CAM runs one forward pass per channel
that varies over the map (of 1280 at EfficientNet-Lite0's head), so it is scored on an evenly spread subset; its
paired comparison uses Grad-CAM on the same photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ValPhoto
from ..images import load_image
from ..methods import CAM_METHODS, compute_methods
from ..models import ModelSpec
from ..viz import resize_heatmap
from . import faithfulness, road, stats
from .run_faithfulness import score_maps
from .run_localisation import BoxTargets
from .sanity import rank_correlation
from .shared import spread_positions

MEASURES = ("energy", "pointing", "insertion_auc", "deletion_auc", "road_gap", "sanity_final_abs_spearman")
# higher is better for every measure but these (deletion: the class should vanish fast; sanity: the
# map should change when the weights do)
LOWER_IS_BETTER = ("deletion_auc", "sanity_final_abs_spearman")


@dataclass(frozen=True)
class VariantScores:
    """Per-photo scores ``(n,)`` per variant and measure; NaN where a variant did not run (Score-CAM
    beyond its subset)."""

    names: tuple[str, ...]
    layer: str
    scores: dict[str, dict[str, np.ndarray]]  # variant -> measure -> (n,)
    same_as_gradcam: dict[str, bool]  # variant -> its scaled map equalled Grad-CAM's on every photo
    # variant -> (n,) 1.0 where its map equalled Grad-CAM's, 0.0 where not, NaN where it did not run
    same_by_photo: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_photos(self) -> int:
        return len(next(iter(next(iter(self.scores.values())).values())))


def evaluate_variants(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[ValPhoto],
    randomised: nn.Module,
    layer: str | None = None,
    names: Sequence[str] = tuple(CAM_METHODS),
    score_cam_photos: int = 10,
    steps: int = 16,
    road_percentages: Sequence[float] = (10.0, 30.0, 50.0, 70.0, 90.0),
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
    offset: int = 0,
    total: int | None = None,
) -> VariantScores:
    """Every measure of :data:`MEASURES` for each variant on ``photos`` (true class, at ``layer``,
    default: the model's default layer).

    ``randomised`` is the model with every stage re-initialised (the sanity check's last step).
    Score-CAM, if named, runs on ``score_cam_photos`` of the photos spread evenly through them. A
    variant whose scaled map equals Grad-CAM's (within 1e-6) shares Grad-CAM's perturbation scores
    instead of recomputing the same numbers: where the gradient is constant over space (a layer
    followed only by pooling and a linear layer), HiResCAM and XGrad-CAM are Grad-CAM. In a run
    split into parts, ``photos`` start at position ``offset`` of the run's ``total``, and Score-CAM's
    photos are the whole run's.
    """
    layer = layer or spec.target_layer
    if "gradcam" not in names:
        raise ValueError("the comparison pairs every variant with Grad-CAM: include 'gradcam'")
    # the channels-last copies give the same maps and scores, faster on CPU (Score-CAM's masked passes)
    scorers = (faithfulness.channels_last_copy(model), faithfulness.channels_last_copy(randomised))
    n = len(photos)
    total = n if total is None else total
    chosen = spread_positions(total, min(score_cam_photos, total)) if total and score_cam_photos > 0 else []
    with_score_cam = {position - offset for position in chosen}
    scores = {name: {m: np.full(n, np.nan) for m in MEASURES} for name in names}
    same = dict.fromkeys(names, True)
    same_by_photo = {name: np.full(n, np.nan) for name in names}
    for row, photo in enumerate(photos):
        used = [v for v in names if v != "scorecam" or row in with_score_cam]
        photo_scores, equal = _score_photo(scorers, spec, photo, layer, used, steps, road_percentages, seed)
        for variant in used:
            same[variant] &= equal[variant]
            same_by_photo[variant][row] = float(equal[variant])
            for measure, value in photo_scores[variant].items():
                scores[variant][measure][row] = value
        if progress is not None:
            progress(1)
    return VariantScores(tuple(names), layer, scores, same, same_by_photo)


def _score_photo(
    scorers: tuple[nn.Module, nn.Module],
    spec: ModelSpec,
    photo: ValPhoto,
    layer: str,
    used: Sequence[str],
    steps: int,
    road_percentages: Sequence[float],
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, bool]]:
    """One photo's :data:`MEASURES` per variant in ``used``, and whether each variant's map was
    Grad-CAM's; scored through the report's own per-photo paths (:class:`~.run_localisation.BoxTargets`,
    :func:`~.run_faithfulness.score_maps`)."""
    image = load_image(photo.path)
    x = spec.preprocess(image)
    size = (x.shape[-2], x.shape[-1])
    trained = compute_methods(scorers[0], layer, x, photo.class_index, used)
    random = compute_methods(scorers[1], layer, x, photo.class_index, used)
    small = {v: trained[v].normalized()[0, 0].numpy() for v in used}
    equal = {v: bool(np.abs(small[v] - small["gradcam"]).max() <= 1e-6) for v in used}
    # perturbation scores once per distinct map: a variant equal to Grad-CAM here reuses its scores
    distinct = [v for v in used if v == "gradcam" or not equal[v]]
    maps = {v: torch.from_numpy(resize_heatmap(small[v], size)) for v in used}
    scored = score_maps(scorers[0], x, [maps[v] for v in distinct], photo.class_index, steps, seed, road_percentages)
    gaps = road.road_gap(scored.road) if scored.road is not None else np.full(len(distinct), np.nan)
    targets = BoxTargets.of(photo, image.size, spec)
    out = {}
    for variant in used:
        index = distinct.index(variant) if variant in distinct else 0  # 0: Grad-CAM's own scores
        energy, pointing = targets.score(small[variant])
        randomised_map = resize_heatmap(random[variant].normalized()[0, 0], size)
        out[variant] = {
            "energy": energy,
            "pointing": pointing,
            "insertion_auc": float(scored.curves.insertion_auc[index]),
            "deletion_auc": float(scored.curves.deletion_auc[index]),
            "road_gap": float(gaps[index]),
            "sanity_final_abs_spearman": abs(rank_correlation(maps[variant].numpy(), randomised_map)),
        }
    return out, equal


def summarise_variants(
    result: VariantScores,
    seed: int = 0,
    localisation_scores: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The ``"variants"`` entry: per variant and measure ``{"mean", "ci95", "n_photos"}`` and the
    paired 95 % interval of (variant - Grad-CAM) on the photos both ran on (``"diff_vs_gradcam_ci95"``).

    ``localisation_scores`` (variant -> ``{"energy", "pointing"}`` per photo, on a larger set where every
    variant ran, e.g. all validation photos) replaces the energy and pointing of the variants it names.
    """
    out: dict[str, Any] = {}
    for variant in result.names:
        entry: dict[str, Any] = {"same_map_as_gradcam": result.same_as_gradcam[variant]}
        for measure in MEASURES:
            table = result.scores
            if localisation_scores is not None and measure in ("energy", "pointing") and variant in localisation_scores:
                table = localisation_scores
            values, reference = table[variant][measure], table["gradcam"][measure]
            ran = ~np.isnan(values)
            low, high = stats.bootstrap_ci(values[ran], seed=seed)
            entry[measure] = {"mean": float(values[ran].mean()), "ci95": [low, high], "n_photos": int(ran.sum())}
            if variant != "gradcam":
                entry[measure]["diff_vs_gradcam_ci95"] = list(
                    stats.paired_bootstrap_ci(values[ran], reference[ran], seed=seed)
                )
        out[variant] = entry
    return out


def verdicts(summary: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per variant and measure: ``"better"``, ``"worse"`` than Grad-CAM or ``"same"`` (the paired
    interval contains 0), read the way each measure is read (see :data:`LOWER_IS_BETTER`)."""
    out: dict[str, dict[str, str]] = {}
    for variant, entry in summary.items():
        if variant == "gradcam":
            continue
        out[variant] = {}
        for measure in (m for m in MEASURES if m in entry):
            interval = entry[measure]["diff_vs_gradcam_ci95"]
            out[variant][measure] = stats.reading(interval, higher_is_better=measure not in LOWER_IS_BETTER)
    return out


MEASURE_LABELS = {
    "energy": "energy",
    "pointing": "pointing",
    "insertion_auc": "insertion AUC",
    "deletion_auc": "deletion AUC",
    "road_gap": "ROAD gap",
    "sanity_final_abs_spearman": "|rho| randomised",
}


def flat_after_randomisation(entry: dict[str, Any]) -> bool:
    """Every randomised map was flat (|rho| exactly 0 on every photo): its low similarity shows that
    nothing was left to compare, not a map that follows the weights, so it earns no ``+``."""
    measure = entry["sanity_final_abs_spearman"]
    return measure["mean"] == 0 and list(measure["ci95"]) == [0, 0]


def _photos(entry: dict[str, Any]) -> str:
    """The photo counts a row rests on: one number, or localisation's count / the rest's."""
    counts = [entry[m]["n_photos"] for m in MEASURES]
    first, rest = counts[MEASURES.index("energy")], counts[MEASURES.index("insertion_auc")]
    return str(first) if len(set(counts)) == 1 else f"{first}/{rest}"


def format_variant_table(summary: dict[str, Any]) -> str:
    """Grad-CAM's own means, then each variant's paired 95 % interval of (variant - Grad-CAM) on the
    photos both ran on, marked ``+`` better, ``-`` worse, ``=`` inside the noise.

    A variant's own mean is not printed beside Grad-CAM's: a variant run on fewer photos (Score-CAM's
    subset) would be set against Grad-CAM's mean on other photos; the paired interval compares like
    with like.
    """
    read = verdicts(summary)
    marks = {"better": "+", "worse": "-", "same": "="}
    lines = [f"{'method':<11}{'photos':>9}" + "".join(f"{MEASURE_LABELS[m]:>21}" for m in MEASURES)]
    gradcam = summary["gradcam"]
    lines.append(
        f"{'gradcam':<11}{_photos(gradcam):>9}"
        + "".join(f"{gradcam[m]['mean']:>19.4f}  " for m in MEASURES)
        + "  (mean)"
    )
    for variant, entry in summary.items():
        if variant == "gradcam":
            continue
        cells = []
        for measure in MEASURES:
            low, high = (bound + 0.0 for bound in entry[measure]["diff_vs_gradcam_ci95"])  # + 0.0: no "-0"
            mark = marks[read[variant][measure]]
            if measure == "sanity_final_abs_spearman" and flat_after_randomisation(entry):
                mark = "?"
            cells.append(f"{f'[{low:+.4f}, {high:+.4f}]':>19} {mark}")
        note = "  (Grad-CAM's maps)" if entry["same_map_as_gradcam"] else ""
        if flat_after_randomisation(entry):
            note += "  (?: every randomised map flat)"
        lines.append(f"{variant:<11}{_photos(entry):>9}" + "".join(cells) + note)
    return "\n".join(lines)


def plot_variant_differences(by_layer: dict[str, dict[str, Any]], axes: Sequence[Any]) -> None:
    """Per measure (one axis each), each variant's paired 95 % interval of (variant - Grad-CAM), one
    colour per layer; the dashed line is 0, no difference. Every axis names its rows, so a reader
    need not count rows across the figure; the legend sits below the axes, where it hides no interval."""
    layers = list(by_layer)
    variants = [v for v in next(iter(by_layer.values())) if v != "gradcam"]
    for ax, measure in zip(axes, MEASURES, strict=True):
        for offset, layer in enumerate(layers):
            for row, variant in enumerate(variants):
                entry = by_layer[layer].get(variant)
                if entry is None:
                    continue
                low, high = entry[measure]["diff_vs_gradcam_ci95"]
                y = row + (offset - (len(layers) - 1) / 2) * 0.25
                label = f"at {layer}" if row == 0 else None  # a label starting with "_" would be hidden
                ax.plot([low, high], [y, y], color=f"C{offset}", linewidth=3, label=label)
                ax.plot([(low + high) / 2], [y], "o", color=f"C{offset}", markersize=3)
        ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(len(variants) - 0.5, -0.5)
        better = "lower is better" if measure in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{MEASURE_LABELS[measure]}\n({better})", fontsize=9)
        ax.set_xlabel("variant - Grad-CAM", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes:  # after the loop: axes sharing y share one set of tick labels
        ax.set_yticks(range(len(variants)), variants)
        ax.tick_params(axis="y", labelleft=True)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(layers), fontsize=8, frameon=False
    )
