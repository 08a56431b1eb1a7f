"""Committed notebook outputs are CPU-proof: reference checks, their tolerances and the notebook tools."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest

from gradcam_tutorial.publishing import notebooks, reference, tolerances

REFERENCES = Path(__file__).parent / "reference"
SANITIZE = Path(__file__).parent / "nbval_sanitize.cfg"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_REFERENCES = {"tutorial": REFERENCES / "tutorial.json", "report": REFERENCES / "report.json"}


def _reference(values: dict, tolerance: float = 0.01, decimals: dict | None = None, nonnegative=()) -> dict:
    entries = {k: {"value": v, "tolerance": tolerance, "spread": 0.0} for k, v in values.items()}
    for key, d in (decimals or {}).items():
        entries[key]["decimals"] = d
    for key in nonnegative:
        entries[key]["nonnegative"] = True
    return {"about": "test", "variants": ["a"], "parameters": {"P": 1}, "values": entries}


def test_mismatches_within_and_beyond_tolerance():
    stored = _reference({"a": 0.5, "b": [1.0, 2.0, 3.0]}, tolerance=0.01)
    assert reference.mismatches({"a": 0.505, "b": [1.0, 2.009, 2.995]}, stored) == []
    problems = reference.mismatches({"a": 0.52, "b": [1.0, 2.0, float("nan")]}, stored)
    assert len(problems) == 2
    assert problems[0].startswith("a: 0.52, reference 0.5") and "b[2]: nan" in problems[1]


def test_mismatches_missing_extra_and_resized_names():
    stored = _reference({"a": 0.5, "b": [1.0, 2.0]})
    problems = reference.mismatches({"b": [1.0], "c": 3.0}, stored)
    assert "c: not in the reference" in problems
    assert "a: in the reference but not computed" in problems
    assert "b: 1 numbers, the reference has 2" in problems


@pytest.mark.parametrize(
    ("value", "decimals", "tolerance", "nonnegative", "stable"),
    [
        (0.4291, 3, 1e-4, False, True),  # 0.4 of a unit from the boundary 0.4295
        (0.42949, 3, 1e-4, False, False),  # 1e-5 from 0.4295: a neighbour CPU could print 0.430
        (-0.0281, 3, 1e-4, False, True),
        (0.0, 2, 1e-3, False, False),  # -0.00 against 0.00
        (0.0001, 2, 1e-3, False, False),
        (0.0, 2, 1e-3, True, True),  # a map's exact zero after a ReLU prints 0.00 everywhere
        (0.16075, 4, 1e-6, True, False),  # 16.075 % printed to two decimals of a percent
        (0.16071, 4, 1e-6, True, True),
    ],
)
def test_printing_problems_agree_with_python_formatting(value, decimals, tolerance, nonnegative, stable):
    """The rounding-boundary rule says exactly when values within tolerance can print differently."""
    stored = _reference({"x": value}, tolerance, {"x": decimals}, ["x"] if nonnegative else [])
    found = reference.printing_problems(stored)
    low = max(value - tolerance, 0.0) if nonnegative else value - tolerance
    printed = {f"{v:.{decimals}f}" for v in np.linspace(low, value + tolerance, 2001)}
    assert (found == []) == stable == (len(printed) == 1)


def test_a_negative_value_declared_nonnegative_is_a_problem():
    assert "declared non-negative" in reference.printing_problems(_reference({"x": -0.2}, 1e-3, {"x": 2}, ["x"]))[0]


def test_check_passes_fails_and_skips_other_parameters(tmp_path, monkeypatch):
    monkeypatch.delenv(reference.MODE_ENV, raising=False)
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(_reference({"x": [0.5, 0.25]}, 0.001, {"x": 2})))
    assert reference.check("demo", {"x": [0.5005, 0.25]}, path, {"P": 1}, {"x": 2}) == (
        "demo: all 2 numbers within their stored tolerances of demo.json"
    )
    with pytest.raises(reference.ReferenceMismatch, match=r"x\[1\]: 0.3, reference 0.25"):
        reference.check("demo", {"x": [0.5, 0.3]}, path, {"P": 1}, {"x": 2})
    with pytest.raises(reference.ReferenceMismatch, match="printed decimals"):
        reference.check("demo", {"x": [0.5, 0.25]}, path, {"P": 1}, {"x": 3})
    assert "not checked" in reference.check("demo", {"x": [9.0, 9.0]}, path, {"P": 2}, {"x": 2})


def test_record_mode_writes_the_numbers_and_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv(reference.MODE_ENV, "record")
    monkeypatch.setenv(reference.RECORD_DIR_ENV, str(tmp_path / "record"))
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(_reference({"x": 0.5})))
    verdict = reference.check("demo", {"x": np.float32(0.75)}, path, {"P": 1})
    assert verdict.startswith("demo:")
    assert json.loads((tmp_path / "record" / "demo.json").read_text()) == {
        "parameters": {"P": 1},
        "printed": {},
        "nonnegative": [],
        "values": {"x": [0.75]},
    }


def test_build_takes_spread_across_variants_and_derives_tolerances():
    runs = {
        "a": {"x": [0.5, 1.0], "k": [3.0]},
        "b": {"x": [0.5002, 0.9999], "k": [3.0]},
        "c": {"x": [0.4999, 1.0], "k": [3.0]},
    }
    built = reference.build(runs, {"P": 1}, {"x": 2}, {"": 1e-5, "k": 1e-6}, "about", ["x"])
    assert built["values"]["x"]["value"] == [0.5, 1.0]  # the first variant's numbers
    assert built["values"]["x"]["spread"] == pytest.approx(3e-4)
    assert built["values"]["x"]["tolerance"] == pytest.approx(3e-3)
    assert built["values"]["x"]["decimals"] == 2 and built["values"]["x"]["nonnegative"] is True
    assert built["values"]["k"] == {"value": 3.0, "tolerance": 1e-6, "spread": 0.0}
    assert reference.tolerance_for(1.234e-4, 1e-5) == 1.3e-3
    assert reference.tolerance_for(3.8e-6, 1e-6) == 3.8e-5  # not 3.7999999999999995e-05
    assert reference.tolerance_for(0.0, 1e-6) == 1e-6


@pytest.mark.parametrize("name", sorted(NOTEBOOK_REFERENCES))
def test_committed_references_carry_measured_tolerances(name):
    """Every stored number has a tolerance >= 10x its measured spread, and printed ones print stably."""
    stored = reference.load(NOTEBOOK_REFERENCES[name])
    assert set(stored["variants"]) == set(notebooks.SPREAD_VARIANTS)
    assert stored["values"], "an empty reference checks nothing"
    for key, entry in stored["values"].items():
        assert entry["tolerance"] >= 10 * entry["spread"] * (1 - 1e-12) and entry["tolerance"] > 0, key
    assert reference.printing_problems(stored) == []


@pytest.mark.parametrize("name", sorted(NOTEBOOK_REFERENCES))
def test_committed_notebooks_ran_their_check(name):
    """The committed twin's last cell printed the passing verdict of its reference check."""
    executed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    last = [c for c in executed.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs)
    assert f"{name}: all " in text and f"within their stored tolerances of {name}.json" in text


def test_nbval_variants_cover_avx2_and_sse41_on_one_thread():
    variants = notebooks.NBVAL_VARIANTS
    assert variants["as-is"] == {}
    assert variants["avx2"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert variants["sse41-1-thread"]["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert variants["sse41-1-thread"]["OMP_NUM_THREADS"] == "1"
    for source in ("tutorial", "report"):  # the notebooks pass the thread count on to torch
        assert (
            'torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))'
            in (NOTEBOOKS / f"{source}.py").read_text()
        )


def test_compared_outputs_skip_ignored_cells_and_sanitize():
    notebook = nbformat.v4.new_notebook()
    kept = nbformat.v4.new_code_cell("print(1)")
    kept.outputs = [nbformat.v4.new_output("stream", text="took 12.5 ms at 0x7ffd12345678\n")]
    ignored = nbformat.v4.new_code_cell("print(2)", metadata={"tags": ["nbval-ignore-output"]})
    ignored.outputs = [nbformat.v4.new_output("stream", text="0.4295\n")]
    commented = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint(3)")
    commented.outputs = [nbformat.v4.new_output("stream", text="noise\n")]
    notebook.cells = [nbformat.v4.new_markdown_cell("text"), kept, ignored, commented]
    assert notebooks.compared_outputs(notebook, SANITIZE) == {0: "took <TIME> at 0xADDRESS\n"}


def test_repository_files_are_found_upwards_from_the_notebook_then_the_working_directory(tmp_path, monkeypatch):
    """The package assumes no repository layout: the sanitize file and the references are looked for
    from the notebook's folder upwards, then from the working directory, or are passed in."""
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "tests" / "reference").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    elsewhere.mkdir()
    (repo / "tests" / "nbval_sanitize.cfg").write_text(SANITIZE.read_text())
    (repo / "tests" / "reference" / "demo.json").write_text("{}")
    source = repo / "notebooks" / "demo.py"
    monkeypatch.chdir(elsewhere)
    found = tolerances._reference_file("demo", source, None)
    assert found is not None and found.resolve() == (repo / "tests" / "reference" / "demo.json").resolve()
    assert notebooks.sanitize_file(source.parent).resolve() == (repo / "tests" / "nbval_sanitize.cfg").resolve()
    assert tolerances._reference_file("demo", source, elsewhere) == elsewhere / "demo.json"
    assert tolerances._reference_file("other", source, None) is None
    with pytest.raises(FileNotFoundError, match="pass --sanitize"):
        notebooks.sanitize_file(elsewhere)
    with pytest.raises(FileNotFoundError, match="pass --sanitize"):
        notebooks.compared_outputs(nbformat.v4.new_notebook())  # no sanitize file above the working directory
    monkeypatch.chdir(repo / "notebooks")
    assert notebooks.sanitize_file(elsewhere).resolve() == (repo / "tests" / "nbval_sanitize.cfg").resolve()
    assert notebooks.compared_outputs(nbformat.v4.new_notebook()) == {}


DEMO = """# %%
import os
from gradcam_tutorial.publishing.reference import check
value = float(os.environ["DEMO_VALUE"])

# %%
print(f"value {value:.1f}")

# %%
print(check("demo", {"value": value}, "demo.json", {"P": 1}, {"value": 1}, ["value"]))
"""


@pytest.mark.slow
def test_diff_tells_a_real_change_from_a_rounding_wobble(tmp_path, monkeypatch, capsys):
    """`notebooks diff` is silent for a change within tolerance and names both kinds of real change."""
    source = tmp_path / "demo.py"
    source.write_text(DEMO)
    stored = _reference({"value": 1.0}, tolerance=0.01, decimals={"value": 1}, nonnegative=["value"])
    (tmp_path / "demo.json").write_text(json.dumps(stored))
    monkeypatch.setenv("DEMO_VALUE", "1.0")
    notebooks.execute(source)
    jupytext.write(jupytext.read(source), source)  # keep the pair as a developer would have it

    monkeypatch.setenv("DEMO_VALUE", "1.004")
    assert notebooks.diff(source, references=tmp_path, sanitize=SANITIZE) == 0
    assert "no compared output changed" in capsys.readouterr().out

    monkeypatch.setenv("DEMO_VALUE", "1.5")
    assert notebooks.diff(source, references=tmp_path, sanitize=SANITIZE) == 1
    out = capsys.readouterr().out
    assert "code cell 1: compared output changed" in out and "+value 1.5" in out
    assert "demo: value: 1.5, reference 1, |difference| 0.5 > tolerance 0.01" in out
