"""The report's localisation runner and summaries (evaluation/run_localisation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_tutorial.data import imagenet_val
from gradcam_tutorial.evaluation import localisation
from gradcam_tutorial.evaluation.run_localisation import (
    BoxTargets,
    Localisation,
    evaluate_localisation,
    summarise_localisation,
    summarise_pointing,
)
from gradcam_tutorial.explain import explain
from gradcam_tutorial.images import load_image

PHOTOS = (3, 5)


def test_a_photos_scores_are_those_of_the_map_explain_places(effnet):
    """Each Grad-CAM map is scored where :func:`explain` puts it on the stored photo, against the
    photo's own boxes: recomputed here from ``explain`` and the boxes' masks."""
    model, spec = effnet
    photos = [imagenet_val()[i] for i in PHOTOS]
    loc = evaluate_localisation(model, spec, photos, [spec.target_layer], batch=1)
    assert loc.methods == (spec.target_layer, "center", "random")
    for row, photo in enumerate(photos):
        image = load_image(photo.path)
        heatmap = explain(image, model, spec, classes=[photo.class_index], layer=spec.target_layer).heatmap(0)
        inside = localisation.box_mask(image.size, photo.original_size, photo.boxes)
        near = localisation.box_mask(image.size, photo.original_size, photo.boxes, localisation.TOLERANCE)
        assert loc.energy[spec.target_layer][row] == pytest.approx(localisation.energy(heatmap, inside), abs=1e-5)
        assert loc.pointing[spec.target_layer][row] == float(localisation.pointing_hit(heatmap, near))
        targets = BoxTargets.of(photo, image.size, spec)
        seen = localisation.visible_mask(image.size, spec.pixel_box(image.size))
        assert targets.chance() == (localisation.chance(seen, inside), localisation.chance(seen, near))
        assert loc.chance_energy[row] == targets.chance()[0]


def test_localisation_summary_splits_off_small_objects():
    methods = ("layer", "center", "random")
    coverage = np.array([0.1, 0.2, 0.9, 0.5])
    loc_energy = {"layer": np.array([0.9, 0.8, 0.6, 0.7]), "center": np.full(4, 0.5), "random": np.full(4, 0.3)}
    loc = Localisation(
        methods=methods,
        energy=loc_energy,
        pointing={m: np.ones(4) for m in methods},
        chance_energy=np.full(4, 0.4),
        chance_pointing=np.full(4, 0.5),
        coverage=coverage,
    )
    summary = summarise_localisation(loc, "layer")
    assert summary["n_photos"] == 4 and summary["default_layer"] == "layer"
    assert summary["layer"]["energy"]["mean"] == pytest.approx(0.75)
    small = summary["small_objects"]
    assert small["n_photos"] == 2 and small["layer"]["energy"]["mean"] == pytest.approx(0.85)
    assert small["energy_diff_vs_center_ci95"] == pytest.approx([0.3, 0.4])


def test_pointing_summary_counts_hits_per_layer():
    hit = localisation.PointingResult(np.array([0.7, 0.3]), (1, 1), 0, True)
    miss = localisation.PointingResult(np.array([0.6, 0.4]), (1, 1), 0, False)
    summary = summarise_pointing({"a": [hit, miss], "b": [hit, hit]})
    assert summary["pointing_game"] == {"a": 1, "b": 2}
    assert summary["pointing_shares"] == {"a": [0.7, 0.4], "b": [0.7, 0.3]}
