"""The report's command line on a few photos: metrics.json has the promised schema and sane values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam_tutorial import metrics, report
from gradcam_tutorial.data import imagenet_samples

N_PHOTOS = 4
STEPS = 4
METHODS = {"gradcam", "random", "center", "last_conv"}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = report.main(["--photos", str(N_PHOTOS), "--sanity-photos", "2", "--steps", str(STEPS), "--out", str(out)])
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
    code, out, data = produced
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
        assert data["increase_in_confidence"][method] * N_PHOTOS == pytest.approx(round(data["increase_in_confidence"][method] * N_PHOTOS))
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
            assert metrics.curve_auc(np.array(curves[key][method])) == pytest.approx(data[f"{key}_auc"][method]["mean"], abs=2e-4)
        # every method starts (deletion) or ends (insertion) at the same untouched input
        assert len({round(curves[key][m][0 if key == "deletion" else -1], 4) for m in METHODS}) == 1


def test_figures_are_png(produced):
    _, out, _ = produced
    for name in ("curves.png", "auc.png", "sanity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
