"""The report's command line on a few photos: metrics.json has the promised schema and sane values;
the committed full run supports the claims the report makes from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcam_tutorial.data import imagenet_samples
from gradcam_tutorial.evaluation import faithfulness, report
from gradcam_tutorial.evaluation import variants as variant_comparison
from gradcam_tutorial.evaluation.sanity import rank_correlation

N_PHOTOS = 4  # faithfulness photos, of which CHECK_PHOTOS also run at twice the steps
CHECK_PHOTOS = 2
VAL_PHOTOS = 8
VARIANT_PHOTOS = 2
STEPS = 4
METHODS = {"gradcam", "random", "center", "last_conv"}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = out / "results" / "report-full.json"
    code = report.main(
        [
            "--val-photos",
            str(VAL_PHOTOS),
            "--faith-photos",
            str(N_PHOTOS),
            "--check-photos",
            str(CHECK_PHOTOS),
            "--sanity-photos",
            "2",
            "--variant-photos",
            str(VARIANT_PHOTOS),
            "--score-cam-photos",
            "0",  # Score-CAM's own test is in test_variant_comparison.py
            "--steps",
            str(STEPS),
            "--out",
            str(out),
            "--results",
            str(results),
        ]
    )
    assert results.read_text() == (out / "metrics.json").read_text()
    return code, out, json.loads((out / "metrics.json").read_text())


def test_select_samples_is_spread_and_deterministic():
    chosen = report.select_samples(5)
    assert [s.class_index for s in chosen] == [s.class_index for s in report.select_samples(5)]
    all_samples = imagenet_samples()
    assert chosen[0] == all_samples[0] and chosen[-1] == all_samples[-1]
    assert len({s.class_index for s in chosen}) == 5
    assert len(report.select_samples(len(all_samples))) == len(all_samples)
    with pytest.raises(ValueError):
        report.select_samples(0)


def test_cli_writes_schema(produced):
    code, _out, data = produced
    assert code == 0
    assert data["n_photos"] == N_PHOTOS and data["steps"] == STEPS and data["sanity_n_photos"] == 2
    for key in ("insertion_auc", "deletion_auc"):
        assert set(data[key]) == METHODS
        for method, entry in data[key].items():
            low, high = entry["ci95"]
            assert 0.0 <= low <= entry["mean"] <= high <= 1.0, (key, method, entry)
    for key in ("insertion_diff_ci95", "deletion_diff_ci95"):
        low, high = data[key]
        assert -1.0 <= low <= high <= 1.0
    assert set(data["avg_drop"]) == set(data["increase_in_confidence"]) == METHODS
    for method in METHODS:
        assert 0.0 <= data["avg_drop"][method] <= 1.0
        assert data["increase_in_confidence"][method] * N_PHOTOS == pytest.approx(
            round(data["increase_in_confidence"][method] * N_PHOTOS)
        )
    assert 0.0 <= data["sanity_mean_abs_spearman"] <= 1.0


def test_pointing_game_has_the_three_candidate_layers(produced):
    _, _, data = produced
    spec = __import__("gradcam_tutorial").get_spec("efficientnet_lite0")
    assert list(data["pointing_game"]) == [spec.last_conv_layer, spec.target_layer, spec.earlier_layer]
    assert all(isinstance(v, int) and 0 <= v <= 4 for v in data["pointing_game"].values())
    # the default layer finds every object of the demo grid (issue 4's bar)
    assert data["pointing_game"][spec.target_layer] == 4


def test_summary_numbers_agree_with_the_curves(produced):
    _, _, data = produced
    curves = data["mean_curves"]
    assert len(curves["fractions"]) == STEPS + 1
    for key in ("insertion", "deletion"):
        for method in METHODS:
            # the AUC is linear in the curve, so the mean AUC is the AUC of the mean curve
            assert faithfulness.curve_auc(np.array(curves[key][method])) == pytest.approx(
                data[f"{key}_auc"][method]["mean"], abs=2e-4
            )
        # every method starts (deletion) or ends (insertion) at the same untouched input
        assert len({round(curves[key][m][0 if key == "deletion" else -1], 4) for m in METHODS}) == 1


def test_figures_are_png(produced):
    _, out, _ = produced
    for name in ("curves.png", "auc.png", "sanity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_have_the_keys_the_issue_lists(produced):
    _, _, data = produced
    spec = __import__("gradcam_tutorial").get_spec("efficientnet_lite0")
    assert data["val"]["n_photos"] == VAL_PHOTOS and 0 <= data["val"]["top1"] <= data["val"]["top5"] <= 1
    loc = data["localisation"]
    assert loc["n_photos"] == VAL_PHOTOS and loc["default_layer"] == spec.target_layer
    for method in [*report.candidate_layers(spec), "center", "random"]:
        for measure in ("energy", "pointing"):
            low, high = loc[method][measure]["ci95"]
            assert 0 <= low <= loc[method][measure]["mean"] <= high <= 1
    assert 0 < loc["chance_pointing"] <= 1 and 0 < loc["chance_energy"] <= 1
    assert len(loc["energy_diff_vs_center_ci95"]) == len(loc["pointing_diff_vs_center_ci95"]) == 2
    assert loc["small_objects"]["n_photos"] <= VAL_PHOTOS
    sanity = data["sanity"]
    assert sanity["n_photos"] == 2 and set(sanity["final_abs_spearman"]) == {"gradcam", "guided_backprop", "gradient"}
    assert 0 <= sanity["reference_abs_spearman"] <= 1
    faith = data["faithfulness"]
    assert faith["steps"] == STEPS and faith["n_photos"] == N_PHOTOS
    assert faith["steps_check"]["n_photos"] == CHECK_PHOTOS
    assert set(faith["steps_check"]["auc_by_steps"]) == {str(STEPS // 2), str(STEPS), str(2 * STEPS)}
    road = faith["road"]
    assert road["n_photos"] == N_PHOTOS and road["percentages"] == [10.0, 30.0, 50.0, 70.0, 90.0]
    for method in METHODS:
        assert road[method]["gap"]["mean"] == pytest.approx(
            road[method]["lerf"]["mean"] - road[method]["morf"]["mean"], abs=2e-4
        )
    for key in ("avg_drop_ci95", "increase_in_confidence_ci95"):
        for method in METHODS:
            low, high = data[key][method]
            assert (
                low <= data[key.removesuffix("_ci95")][method] + 1e-4
                and data[key.removesuffix("_ci95")][method] <= high + 1e-4
            )
    variants = data["variants"]
    assert set(variants) == {"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"}  # no Score-CAM: 0 photos
    assert variants == data["variants_by_layer"][spec.target_layer]
    assert set(data["variants_by_layer"]) == {spec.target_layer, spec.earlier_layer}
    for name, entry in variants.items():
        assert set(entry) == {*variant_comparison.MEASURES, "same_map_as_gradcam"}
        for measure in variant_comparison.MEASURES:
            low, high = entry[measure]["ci95"]
            assert low - 1e-4 <= entry[measure]["mean"] <= high + 1e-4, (name, measure)
            # localisation at the default layer: every validation photo; the rest on the variant photos
            expected = VAL_PHOTOS if measure in ("energy", "pointing") else VARIANT_PHOTOS
            assert entry[measure]["n_photos"] == expected, (name, measure)
            assert name == "gradcam" or len(entry[measure]["diff_vs_gradcam_ci95"]) == 2
    # Grad-CAM's energy here is the default layer's in the localisation table, on the same photos
    assert variants["gradcam"]["energy"]["mean"] == pytest.approx(loc[spec.target_layer]["energy"]["mean"], abs=1e-4)
    # after the default layer come only pooling and the classifier: HiResCAM and XGrad-CAM are Grad-CAM
    assert variants["hirescam"]["same_map_as_gradcam"] and variants["xgradcam"]["same_map_as_gradcam"]
    earlier = data["variants_by_layer"][spec.earlier_layer]
    assert not earlier["hirescam"]["same_map_as_gradcam"]
    assert all(earlier[v]["energy"]["n_photos"] == VARIANT_PHOTOS for v in earlier)
    cost = data["cost"]
    assert cost["seconds_per_photo"] > 0 and cost["forward_budget_ratio"] > 0
    # every image that went through the network was counted: accuracy alone is VAL_PHOTOS + 500
    assert cost["forward_counts"]["inference"] >= VAL_PHOTOS + 500
    stages = cost["stage_seconds"]
    assert list(stages) == ["loading", "accuracy_and_localisation", "sanity", "faithfulness", "variants"]
    assert all(value >= 0 for value in stages.values()) and sum(stages.values()) <= cost["seconds"] + 1e-3
    # ROAD: 4 maps x 2 orders x 5 percentages per faithfulness photo, then each distinct variant map's
    imputation = cost["road_imputation"]
    assert imputation["masks"] >= N_PHOTOS * 4 * 2 * 5 and 0 < imputation["solved"] <= imputation["masks"]
    assert 0 < imputation["seconds"] < stages["faithfulness"] + stages["variants"]
    # each stage's passes, budget and imputation: they add up to the run's, and only ROAD imputes
    by_stage = cost["stages"]
    assert list(by_stage) == list(stages)
    for kind, count in cost["forward_counts"].items():
        assert sum(stage["forward_counts"][kind] for stage in by_stage.values()) == count, kind
    assert by_stage["loading"]["forward_counts"] == {"inference": 0, "gradcam": 0, "input_gradient": 0}
    assert by_stage["sanity"]["forward_counts"]["input_gradient"] > 0  # Guided Backprop and the gradient
    assert sum(s["forward_budget_seconds"] for s in by_stage.values()) == pytest.approx(
        cost["forward_budget_seconds"], abs=1e-3
    )
    for name in ("loading", "accuracy_and_localisation", "sanity"):
        assert by_stage[name]["road_imputation_seconds"] == 0, name
    imputed = by_stage["faithfulness"]["road_imputation_seconds"] + by_stage["variants"]["road_imputation_seconds"]
    assert imputed == pytest.approx(imputation["seconds"], abs=1e-3)
    for name in ("faithfulness", "variants"):
        assert 0 < by_stage[name]["road_imputation_seconds"] < stages[name] + 1e-3, name
    assert set(cost["inference_by_batch"]) == {"1", "4", "8", "16"}
    # priced during the run (at least the sample before it starts), and once after it for comparison
    assert cost["price_samples"] >= 1 and set(cost["seconds_per_image"]) == set(cost["seconds_per_image_after_run"])
    series = cost["price_series"]
    assert set(series) == {"taken_at_seconds", *cost["seconds_per_image"]}
    assert all(len(values) == cost["price_samples"] for values in series.values())
    for kind, price in cost["seconds_per_image"].items():  # the medians are the series' medians
        assert price == pytest.approx(float(np.median(series[kind])), abs=1e-4), kind
    priced = sum(cost["forward_counts"][kind] * cost["seconds_per_image"][kind] for kind in cost["forward_counts"])
    # the stored prices are rounded to 4 decimals: each image's price is off by at most 5e-5 s
    rounding = 5e-5 * sum(cost["forward_counts"].values()) + 5e-5
    assert abs(cost["forward_budget_seconds"] - priced) <= rounding
    config = data["config"]
    assert config["model"] == "efficientnet_lite0" and config["layers"] == report.candidate_layers(spec)
    assert len(config["input_sha256"]["all"]) == 64 and "torch" in config["versions"]
    assert config["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and config["cpu"]["model"]


def test_faithfulness_with_fewer_steps_is_every_other_point_of_more_steps(effnet):
    """Subsampling a 2S-step run gives exactly what an S-step run measures (same pixels removed)."""
    from gradcam_tutorial.data import imagenet_val

    photos = report.spread(list(imagenet_val()), 2)
    fine = report.evaluate_faithfulness(*effnet, photos, steps=8)
    coarse = report.evaluate_faithfulness(*effnet, photos, steps=4)
    np.testing.assert_allclose(fine.subsampled(4).deletion, coarse.deletion, atol=1e-5)
    np.testing.assert_allclose(fine.subsampled(4).insertion, coarse.insertion, atol=1e-5)
    with pytest.raises(ValueError):
        fine.subsampled(3)


def test_sanity_reference_is_the_similarity_of_neighbouring_photos(effnet):
    """Each photo's map against the next photo's map (the last against the first), per method."""
    from gradcam_tutorial.data import imagenet_val

    model, spec = effnet
    photos = report.spread(list(imagenet_val()), 3)
    sanity = report.sanity_check(model, spec, photos, depths=[1], methods=("gradcam", "guided_backprop"))
    maps = [
        report.saliency_maps(model, spec, report.model_input(p, spec), p.class_index, ("gradcam", "guided_backprop"))
        for p in photos
    ]
    for method in ("gradcam", "guided_backprop"):
        expected = [abs(rank_correlation(maps[i][method], maps[(i + 1) % 3][method])) for i in range(3)]
        np.testing.assert_allclose(sanity.reference[method], expected, atol=1e-6)
        assert sanity.spearman[method].shape == (3, 1)
    # only the classifier is random at depth 1: Guided Backprop barely notices, Grad-CAM does
    assert np.abs(sanity.spearman["guided_backprop"]).mean() > 0.9 > np.abs(sanity.spearman["gradcam"]).mean()


RESULTS = Path(__file__).resolve().parents[1] / "results" / "report-full.json"


def test_committed_full_run_supports_the_reports_claims():
    """The report's central claim, on the committed full run: Grad-CAM beats the random map and the
    centre prior on localisation, deletion, insertion and ROAD, with whole 95 % intervals on the right
    side of zero. A broken metric that flips a claim, re-run into the file, fails here."""
    data = json.loads(RESULTS.read_text())
    spec = __import__("gradcam_tutorial").get_spec("efficientnet_lite0")
    assert data["model"] == spec.name

    def above_zero(interval):
        low, high = interval
        return 0 < low <= high

    def below_zero(interval):
        low, high = interval
        return low <= high < 0

    loc = data["localisation"]
    assert loc["n_photos"] == 1000 and loc["default_layer"] == spec.target_layer
    assert above_zero(loc["energy_diff_vs_center_ci95"]) and above_zero(loc["pointing_diff_vs_center_ci95"])
    for measure in ("energy", "pointing"):
        gradcam, center, random = (loc[m][measure]["mean"] for m in (spec.target_layer, "center", "random"))
        assert gradcam > center > random, (measure, gradcam, center, random)
        # a random map finds the boxes as often as their size alone predicts
        low, high = loc["random"][measure]["ci95"]
        assert low <= loc[f"chance_{measure}"] <= high, (measure, low, high)

    assert data["n_photos"] == data["faithfulness"]["n_photos"] == 300
    insertion = {m: e["mean"] for m, e in data["insertion_auc"].items()}
    deletion = {m: e["mean"] for m, e in data["deletion_auc"].items()}
    assert insertion["gradcam"] > insertion["center"] > insertion["random"], insertion
    assert deletion["gradcam"] < deletion["center"] < deletion["random"], deletion
    assert above_zero(data["insertion_diff_ci95"]) and below_zero(data["deletion_diff_ci95"])  # minus random
    assert above_zero(data["insertion_diff_vs_center_ci95"]) and below_zero(data["deletion_diff_vs_center_ci95"])

    road = data["faithfulness"]["road"]
    gap = {m: road[m]["gap"]["mean"] for m in ("gradcam", "center", "random")}
    assert gap["gradcam"] > gap["center"] > gap["random"], gap
    assert above_zero(road["gradcam"]["gap"]["ci95"])
    low, high = road["random"]["gap"]["ci95"]
    assert low < 0 < high, "a random order removes as much evidence first as last"
    assert above_zero(road["gap_diff_vs_random_ci95"]) and above_zero(road["gap_diff_vs_center_ci95"])

    # the sanity check: randomising the model leaves Grad-CAM's maps less alike than two photos' maps
    sanity = data["sanity"]
    assert sanity["final_abs_spearman"]["gradcam"] < sanity["reference_abs_spearman_by_method"]["gradcam"]


def test_cpu_record_names_the_isa_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert report.cpu()["onednn_max_cpu_isa"] == "SSE41"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert report.cpu()["onednn_max_cpu_isa"] is None
