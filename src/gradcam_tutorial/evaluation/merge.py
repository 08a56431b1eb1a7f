"""Every summary of the full run, computed from its per-photo records (:mod:`.records`).

The records are read back into the same per-photo arrays the report's runners return
(:class:`~.run_localisation.Localisation`, :class:`~.run_faithfulness.Faithfulness`,
:class:`~.run_sanity.Sanity`, :class:`~.variants.VariantScores`) and summarised by the runners' own
summary functions, so a merged run and the notebook's live runs report alike. Nothing here computes
a map: the merge of a 50 000-photo run costs seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import localisation
from . import variants as variant_comparison
from .config import compared_variants, gradient_variants, variant_layers
from .records import Table, stage_family
from .run_faithfulness import (
    METHODS,
    Faithfulness,
    concatenate,
    summarise_faithfulness,
    summarise_road,
    summarise_steps,
)
from .run_localisation import Localisation, candidate_layers, summarise_localisation, summarise_pointing
from .run_sanity import SANITY_METHODS, Sanity, summarise_sanity, summarise_sanity_headline
from .sanity import randomisation_stages
from .units import Context

# the cost record's stages: what each group of units measured
STAGE_GROUPS = {
    "accuracy": "accuracy_and_localisation",
    "train": "accuracy_and_localisation",
    "localisation": "accuracy_and_localisation",
    "grid": "accuracy_and_localisation",
    "sanity": "sanity",
    "faithfulness": "faithfulness",
    "variants": "variants",
}


def summarise(context: Context, table: Table) -> dict[str, Any]:
    """The results dictionary (every key but ``"config"``, which the run adds) from the records."""
    loc = localisation_arrays(context, table)
    sanity = sanity_arrays(context, table)
    summary: dict[str, Any] = {**accuracy(context, table)}
    summary["localisation"] = summarise_localisation(loc, context.spec.target_layer, context.config.seed)
    summary.update(summarise_pointing(grid_pointing(context, table)))
    summary.update(summarise_sanity_headline(sanity), sanity=summarise_sanity(sanity))
    summary.update(faithfulness_summary(context, table))
    summary.update(variants_summary(context, table, loc))
    summary["cost"] = cost(context, table)
    return summary


def accuracy(context: Context, table: Table) -> dict[str, Any]:
    """Top-1 and top-5 on the validation photos and, where the run had them, the training samples."""

    def block(stage: str, n: int) -> dict[str, Any]:
        hits = {k: table.column(stage, "model", k, n) for k in ("top1", "top5")}
        return {"n_photos": n, "top1": float(hits["top1"].mean()), "top5": float(hits["top5"].mean())}

    out = {"val": block("accuracy", len(context.photos["all"]))}
    if context.train:
        out["train_sample"] = {
            **block("train", len(context.train)),
            "note": "ImageNet training photos: the model learned from them",
        }
    return out


def localisation_arrays(context: Context, table: Table) -> Localisation:
    n = len(context.photos["all"])
    methods = (*candidate_layers(context.spec), *gradient_variants(context.config), "center", "random")
    return Localisation(
        methods=methods,
        energy={m: table.column("localisation", m, "energy", n) for m in methods},
        pointing={m: table.column("localisation", m, "pointing", n) for m in methods},
        chance_energy=table.column("localisation", "photo", "chance_energy", n),
        chance_pointing=table.column("localisation", "photo", "chance_pointing", n),
        coverage=table.column("localisation", "photo", "coverage", n),
    )


def grid_pointing(context: Context, table: Table) -> dict[str, list[localisation.PointingResult]]:
    out = {}
    for layer in candidate_layers(context.spec):
        tiles = len(table.values[("grid", layer, "hit")])
        shares, peaks = table.lists("grid", layer, "shares", tiles), table.lists("grid", layer, "peak", tiles)
        regions, hits = table.column("grid", layer, "peak_region", tiles), table.column("grid", layer, "hit", tiles)
        out[layer] = [
            localisation.PointingResult(
                shares[k],
                (int(peaks[k][0]), int(peaks[k][1])),
                None if np.isnan(regions[k]) else int(regions[k]),
                bool(hits[k]),
            )
            for k in range(tiles)
        ]
    return out


def sanity_arrays(context: Context, table: Table) -> Sanity:
    n, depths = len(context.photos["sanity"]), context.depths()
    names = randomisation_stages(context.model)
    return Sanity(
        stages=[names[d - 1] for d in depths],
        depths=depths,
        spearman={m: np.stack(table.lists("sanity", m, "spearman", n)) for m in SANITY_METHODS},
        ssim={m: np.stack(table.lists("sanity", m, "ssim", n)) for m in SANITY_METHODS},
        reference={m: table.column("sanity", m, "reference", n) for m in SANITY_METHODS},
    )


def faithfulness_arrays(
    table: Table, n: int, positions: range, steps: int, road_percentages: tuple[float, ...]
) -> Faithfulness:
    """The faithfulness runner's arrays for the photos at ``positions`` of ``n`` (run at ``steps``)."""

    def per_method(measure: str) -> np.ndarray:  # (photos, methods, ...)
        found = [table.lists("faithfulness", m, measure, n) for m in METHODS]
        return np.stack([np.stack([found[m][p] for m in range(len(METHODS))]) for p in positions])

    def scalars(method: str, measure: str) -> np.ndarray:
        return table.column("faithfulness", method, measure, n)[positions.start : positions.stop]

    return Faithfulness(
        class_indices=scalars("model", "class_index").astype(int),
        fractions=np.linspace(0.0, 1.0, steps + 1),
        deletion=per_method("deletion"),
        insertion=per_method("insertion"),
        full_probability=scalars("model", "full_probability"),
        explained_probability=np.stack([scalars(m, "explained_probability") for m in METHODS], axis=1),
        road_percentages=road_percentages,
        road_morf=per_method("road_morf") if road_percentages else None,
        road_lerf=per_method("road_lerf") if road_percentages else None,
    )


def faithfulness_summary(context: Context, table: Table) -> dict[str, Any]:
    """Deletion, insertion, Average Drop and ROAD; the first ``check_photos`` were run at twice the
    steps, to show how far the AUCs move when the steps double."""
    config, n = context.config, len(context.photos["faithfulness"])
    checked = min(config.check_photos, n)
    percentages = tuple(float(p) for p in config.road_percentages)
    check = faithfulness_arrays(table, n, range(checked), 2 * config.steps, percentages) if checked else None
    rest = faithfulness_arrays(table, n, range(checked, n), config.steps, percentages) if checked < n else None
    faith = concatenate(([check.subsampled(config.steps)] if check is not None else []) + ([rest] if rest else []))
    summary = summarise_faithfulness(faith, config.seed)
    summary["faithfulness"] = {
        "n_photos": n,
        "steps": config.steps,
        **({"steps_check": summarise_steps(check, config.steps)} if check is not None else {}),
        "road": summarise_road(faith, config.seed),
    }
    return summary


def variants_summary(context: Context, table: Table, loc: Localisation) -> dict[str, Any]:
    """Every variant paired with Grad-CAM at the default layer and an earlier block; at the default
    layer, energy and pointing come from localisation's records of every photo."""
    config, spec, n = context.config, context.spec, len(context.photos["variants"])
    names = compared_variants(config)
    on_all_photos = {v: {"energy": loc.energy[v], "pointing": loc.pointing[v]} for v in gradient_variants(config)}
    on_all_photos["gradcam"] = {"energy": loc.energy[spec.target_layer], "pointing": loc.pointing[spec.target_layer]}
    by_layer = {}
    for layer in variant_layers(spec):
        stage = f"variants@{layer}"
        same = {v: table.column(stage, v, "same_as_gradcam", n) for v in names}
        result = variant_comparison.VariantScores(
            names,
            layer,
            {v: {m: table.column(stage, v, m, n) for m in variant_comparison.MEASURES} for v in names},
            {v: bool(np.all(same[v][~np.isnan(same[v])] == 1.0)) for v in names},
            same,
        )
        shared = on_all_photos if layer == spec.target_layer else None
        by_layer[layer] = variant_comparison.summarise_variants(result, config.seed, shared)
    return {"variants": by_layer[spec.target_layer], "variants_by_layer": by_layer}


def cost(context: Context, table: Table) -> dict[str, Any]:
    """Compute seconds per stage, summed over units (a split run's workers add up), and ROAD's
    imputation counters; wall time of a split run is the slowest worker's, which the run logs."""
    stage_seconds: dict[str, float] = {}
    imputation = {"seconds": 0.0, "masks": 0, "solved": 0}
    for name, meta in table.meta.items():
        group = STAGE_GROUPS[stage_family(name.split("/")[0])]
        stage_seconds[group] = stage_seconds.get(group, 0.0) + meta["seconds"]
        for key in imputation:
            imputation[key] += meta["road_imputation"][key]
    total = sum(stage_seconds.values())
    return {
        "seconds": total,
        "seconds_per_photo": total / len(context.photos["all"]),
        "stage_seconds": stage_seconds,
        "road_imputation": imputation,
        "units": len(table.meta),
    }
