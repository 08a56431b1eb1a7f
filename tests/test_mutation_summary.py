"""make mutate's summary: mutants matched to reviewed equivalents by their changed lines, and the score."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("mutmut")
sys.path.insert(0, str(Path(__file__).parent / "mutation"))
import summarise

DIFF = """--- src/gradcam_tutorial/viz.py
+++ src/gradcam_tutorial/viz.py
@@ -1,3 +1,3 @@
 def overlay(photo, heatmap, alpha=0.4):
-    return blend(photo, heatmap, 1 - alpha)
+    return blend(photo, heatmap, 2 - alpha)
     # done"""


def test_a_mutant_is_known_by_its_function_and_changed_lines_not_its_number():
    first = summarise.mutation_of("gradcam_tutorial.viz.x_overlay__mutmut_3", DIFF)
    renumbered = summarise.mutation_of("gradcam_tutorial.viz.x_overlay__mutmut_17", DIFF)
    assert first == renumbered
    assert first.function == "gradcam_tutorial.viz.x_overlay"
    assert first.removed == ("return blend(photo, heatmap, 1 - alpha)",)
    assert first.added == ("return blend(photo, heatmap, 2 - alpha)",)
    other = summarise.mutation_of("gradcam_tutorial.cam.x_overlay__mutmut_3", DIFF)
    assert other != first


def test_equivalents_need_a_reason(tmp_path):
    entry = '[[equivalent]]\nfunction = "m.x_f"\nremoved = ["a"]\nadded = ["b"]\n'
    good = tmp_path / "good.toml"
    good.write_text(entry + 'reason = "b is a"\n')
    assert summarise.load_equivalents(good) == {summarise.Mutation("m.x_f", ("a",), ("b",)): "b is a"}
    bad = tmp_path / "bad.toml"
    bad.write_text(entry + 'reason = " "\n')
    with pytest.raises(ValueError, match="reason"):
        summarise.load_equivalents(bad)


def test_committed_equivalents_file_parses():
    for mutation, reason in summarise.load_equivalents().items():
        assert mutation.function.startswith("gradcam_tutorial.") and reason


def test_score_counts_timeouts_and_mypy_rejections_as_caught_and_leaves_equivalents_and_unchecked_out():
    counts = Counter({"killed": 8, "timeout": 1, "survived": 1, "no tests": 1, "equivalent": 3, "not checked": 5})
    assert summarise.score(counts) == pytest.approx(9 / 11)
    assert summarise.score(counts + Counter({"caught by type check": 4})) == pytest.approx(13 / 15)
    assert summarise.score(Counter({"equivalent": 2})) is None
