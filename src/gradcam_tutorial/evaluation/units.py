"""The full run cut into units of work, and each unit's per-photo records.

Every stage's photos are cut into fixed slices (:func:`plan`), the same for every way of running:
one process, shards, Ray workers. A unit runs the report's own runner on its slice, told where the
slice sits in the whole list (random baselines are seeded by position, Score-CAM's photos and the
sanity check's "next photo" are the whole run's), and writes what the runner measured per photo.
So the merged records of any split are the records of the one-process run, bit for bit, and the
summaries computed from them (:mod:`.merge`) are too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from ..data import Sample, ValPhoto
from ..models import ModelSpec
from . import road
from . import variants as variant_comparison
from .accuracy import top_k_hits
from .config import FullRunConfig, compared_variants, gradient_variants, variant_layers
from .records import Rows, Unit, stage_family
from .run_faithfulness import evaluate_faithfulness
from .run_localisation import candidate_layers, evaluate_localisation, pointing_by_layer
from .run_sanity import sanity_check
from .sanity import cascading_randomisation, randomisation_stages

Photo = ValPhoto | Sample


@dataclass
class Context:
    """What every unit of one run needs, built once per process (or Ray actor)."""

    model: nn.Module
    spec: ModelSpec
    config: FullRunConfig
    photos: dict[str, list[ValPhoto]]  # "all", "faithfulness", "sanity", "variants"
    train: Sequence[Sample] = field(default_factory=tuple)  # the training samples, for contrast

    @cached_property
    def randomised(self) -> nn.Module:
        """The model with every stage re-initialised (the sanity check's last step)."""
        *_, (_, randomised) = cascading_randomisation(self.model, self.config.seed)
        return randomised

    def stage_photos(self, stage: str) -> Sequence[Photo]:
        if stage in ("accuracy", "localisation"):
            return self.photos["all"]
        if stage == "train":
            return self.train
        if stage == "grid":
            return ()
        return self.photos[stage_family(stage)]

    def depths(self) -> list[int]:
        return [d for d in self.config.sanity_depths if d <= len(randomisation_stages(self.model))]


def stages(context: Context) -> list[tuple[str, int]]:
    """Every stage of the run in order, with its unit size (cheap stages in larger units)."""
    cheap = 10 * context.config.unit_photos
    out = [("accuracy", cheap), ("localisation", cheap), ("grid", 1)]
    if context.train:
        out.append(("train", cheap))
    out += [("sanity", context.config.unit_photos), ("faithfulness", context.config.unit_photos)]
    out += [(f"variants@{layer}", context.config.unit_photos) for layer in variant_layers(context.spec)]
    return out


def plan(context: Context) -> list[Unit]:
    """The run's units in order; shard ``k`` of ``n`` takes every ``n``-th (:func:`shard`)."""
    units = []
    for stage, size in stages(context):
        count = 1 if stage == "grid" else len(context.stage_photos(stage))
        for index, start in enumerate(range(0, count, size)):
            units.append(Unit(stage, index, start, min(start + size, count)))
    return units


def shard(units: Sequence[Unit], k: int, n: int) -> list[Unit]:
    """Shard ``k`` (1-based) of ``n``: every ``n``-th unit, so each shard gets some of every stage."""
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: k must be between 1 and n")
    return [unit for i, unit in enumerate(units) if i % n == k - 1]


def run_unit(context: Context, unit: Unit) -> tuple[Rows, dict[str, Any]]:
    """The unit's records and what it cost (seconds, ROAD's imputation counters)."""
    before = dataclasses.replace(road.IMPUTATION)
    started = time.perf_counter()
    rows = Rows(context.config.model, unit)
    photos = list(context.stage_photos(unit.stage)[unit.start : unit.stop])
    runner = _RUNNERS[unit.family]
    runner(context, unit, photos, rows)
    imputation = {
        name: getattr(road.IMPUTATION, name) - getattr(before, name) for name in ("seconds", "masks", "solved")
    }
    return rows, {"seconds": time.perf_counter() - started, "road_imputation": imputation}


def _add(rows: Rows, position: int, photo: Photo, method: str, measure: str, value: Any) -> None:
    rows.add(position, photo.remote.name.rsplit("/", 1)[-1], photo.remote.sha256, method, measure, value)


def _accuracy(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    hits = top_k_hits(context.model, context.spec, photos)
    for row, photo in enumerate(photos):
        _add(rows, unit.start + row, photo, "model", "top1", hits[row, 0])
        _add(rows, unit.start + row, photo, "model", "top5", hits[row, 1])


def _localisation(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    loc = evaluate_localisation(
        context.model,
        context.spec,
        photos,  # type: ignore[arg-type]  # validation photos: the stage's list is photos["all"]
        candidate_layers(context.spec),
        context.config.seed,
        variants=gradient_variants(context.config),
        offset=unit.start,
    )
    for row, photo in enumerate(photos):
        for method in loc.methods:
            _add(rows, unit.start + row, photo, method, "energy", loc.energy[method][row])
            _add(rows, unit.start + row, photo, method, "pointing", loc.pointing[method][row])
        for measure in ("chance_energy", "chance_pointing", "coverage"):
            _add(rows, unit.start + row, photo, "photo", measure, getattr(loc, measure)[row])


def _grid(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    for layer, results in pointing_by_layer(context.model, context.spec).items():
        for tile, result in enumerate(results):
            region = _nan_if_none(result.peak_region)
            for measure, value in (("shares", result.shares), ("peak", result.peak), ("peak_region", region)):
                rows.add(tile, "demo grid", "", layer, measure, value)
            rows.add(tile, "demo grid", "", layer, "hit", float(result.hit))


def _nan_if_none(value: int | None) -> float:
    return float("nan") if value is None else float(value)


def _sanity(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    everyone = context.photos["sanity"]
    following = everyone[unit.stop % len(everyone)] if len(everyone) > 1 else None
    result = sanity_check(
        context.model, context.spec, photos, context.depths(), context.config.seed, following=following
    )
    for row, photo in enumerate(photos):
        for method in result.spearman:
            _add(rows, unit.start + row, photo, method, "spearman", result.spearman[method][row])
            _add(rows, unit.start + row, photo, method, "ssim", result.ssim[method][row])
            _add(rows, unit.start + row, photo, method, "reference", result.reference[method][row])


def _faithfulness(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    config = context.config
    for row, photo in enumerate(photos):
        position = unit.start + row
        steps = 2 * config.steps if position < config.check_photos else config.steps  # the steps check
        faith = evaluate_faithfulness(
            context.model, context.spec, [photo], steps, config.seed, road_percentages=config.road_percentages
        )
        _add(rows, position, photo, "model", "class_index", faith.class_indices[0])
        _add(rows, position, photo, "model", "full_probability", faith.full_probability[0])
        for m, method in enumerate(faith.methods):
            _add(rows, position, photo, method, "deletion", faith.deletion[0, m])
            _add(rows, position, photo, method, "insertion", faith.insertion[0, m])
            _add(rows, position, photo, method, "explained_probability", faith.explained_probability[0, m])
            if faith.road_morf is not None and faith.road_lerf is not None:
                _add(rows, position, photo, method, "road_morf", faith.road_morf[0, m])
                _add(rows, position, photo, method, "road_lerf", faith.road_lerf[0, m])


def _variants(context: Context, unit: Unit, photos: list[Photo], rows: Rows) -> None:
    config, layer = context.config, unit.stage.split("@", 1)[1]
    compared = list(compared_variants(config))
    result = variant_comparison.evaluate_variants(
        context.model,
        context.spec,
        photos,  # type: ignore[arg-type]  # validation photos
        context.randomised,
        layer,
        compared,
        config.score_cam_photos,
        config.steps,
        config.road_percentages,
        config.seed,
        offset=unit.start,
        total=len(context.photos["variants"]),
    )
    for row, photo in enumerate(photos):
        for variant, measures in result.scores.items():
            if np.isnan(measures["energy"][row]):
                continue  # not run on this photo (Score-CAM beyond its subset)
            for measure, values in measures.items():
                _add(rows, unit.start + row, photo, variant, measure, values[row])
            _add(rows, unit.start + row, photo, variant, "same_as_gradcam", float(result.same_by_photo[variant][row]))


_RUNNERS = {
    "accuracy": _accuracy,
    "train": _accuracy,
    "localisation": _localisation,
    "grid": _grid,
    "sanity": _sanity,
    "faithfulness": _faithfulness,
    "variants": _variants,
}
