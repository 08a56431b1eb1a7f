"""The report's full run (evaluation/report.py) end to end on a few photos: metrics.json has the
promised schema and sane values; the committed full run supports the claims the report makes from it."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial.data import ValPhoto, imagenet_val
from gradcam_tutorial.evaluation import faithfulness, peers, report
from gradcam_tutorial.evaluation import variants as variant_comparison
from gradcam_tutorial.evaluation.accuracy import top_k_accuracy
from gradcam_tutorial.evaluation.run_faithfulness import evaluate_faithfulness
from gradcam_tutorial.evaluation.run_localisation import candidate_layers, evaluate_localisation, pointing_by_layer
from gradcam_tutorial.evaluation.run_sanity import randomised_maps, sanity_check
from gradcam_tutorial.images import load_image
from gradcam_tutorial.models import ModelSpec, get_spec

N_PHOTOS = 4  # faithfulness photos, of which CHECK_PHOTOS also run at twice the steps
CHECK_PHOTOS = 2
VAL_PHOTOS = 20
VARIANT_PHOTOS = 2
STEPS = 4
METHODS = {"gradcam", "random", "center", "last_conv"}
RESULTS = Path(__file__).resolve().parents[1] / "results" / "report-full.json"


def _arguments(out: Path, *extra: str) -> list[str]:
    """The small run every end-to-end test here makes (units of one photo, so shards split every stage)."""
    counts = {
        "--val-photos": VAL_PHOTOS,
        "--faith-photos": N_PHOTOS,
        "--check-photos": CHECK_PHOTOS,
        "--sanity-photos": 2,
        "--variant-photos": VARIANT_PHOTOS,
        "--score-cam-photos": 0,  # Score-CAM's own test is in test_evaluation_variants.py
        "--steps": STEPS,
        "--unit-photos": 1,
    }
    return [*(item for pair in counts.items() for item in map(str, pair)), "--out", str(out), *extra]


def _results(data: dict) -> dict:
    """What a run measured, without what it cost and where it ran."""
    return {k: v for k, v in data.items() if k not in ("cost", "config", "seconds")}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = out / "results" / "report-full.json"
    code = report.main(_arguments(out, "--results", str(results)))
    assert results.read_text() == (out / "metrics.json").read_text()
    return code, out, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_shards_one_of_them_on_ray_give_the_sequential_run(produced, tmp_path, capsys):
    """Shard 1/2 in this process, shard 2/2 on local Ray with two workers: the merged summary is the
    one-process run's, and so is every unit's records, bit for bit (at the same thread count: a
    different one changes the floats' last bits, which ROAD's rank ties can carry into the third
    decimal)."""
    _, out, data = produced
    first = _arguments(tmp_path, "--shard", "1/2")
    assert report.main(first) == 0 and not (tmp_path / "metrics.json").exists()
    assert "not merged" in capsys.readouterr().out
    assert report.main(_arguments(tmp_path, "--shard", "2/2", "--engine", "ray", "--workers", "2")) == 0
    merged = json.loads((tmp_path / "metrics.json").read_text())
    assert _results(merged) == _results(data)
    assert merged["config"]["engines"] == ["ray", "sequential"] and merged["config"]["threads"] == 2
    (here,) = (tmp_path / "records").glob("*/*")
    (there,) = (out / "records").glob("*/*")
    assert here.name == there.name  # the same configuration and photos
    ours = sorted(p.relative_to(here) for p in here.rglob("*.parquet"))
    assert ours == sorted(p.relative_to(there) for p in there.rglob("*.parquet"))
    import pyarrow.parquet as pq

    for path in ours:
        mine, theirs = (pq.read_table(root / path).to_pydict() for root in (here, there))
        assert json.dumps(mine) == json.dumps(theirs), path  # NaN included


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_records(produced, tmp_path, capsys):
    """Units whose records are gone (and a half-written file, as a kill leaves it) are run again,
    the others are not, and the summary is the uninterrupted run's."""
    import shutil

    _, out, data = produced
    shutil.copytree(out / "records", tmp_path / "records")
    (root,) = (tmp_path / "records").glob("*/*")
    lost = [root / "localisation" / "00001.parquet", root / "sanity" / "00000.parquet"]
    for path in lost:
        path.rename(path.with_name(f".{path.name}.999.partial"))
    assert report.main(_arguments(tmp_path)) == 0
    total = len(list(root.rglob("*.parquet")))
    assert f"resuming: {total - 2} of {total} units already have records" in capsys.readouterr().out
    assert all(path.is_file() for path in lost)
    assert _results(json.loads((tmp_path / "metrics.json").read_text())) == _results(data)


@pytest.mark.slow
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


@pytest.mark.slow
def test_pointing_game_has_the_three_candidate_layers(produced):
    _, _, data = produced
    spec = __import__("gradcam_tutorial").get_spec("efficientnet_lite0")
    assert list(data["pointing_game"]) == [spec.last_conv_layer, spec.target_layer, spec.earlier_layer]
    assert all(isinstance(v, int) and 0 <= v <= 4 for v in data["pointing_game"].values())
    # the default layer finds every object of the demo grid (issue 4's bar)
    assert data["pointing_game"][spec.target_layer] == 4


@pytest.mark.slow
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


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_figures_are_png(produced):
    _, out, _ = produced
    for name in ("curves.png", "auc.png", "sanity.png"):
        assert (out / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_figures_draw_from_the_committed_results(tmp_path):
    """The figures need only the results, so an older run's file (budget keys and all, no SSIM
    curves) draws through the same functions."""
    paths = report.write_figures(json.loads(RESULTS.read_text()), tmp_path)
    assert [p.name for p in paths] == ["curves.png", "auc.png", "sanity.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)


@pytest.mark.slow
def test_results_have_the_keys_the_issue_lists(produced):
    _, _, data = produced
    spec = __import__("gradcam_tutorial").get_spec("efficientnet_lite0")
    assert data["val"]["n_photos"] == VAL_PHOTOS and 0 <= data["val"]["top1"] <= data["val"]["top5"] <= 1
    loc = data["localisation"]
    assert loc["n_photos"] == VAL_PHOTOS and loc["default_layer"] == spec.target_layer
    for method in [*candidate_layers(spec), "center", "random"]:
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
    assert set(cost) == {"seconds", "seconds_per_photo", "stage_seconds", "road_imputation", "units"}  # no budgets
    assert cost["seconds_per_photo"] == pytest.approx(cost["seconds"] / VAL_PHOTOS, abs=1e-4)
    stages = cost["stage_seconds"]
    assert list(stages) == ["accuracy_and_localisation", "sanity", "faithfulness", "variants"]
    # units of one photo (ten for the cheap stages): 2 + 2 + 1 (the grid) + 50 (training samples)
    # + 2 + 4 + 2 x 2; their compute seconds add up to the run's (each rounded to 4 decimals)
    assert cost["units"] == 2 + 2 + 1 + 50 + 2 + 4 + 2 * 2
    assert all(value > 0 for value in stages.values())
    assert sum(stages.values()) == pytest.approx(cost["seconds"], abs=1e-3) and cost["seconds"] == data["seconds"]
    # ROAD: 4 maps x 2 orders x 5 percentages per faithfulness photo, then each distinct variant map's
    imputation = cost["road_imputation"]
    assert imputation["masks"] >= N_PHOTOS * 4 * 2 * 5 and 0 < imputation["solved"] <= imputation["masks"]
    assert 0 < imputation["seconds"] < stages["faithfulness"] + stages["variants"]
    config = data["config"]
    assert config["engines"] == ["sequential"] and config["threads"] == torch.get_num_threads()
    assert config["model"] == "efficientnet_lite0" and config["layers"] == candidate_layers(spec)
    assert len(config["input_sha256"]["all"]) == 64 and "torch" in config["versions"]
    assert config["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and config["cpu"]["model"]
    assert config["road_solver"].startswith("SuperLU (scipy ") and "malloc_keeps_freed_memory" not in config
    assert set(config["input_sha256"]) == {"all", "faithfulness", "sanity", "variants"}


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


# --- every runner leaves a caller's model as found (issue 33) --------------------------------------
#
# Each runner that takes a model is called once on a ResNet-18 with random weights (the weights add
# nothing to bookkeeping) at 64 pixels, in train mode with its batch norms, partly frozen, with a
# caller's hook and a caller's accumulated gradient: any pass they made in train mode, any hook or
# gradient they left behind, shows in the guard of ``conftest.py``.

Runner = Callable[[nn.Module, ModelSpec, list[ValPhoto]], object]

RUNNERS: dict[str, Runner] = {
    "top_k_accuracy": lambda model, spec, photos: top_k_accuracy(model, spec, photos),
    "pointing_by_layer": lambda model, spec, photos: pointing_by_layer(model, spec),
    "evaluate_localisation": lambda model, spec, photos: evaluate_localisation(
        model, spec, photos, [spec.target_layer, spec.earlier_layer], variants=("hirescam",)
    ),
    "evaluate_faithfulness": lambda model, spec, photos: evaluate_faithfulness(
        model, spec, photos, steps=2, road_percentages=(50.0,)
    ),
    "sanity_check": lambda model, spec, photos: sanity_check(model, spec, photos, depths=[1]),
    "randomised_maps": lambda model, spec, photos: randomised_maps(
        model, spec, load_image(photos[0].path), photos[0].class_index, depths=[1]
    ),
    "evaluate_variants": lambda model, spec, photos: variant_comparison.evaluate_variants(
        model, spec, photos, model, names=("gradcam", "layercam"), steps=2, road_percentages=(50.0,)
    ),
    "compare_with_peers": lambda model, spec, photos: peers.compare_with_peers(
        model, spec.target_layer, spec.preprocess(load_image(photos[0].path)), photos[0].class_index
    ),
}


@pytest.fixture(scope="module")
def small_resnet() -> tuple[nn.Module, ModelSpec]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval(), dataclasses.replace(get_spec("resnet18"), input_size=64)


@pytest.mark.slow
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_every_report_runner_leaves_the_model_as_found(small_resnet, runner):
    model = train_mode_with_batchnorm(copy.deepcopy(small_resnet[0]))
    model.layer1.requires_grad_(False)
    model.layer2.eval()  # mixed flags, as with frozen batch norms while fine-tuning
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)
    model.fc.register_forward_hook(lambda *_: None)
    with left_as_found(model):
        RUNNERS[runner](model, small_resnet[1], list(imagenet_val()[:1]))
