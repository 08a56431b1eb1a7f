"""The report's five answers: written from the results file, worded by their intervals, and the sanity
verdict applied by one criterion to every method."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gradcam_tutorial.evaluation.answers import (
    QUESTIONS,
    against_level,
    answers,
    compared_with,
    render_markdown,
    sanity_verdicts,
    variant_findings,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "report-full.json"


@pytest.fixture(scope="module")
def full() -> dict:
    return json.loads(RESULTS.read_text())


def answer(results: dict, number: int) -> str:
    return dict(answers(results))[QUESTIONS[number]]


def test_comparison_phrase_follows_the_reading():
    assert compared_with((-0.01, 0.02), "x") == "no different from x"
    assert compared_with((0.01, 0.02), "x") == "better than x"
    assert compared_with((0.01, 0.02), "x", higher_is_better=False) == "worse than x"


def test_a_level_inside_the_interval_is_no_different_from_it():
    entry = {"mean": 0.688, "ci95": [0.659, 0.716]}
    assert against_level(entry, 0.675).endswith("no different from chance (0.675)")
    assert against_level(entry, 0.5).endswith("above chance (0.500)")
    assert against_level(entry, 0.8).endswith("below chance (0.800)")


def test_five_answers_one_per_question(full):
    pairs = answers(full)
    assert [q for q, _ in pairs] == list(QUESTIONS)
    assert all(a and a.endswith(".") for _, a in pairs)
    rendered = render_markdown(pairs)
    assert rendered.count("\n") == 4 and rendered.startswith("1. **")


def test_a_number_changed_in_the_results_changes_the_answer(full):
    changed = copy.deepcopy(full)
    layer = changed["localisation"]["default_layer"]
    changed["localisation"][layer]["energy"]["mean"] = 0.1234
    assert "0.123" in answer(changed, 0) and "0.123" not in answer(full, 0)
    changed["cost"]["seconds"] = 600.0
    assert "10.0 minutes" in answer(changed, 4)


def test_localisation_wording_flips_when_the_paired_interval_crosses_zero(full):
    changed = copy.deepcopy(full)
    changed["localisation"]["energy_diff_vs_center_ci95"] = [-0.01, 0.02]
    text = answer(changed, 0)
    assert "no different from the centre prior, paired -0.010 to +0.020" in text
    assert not text.startswith("Yes")
    changed["localisation"]["energy_diff_vs_center_ci95"] = [-0.05, -0.01]
    changed["localisation"]["pointing_diff_vs_center_ci95"] = [-0.05, -0.01]
    text = answer(changed, 0)
    assert text.startswith("No.") and "worse than the centre prior" in text


def test_faithfulness_reads_deletion_as_lower_is_better(full):
    changed = copy.deepcopy(full)
    changed["deletion_diff_vs_center_ci95"] = [0.01, 0.03]  # Grad-CAM deletes more slowly: worse
    text = answer(changed, 1)
    assert "deletion AUC" in text and "worse than the centre prior (" in text
    assert text.startswith("Partly")


def sanity_block(curves: dict[str, list[float]], references: dict[str, float]) -> dict:
    return {
        "stages": ["top", "middle", "bottom", "stem"],
        "curve_abs_spearman": curves,
        "reference_abs_spearman_by_method": references,
    }


def test_sanity_verdict_is_one_criterion_for_every_method():
    block = sanity_block(
        {
            "at_once": [0.3, 0.2, 0.2, 0.1],
            "middle": [0.9, 0.5, 0.2, 0.1],
            "last_only": [0.9, 0.8, 0.6, 0.1],
            "never": [0.9, 0.8, 0.6, 0.4],
            "touching": [0.9, 0.8, 0.4, 0.35],
        },
        {"at_once": 0.4, "middle": 0.3, "last_only": 0.3, "never": 0.3, "touching": 0.4},
    )
    read = sanity_verdicts(block)
    assert {m: v.passes for m, v in read.items()} == {
        "at_once": True,
        "middle": True,
        "last_only": False,  # reached only when nothing learned is left
        "never": False,
        "touching": True,  # at the reference level counts as reached
    }
    assert read["at_once"].stage == "top" and read["middle"].stage == "bottom"
    assert read["last_only"].stage == "stem" and read["never"].stage is None
    assert read["touching"].stage == "bottom"


def test_sanity_answer_uses_the_stored_curves(full):
    changed = copy.deepcopy(full)
    sanity = changed["sanity"]
    for method in sanity["curve_abs_spearman"]:
        if method != "gradcam":  # every control now reaches its reference one stage before the last
            curve = sanity["curve_abs_spearman"][method]
            curve[-2] = sanity["reference_abs_spearman_by_method"][method] / 2
    assert answer(changed, 2).count(": passes") == len(sanity["curve_abs_spearman"])
    assert answer(full, 2).count(": fails") == 2  # the gradient and Guided Backprop, as the curves stand
    assert answer(full, 2) != answer(changed, 2)


def test_a_variant_whose_randomised_maps_are_all_flat_earns_no_gain():
    def entry(diff, mean=0.2, ci=(0.1, 0.3)):
        return {"mean": mean, "ci95": list(ci), "n_photos": 10, "diff_vs_gradcam_ci95": list(diff)}

    same = (-0.1, 0.1)
    block = {
        "gradcam": {"same_map_as_gradcam": True},
        "flat": {"same_map_as_gradcam": False},
        "real": {"same_map_as_gradcam": False},
    }
    for name in ("flat", "real"):
        block[name].update(
            {m: entry(same) for m in ("energy", "pointing", "insertion_auc", "deletion_auc", "road_gap")}
        )
    block["flat"]["sanity_final_abs_spearman"] = entry((-0.3, -0.1), mean=0.0, ci=(0.0, 0.0))
    block["real"]["sanity_final_abs_spearman"] = entry((-0.3, -0.1), mean=0.05, ci=(0.01, 0.09))
    found = variant_findings(block)
    assert found["flat"]["better"] == [] and found["real"]["better"] == ["sanity_final_abs_spearman"]


def test_variant_answer_names_the_layers_from_the_results(full):
    text = answer(full, 3)
    for layer in full["variants_by_layer"]:
        assert f"`{layer}`" in text


def executed_answers_output() -> str:
    notebook = json.loads((ROOT / "notebooks" / "report.ipynb").read_text())
    cells = [
        c for c in notebook["cells"] if c["cell_type"] == "code" and "answers.answers(full)" in "".join(c["source"])
    ]
    assert len(cells) == 1, "the report has one answers cell, calling the function"
    (output,) = [o for o in cells[0]["outputs"] if "text/markdown" in o.get("data", {})]
    return "".join(output["data"]["text/markdown"])


def test_the_reports_answers_are_the_functions_output_on_the_results_file(full):
    """The committed, executed report shows exactly what the function writes from the committed
    results file: answers typed by hand, or left from another run, fail here."""
    assert executed_answers_output() == render_markdown(answers(full))


def test_the_report_opens_with_the_answers():
    source = (ROOT / "notebooks" / "report.py").read_text()
    assert source.index("## Answers") < source.index("## 0. Accuracy")
    assert "answers.answers(full)" in source
