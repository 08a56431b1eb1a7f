"""The report's sanity-check runner, summary and figure (evaluation/run_sanity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradcam_tutorial.data import imagenet_val
from gradcam_tutorial.evaluation.run_sanity import Sanity, plot_sanity, saliency_maps, sanity_check, summarise_sanity
from gradcam_tutorial.evaluation.sanity import rank_correlation
from gradcam_tutorial.evaluation.shared import model_input, spread

RESULTS = Path(__file__).resolve().parents[1] / "results" / "report-full.json"


def synthetic() -> Sanity:
    """Two photos, two depths: Grad-CAM's similarity falls, Guided Backprop's stays."""
    return Sanity(
        stages=["head", "block"],
        depths=[1, 2],
        spearman={"gradcam": np.array([[0.5, -0.1], [0.3, 0.1]]), "guided_backprop": np.full((2, 2), 0.9)},
        ssim={"gradcam": np.array([[0.4, 0.2], [0.2, 0.0]]), "guided_backprop": np.full((2, 2), 0.8)},
        reference={"gradcam": np.array([0.2, 0.4]), "guided_backprop": np.array([0.5, 0.7])},
    )


def test_summary_holds_both_curves_and_the_reference_levels():
    summary = summarise_sanity(synthetic())
    assert summary["n_photos"] == 2 and summary["depth"] == 2 and summary["stages"] == ["head", "block"]
    assert summary["curve_abs_spearman"]["gradcam"] == pytest.approx([0.4, 0.1])  # |rho| before the mean
    assert summary["curve_ssim"]["gradcam"] == pytest.approx([0.3, 0.1])
    assert summary["final_abs_spearman"]["gradcam"] == pytest.approx(0.1)
    assert summary["reference_abs_spearman"] == pytest.approx(0.3)
    assert summary["reference_abs_spearman_by_method"]["guided_backprop"] == pytest.approx(0.6)


def test_one_sanity_figure_for_a_live_summary_and_the_committed_results():
    fig = Figure()
    ax_spearman, ax_ssim = fig.subplots(1, 2)
    plot_sanity(summarise_sanity(synthetic()), ax_spearman, ax_ssim)
    solid = [line for line in ax_spearman.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in ax_spearman.get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_ydata()) for line in solid] == [pytest.approx([0.4, 0.1]), pytest.approx([0.9, 0.9])]
    assert [line.get_ydata()[0] for line in dashed] == pytest.approx([0.3, 0.6])
    assert list(ax_ssim.get_lines()[0].get_ydata()) == pytest.approx([0.3, 0.1])
    # the committed run's entry draws the same way; results written before the SSIM curves were
    # kept draw the |Spearman| panel alone
    full = json.loads(RESULTS.read_text())["sanity"]
    older = {key: value for key, value in full.items() if key != "curve_ssim"}
    fig = Figure()
    ax_spearman, ax_ssim = fig.subplots(1, 2)
    plot_sanity(older, ax_spearman, ax_ssim)
    drawn = [list(line.get_ydata()) for line in ax_spearman.get_lines() if line.get_linestyle() == "-"]
    assert drawn == list(full["curve_abs_spearman"].values())
    assert ax_ssim.get_lines() == []


@pytest.mark.slow
def test_sanity_reference_is_the_similarity_of_neighbouring_photos(effnet):
    """Each photo's map against the next photo's map (the last against the first), per method."""
    model, spec = effnet
    photos = spread(list(imagenet_val()), 3)
    sanity = sanity_check(model, spec, photos, depths=[1], methods=("gradcam", "guided_backprop"))
    maps = [
        saliency_maps(model, spec, model_input(p, spec), p.class_index, ("gradcam", "guided_backprop")) for p in photos
    ]
    for method in ("gradcam", "guided_backprop"):
        expected = [abs(rank_correlation(maps[i][method], maps[(i + 1) % 3][method])) for i in range(3)]
        np.testing.assert_allclose(sanity.reference[method], expected, atol=1e-6)
        assert sanity.spearman[method].shape == (3, 1)
    # only the classifier is random at depth 1: Guided Backprop barely notices, Grad-CAM does
    assert np.abs(sanity.spearman["guided_backprop"]).mean() > 0.9 > np.abs(sanity.spearman["gradcam"]).mean()
