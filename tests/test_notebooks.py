"""The committed notebooks are executed twins of their .py sources, and nbval can compare them."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from gradcam_tutorial.publishing.execution import WIDGET_VIEW, drop_widget_views
from gradcam_tutorial.publishing.notebooks import pair_problems

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(p for p in NOTEBOOKS.glob("*.py"))


def test_there_are_notebooks():
    assert {p.stem for p in SOURCES} >= {"tutorial", "report"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync_and_executed(source):
    assert pair_problems(source) == []


def test_drift_is_detected(tmp_path):
    """Editing the .py without re-executing must be caught, and so must an unexecuted cell."""
    source = tmp_path / "tutorial.py"
    source.write_text((NOTEBOOKS / "tutorial.py").read_text() + "\n# %%\nprint('added later')\n")
    (tmp_path / "tutorial.ipynb").write_text((NOTEBOOKS / "tutorial.ipynb").read_text())
    assert any("does not match" in p for p in pair_problems(source))

    notebook = nbformat.read(NOTEBOOKS / "tutorial.ipynb", as_version=4)
    next(c for c in notebook.cells if c.cell_type == "code").execution_count = None
    source.write_text((NOTEBOOKS / "tutorial.py").read_text())
    nbformat.write(notebook, tmp_path / "tutorial.ipynb")
    assert any("no execution count" in p for p in pair_problems(source))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_ready_for_nbval_and_publishing(source):
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    tags = [tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])]
    assert tags.count("parameters") == 1, "exactly one cell tagged 'parameters'"
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{source.name}: a cell raised"
            assert WIDGET_VIEW not in output.get("data", {}), f"{source.name}: a widget view outlives its kernel"
            text = output.get("text", "") + json.dumps(output.get("data", {}).get("text/plain", ""))
            assert "Traceback" not in text
            if output.output_type == "stream":
                assert output.name == "stdout", f"{source.name}: stderr output (warnings, progress bars) is not stable"


def test_a_widget_with_an_html_fallback_is_committed_as_its_html():
    """The explorer's output keeps its HTML; a widget without a fallback keeps its view."""
    notebook = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    both = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "a"}, "text/html": "<p>x</p>"})
    alone = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "b"}, "text/plain": "w"})
    notebook.cells = [nbformat.v4.new_code_cell("w", outputs=[both, alone])]
    drop_widget_views(notebook)
    assert dict(notebook.cells[0].outputs[0].data) == {"text/html": "<p>x</p>"}
    assert WIDGET_VIEW in notebook.cells[0].outputs[1].data
    assert "widgets" not in notebook.metadata
