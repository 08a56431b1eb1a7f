"""What a full run measures (:class:`FullRunConfig`) and on which photos: one definition shared by
the run, its units of work (:mod:`.units`) and the merge of their records (:mod:`.merge`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..data import ValPhoto
from ..methods import CAM_METHODS
from ..models import ModelSpec
from .shared import input_list_sha256, spread


@dataclass(frozen=True)
class FullRunConfig:
    """The counts behind ``make report-full``: localisation and accuracy on every validation photo,
    faithfulness and the sanity check on evenly spread subsets (see the README for how they were
    settled: docs/measurements.md)."""

    val_photos: int = 1000
    faith_photos: int = 300
    sanity_photos: int = 50
    steps: int = 16
    check_photos: int = 50  # of the faithfulness photos, run at 2 * steps to show the AUC has settled
    road_percentages: tuple[float, ...] = (10.0, 30.0, 50.0, 70.0, 90.0)
    sanity_depths: tuple[int, ...] = (1, 2, 3, 4, 7, 11, 16, 21)
    variants: tuple[str, ...] = tuple(CAM_METHODS)
    variant_photos: int = 30  # every variant's measures at two layers (default layer's localisation: all photos)
    score_cam_photos: int = 10  # of those, Score-CAM's (a forward pass per varying channel of 1280)
    seed: int = 0
    model: str = "efficientnet_lite0"
    unit_photos: int = 4  # photos per unit of work of the costly stages (10x that for the cheap ones)


def choose_photos(config: FullRunConfig, photos: Sequence[ValPhoto]) -> dict[str, list[ValPhoto]]:
    """The run's photos by use: the first ``val_photos``, and the evenly spread subsets of the
    costlier measures."""
    chosen = list(photos)[: config.val_photos]
    return {
        "all": chosen,
        "faithfulness": spread(chosen, min(config.faith_photos, len(chosen))),
        "sanity": spread(chosen, min(config.sanity_photos, len(chosen))),
        "variants": spread(chosen, min(config.variant_photos, len(chosen))),
    }


def code_sha256() -> str:
    """sha256 of the package's computing source (every module outside ``publishing/``), so that a
    run never resumes into, or merges with, records that other code wrote."""
    package = Path(str(resources.files("gradcam_tutorial")))
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] != "publishing":
            digest.update(f"{relative.as_posix()}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def run_key(config: FullRunConfig, photos: dict[str, list[ValPhoto]]) -> str:
    """Names the records of one configuration on one set of photos by one version of the code: a
    changed count, seed, model, photo or source file starts new records instead of mixing with old
    ones."""
    text = json.dumps(
        {
            "config": dataclasses.asdict(config),
            "photos": {k: input_list_sha256(v) for k, v in photos.items()},
            "code": code_sha256(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def gradient_variants(config: FullRunConfig) -> list[str]:
    """The variants cheap enough to localise on every photo, beside Grad-CAM (all but Score-CAM)."""
    return [v for v in config.variants if v not in ("gradcam", "scorecam")]


def compared_variants(config: FullRunConfig) -> tuple[str, ...]:
    """The variants the comparison runs: all of ``config.variants``, less Score-CAM when it has no photos."""
    return tuple(v for v in config.variants if v != "scorecam" or config.score_cam_photos > 0)


def variant_layers(spec: ModelSpec) -> list[str]:
    """Where three variants coincide with Grad-CAM (the default layer), and where none do."""
    return [spec.target_layer, spec.earlier_layer]
