"""The report's comparison of Grad-CAM's variants: known answers on synthetic scores, and a real run."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_tutorial import compute_methods, create_model
from gradcam_tutorial.data import imagenet_val
from gradcam_tutorial.evaluation import localisation
from gradcam_tutorial.evaluation.sanity import cascading_randomisation
from gradcam_tutorial.evaluation.variants import (
    MEASURES,
    VariantScores,
    evaluate_variants,
    format_variant_table,
    plot_variant_differences,
    summarise_variants,
    verdicts,
)
from gradcam_tutorial.images import load_image
from gradcam_tutorial.viz import heatmap_on_photo


def synthetic(shift: dict[str, float], n: int = 40, missing: int = 0) -> VariantScores:
    rng = np.random.default_rng(0)
    base = {m: rng.uniform(0.2, 0.8, n) for m in MEASURES}
    scores = {"gradcam": base}
    for name, delta in shift.items():
        scores[name] = {m: base[m] + delta for m in MEASURES}
        if missing:
            for values in scores[name].values():
                values[:missing] = np.nan
    return VariantScores(("gradcam", *shift), "layer", scores, dict.fromkeys(("gradcam", *shift), False))


def test_paired_intervals_see_a_constant_shift_and_nothing_else():
    summary = summarise_variants(synthetic({"up": 0.05, "down": -0.05, "same": 0.0}))
    for measure in MEASURES:
        assert summary["up"][measure]["diff_vs_gradcam_ci95"] == pytest.approx([0.05, 0.05])
        assert summary["same"][measure]["diff_vs_gradcam_ci95"] == pytest.approx([0.0, 0.0])
        assert summary["up"][measure]["mean"] == pytest.approx(summary["gradcam"][measure]["mean"] + 0.05)
    read = verdicts(summary)
    assert read["same"] == dict.fromkeys(MEASURES, "same")
    # higher is better except for deletion AUC and the similarity after randomisation
    assert read["up"] == {
        "energy": "better",
        "pointing": "better",
        "insertion_auc": "better",
        "deletion_auc": "worse",
        "road_gap": "better",
        "sanity_final_abs_spearman": "worse",
    }
    assert {v: k for k, v in read["down"].items() if k in ("deletion_auc", "energy")} == {
        "better": "deletion_auc",
        "worse": "energy",
    }


def test_table_marks_each_measure_as_its_interval_reads():
    summary = summarise_variants(synthetic({"up": 0.05, "same": 0.0}))
    summary["same"]["same_map_as_gradcam"] = True
    lines = format_variant_table(summary).splitlines()
    assert lines[0].split()[:2] == ["method", "photos"] and len(lines) == 4
    assert lines[1].startswith("gradcam") and f"{summary['gradcam']['energy']['mean']:.4f}" in lines[1]
    up = lines[2]
    marks = [cell.split()[0] for cell in up.split("]")[1:]]
    assert up.startswith("up") and marks == ["+", "+", "+", "-", "+", "-"]  # deletion, |rho|: lower is better
    assert up.count("[+0.0500, +0.0500]") == len(MEASURES)
    assert lines[3].count(" =") == len(MEASURES) and lines[3].endswith("(Grad-CAM's maps)")


def test_table_never_sets_a_variants_mean_beside_gradcams():
    """A variant run on fewer photos (Score-CAM's subset) is shown only by its paired interval: its
    own mean, on other photos than Grad-CAM's, is not in the table."""
    summary = summarise_variants(synthetic({"subset": 0.1}, missing=30))
    table = format_variant_table(summary)
    row = table.splitlines()[2]
    assert row.split()[:2] == ["subset", "10"]
    for measure in MEASURES:
        assert f"{summary['subset'][measure]['mean']:.4f}" not in row
    assert row.count("[+0.1000, +0.1000] +") == 4


def test_table_marks_a_gain_from_flat_randomised_maps_as_no_gain():
    summary = summarise_variants(synthetic({"flat": 0.0}))
    summary["flat"]["sanity_final_abs_spearman"] = {
        "mean": 0.0,
        "ci95": [0.0, 0.0],
        "n_photos": 40,
        "diff_vs_gradcam_ci95": [-0.3, -0.1],
    }
    row = format_variant_table(summary).splitlines()[2]
    assert "[-0.3000, -0.1000] ?" in row and row.endswith("(?: every randomised map flat)")


def test_figure_draws_one_interval_per_variant_layer_and_measure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_layer = {
        "a": summarise_variants(synthetic({"up": 0.05, "down": -0.05})),
        "_b": summarise_variants(synthetic({"up": 0.02, "down": -0.02})),  # layer names like "_blocks.14"
    }
    fig, axes = plt.subplots(1, len(MEASURES), sharey=True)
    plot_variant_differences(by_layer, axes)
    for ax, measure in zip(axes, MEASURES, strict=True):
        intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() == 3]
        assert len(intervals) == 4, measure  # two variants at two layers
        assert sorted(round(float(line.get_xdata()[0]), 6) for line in intervals) == [-0.05, -0.02, 0.02, 0.05]
        # every axis names its rows, also when the axes share y
        assert [t.get_text() for t in ax.get_yticklabels()] == ["up", "down"], measure
        assert ax.get_xlabel()
    (legend,) = fig.legends  # below the axes, where it covers no interval
    assert [t.get_text() for t in legend.get_texts()] == ["at a", "at _b"]
    plt.close(fig)


def test_a_variant_run_on_fewer_photos_is_paired_on_those_photos():
    summary = summarise_variants(synthetic({"subset": 0.1}, missing=30))
    entry = summary["subset"]["energy"]
    assert entry["n_photos"] == 10 and summary["gradcam"]["energy"]["n_photos"] == 40
    assert entry["diff_vs_gradcam_ci95"] == pytest.approx([0.1, 0.1])


def test_localisation_on_a_larger_set_replaces_energy_and_pointing():
    result = synthetic({"other": 0.0})
    larger = {name: {"energy": np.full(100, 0.3), "pointing": np.ones(100)} for name in ("gradcam", "other")}
    summary = summarise_variants(result, localisation_scores=larger)
    assert summary["other"]["energy"]["n_photos"] == 100 and summary["other"]["energy"]["mean"] == pytest.approx(0.3)
    assert summary["other"]["insertion_auc"]["n_photos"] == 40


@pytest.fixture(scope="module")
def real_run():
    model, spec = create_model("efficientnet_lite0")
    photos = list(imagenet_val())[:2]
    *_, (_, randomised) = cascading_randomisation(model, 0)
    names = ("gradcam", "hirescam", "layercam", "scorecam")
    return (
        model,
        spec,
        photos,
        evaluate_variants(model, spec, photos, randomised, "_blocks.14", names, score_cam_photos=1, steps=4),
    )


def test_real_run_scores_every_variant_and_score_cam_on_its_subset(real_run):
    *_, result = real_run
    assert result.layer == "_blocks.14" and result.n_photos == 2
    for name in result.names:
        for measure in MEASURES:
            values = result.scores[name][measure]
            ran = ~np.isnan(values)
            assert ran.sum() == (1 if name == "scorecam" else 2), (name, measure)
            low = -1 if measure == "road_gap" else 0  # LeRF minus MoRF probability
            assert ((values[ran] >= low) & (values[ran] <= 1)).all(), (name, measure)
    # a layer inside the network: the gradient varies over space and every variant differs
    assert not any(result.same_as_gradcam[v] for v in ("hirescam", "layercam", "scorecam"))
    assert result.same_as_gradcam["gradcam"]


def test_real_run_energy_can_be_recomputed_from_the_public_api(real_run):
    """Energy is the share of the map placed on the photo's own grid inside the class's boxes."""
    model, spec, photos, result = real_run
    photo = photos[0]
    image = load_image(photo.path)
    maps = compute_methods(model, "_blocks.14", spec.preprocess(image), photo.class_index, ("layercam",))
    placed = heatmap_on_photo(maps["layercam"].normalized()[0, 0].numpy(), image.size, spec.pixel_box(image.size))
    inside = localisation.box_mask(image.size, photo.original_size, photo.boxes)
    assert localisation.energy(placed, inside) == pytest.approx(result.scores["layercam"]["energy"][0], abs=1e-4)


def test_the_comparison_needs_gradcam_to_pair_with(real_run):
    model, spec, photos, _ = real_run
    with pytest.raises(ValueError, match="include 'gradcam'"):
        evaluate_variants(model, spec, photos[:1], model, names=("hirescam",))
