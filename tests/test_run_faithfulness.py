"""The report's faithfulness runner, summaries and figure (evaluation/run_faithfulness.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradcam_tutorial.data import imagenet_val
from gradcam_tutorial.evaluation import faithfulness
from gradcam_tutorial.evaluation.run_faithfulness import (
    METHODS,
    Faithfulness,
    concatenate,
    evaluate_faithfulness,
    plot_curves,
    summarise_faithfulness,
)
from gradcam_tutorial.evaluation.shared import spread

RESULTS = Path(__file__).resolve().parents[1] / "results" / "report-full.json"


def synthetic(n: int = 3, steps: int = 4, offset: float = 0.0) -> Faithfulness:
    """Curves whose AUCs and confidence terms are known: method m's deletion curve is flat at
    (m + 1) / 10 + offset, its insertion curve at 1 - that; the explained probability is half the full one."""
    level = (np.arange(len(METHODS)) + 1) / 10 + offset
    deletion = np.broadcast_to(level[None, :, None], (n, len(METHODS), steps + 1)).copy()
    full = np.full(n, 0.8)
    return Faithfulness(
        class_indices=np.arange(n),
        fractions=np.linspace(0, 1, steps + 1),
        deletion=deletion,
        insertion=1 - deletion,
        full_probability=full,
        explained_probability=np.full((n, len(METHODS)), 0.4),
    )


def test_summary_has_the_curves_aucs_and_confidence_terms():
    summary = summarise_faithfulness(synthetic(), seed=0)
    assert summary["n_photos"] == 3 and summary["steps"] == 4
    for index, method in enumerate(METHODS):
        level = (index + 1) / 10
        assert summary["deletion_auc"][method]["mean"] == pytest.approx(level)
        assert summary["insertion_auc"][method]["mean"] == pytest.approx(1 - level)
        assert summary["mean_curves"]["deletion"][method] == pytest.approx([level] * 5)
        assert summary["avg_drop"][method] == pytest.approx(0.5)  # (0.8 - 0.4) / 0.8
        assert summary["increase_in_confidence"][method] == 0.0
    # Grad-CAM (0.1) minus random (0.3) and minus the centre prior (0.4), identical on every photo
    assert summary["deletion_diff_ci95"] == pytest.approx([-0.2, -0.2])
    assert summary["deletion_diff_vs_center_ci95"] == pytest.approx([-0.3, -0.3])


def test_concatenate_joins_photos_in_order():
    joined = concatenate([synthetic(2), synthetic(3, offset=0.05)])
    assert joined.deletion.shape == (5, len(METHODS), 5) and joined.full_probability.shape == (5,)
    assert joined.deletion[1, 0, 0] == pytest.approx(0.1) and joined.deletion[2, 0, 0] == pytest.approx(0.15)


def curves_drawn(summary: dict) -> tuple[dict[str, list[float]], list[str]]:
    fig = Figure()
    ax_deletion, ax_insertion, ax_road = fig.subplots(1, 3)
    plot_curves(summary, ax_deletion, ax_insertion, ax_road if "faithfulness" in summary else None)
    drawn = {line.get_label(): list(line.get_ydata()) for line in ax_deletion.get_lines()}
    return drawn, [line.get_label() for line in ax_road.get_lines()]


def test_one_curve_figure_for_a_live_summary_and_the_committed_results():
    """The same function draws the notebook's live curves and the full run's, from the same keys."""
    live = summarise_faithfulness(synthetic(), seed=0)
    drawn, road_lines = curves_drawn(live)
    assert drawn == {f"{m} (AUC {(i + 1) / 10:.3f})": pytest.approx([(i + 1) / 10] * 5) for i, m in enumerate(METHODS)}
    assert road_lines == []
    full = json.loads(RESULTS.read_text())
    drawn, road_lines = curves_drawn(full)
    assert list(drawn.values()) == [full["mean_curves"]["deletion"][m] for m in full["mean_curves"]["deletion"]]
    assert len(road_lines) == 2 * len(full["faithfulness"]["road"]["mean_curves"]["morf"])


@pytest.mark.slow
def test_faithfulness_with_fewer_steps_is_every_other_point_of_more_steps(effnet):
    """Subsampling a 2S-step run gives exactly what an S-step run measures (same pixels removed)."""
    photos = spread(list(imagenet_val()), 2)
    fine = evaluate_faithfulness(*effnet, photos, steps=8)
    coarse = evaluate_faithfulness(*effnet, photos, steps=4)
    np.testing.assert_allclose(fine.subsampled(4).deletion, coarse.deletion, atol=1e-5)
    np.testing.assert_allclose(fine.subsampled(4).insertion, coarse.insertion, atol=1e-5)
    with pytest.raises(ValueError):
        fine.subsampled(3)
    # the AUCs are those of the curves
    np.testing.assert_allclose(fine.auc("deletion")["gradcam"], faithfulness.curve_auc(fine.deletion[:, 0]))
