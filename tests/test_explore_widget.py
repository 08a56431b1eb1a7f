"""The explorer as a JupyterLab widget: the page's script and data behind anywidget, bound to the kernel.

Its Python side is tested here without a browser; its render function runs in headless Chromium on a
stand-in for the widget model (``get``, ``set``, ``save_changes``, ``on``, ``off``: the part of
anywidget's model API the module uses). test_lab.py checks that it renders in a real JupyterLab.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import traitlets

from gradcam_tutorial.explore import ExplorerData, render_fragment
from gradcam_tutorial.publishing import browser
from gradcam_tutorial.publishing.execution import WIDGET_VIEW
from gradcam_tutorial.publishing.explore_widget import ExplorerWidget, explorer_widget, widget_module


@pytest.fixture(scope="module")
def widget(effnet, grid) -> ExplorerWidget:
    image, tiles = grid
    model, spec = effnet
    return explorer_widget(image, model, spec, "the grid", {tile.label: tile.box for tile in tiles})


def test_the_output_is_the_widget_with_the_html_explorer_beside_it(widget: ExplorerWidget) -> None:
    """JupyterLab renders the widget view; anything without the kernel's widget shows the HTML."""
    bundle, _ = widget._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == widget.model_id
    assert bundle["text/html"] == render_fragment(widget.explorer_data, "the grid")
    assert json.loads(widget.data)["mapShape"] == [1000, 7, 7]


def test_selected_is_a_class_index_both_ways(widget: ExplorerWidget) -> None:
    data = widget.explorer_data
    assert widget.selected == int(data.probabilities.argmax())
    widget.selected = data.names.index("goose")
    assert widget.selected_name == "goose"
    for wrong in (-1, len(data.names)):
        with pytest.raises(traitlets.TraitError, match="class index from 0 to 999"):
            widget.selected = wrong
    assert widget.selected_name == "goose"


_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><div id="host"></div><script type="module">
const state = {data: @DATA@, selected: @SELECTED@}, listeners = [], calls = [];
const model = {
  get: (key) => state[key],
  set: (key, value) => { calls.push([key, value]); state[key] = value; },
  save_changes: () => calls.push(["saved"]),
  on: (event, f) => { if (event === "change:selected") listeners.push(f); },
  off: (event, f) => { listeners.splice(listeners.indexOf(f), 1); },
};
window.kernel = {calls, state, send(k) { state.selected = k; listeners.forEach((f) => f()); }};
const module = await import("data:text/javascript;base64,@MODULE@");
window.kernel.cleanup = module.default.render({model, el: document.getElementById("host")});
</script></body></html>"""


@pytest.mark.browser
@pytest.mark.slow
def test_the_widget_view_follows_the_kernel_and_tells_it_the_readers_choice(
    widget: ExplorerWidget, tmp_path: Path
) -> None:
    """The view opens on the model's class (not the top one), redraws when the kernel sets another
    (the package's overlay of it, within 2/255), and a click sends the choice back and saves it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_explore import _canvas, _is_chosen, _ranking

    data: ExplorerData = widget.explorer_data
    first, second = data.names.index("espresso"), data.names.index("tabby")
    module = base64.b64encode(widget_module().encode()).decode()
    page = tmp_path / "widget.html"
    page.write_text(
        _PAGE.replace("@DATA@", json.dumps(widget.data)).replace("@SELECTED@", str(first)).replace("@MODULE@", module)
    )
    if reason := browser.browser_missing():
        pytest.fail(f"the widget test needs headless Chromium: {reason}")
    with browser._chromium() as driver:
        driver.get(page.as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.getElementById('gcx')?.dataset.ready === 'true'")
        )
        assert _is_chosen(driver, first)
        driver.execute_script(f"window.kernel.send({second})")
        WebDriverWait(driver, 10).until(functools.partial(_is_chosen, k=second))
        assert np.abs(_canvas(driver).astype(int) - data.overlay(second).astype(int)).max() <= 2
        assert driver.execute_script("return window.kernel.calls") == []  # the kernel's own change: not echoed
        third = _ranking(data)[2]
        driver.find_elements(By.CSS_SELECTOR, "#gcx-ranking li")[2].click()
        assert _is_chosen(driver, third)
        assert driver.execute_script("return window.kernel.calls") == [["selected", third], ["saved"]]
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_the_widget_runs_the_pages_script() -> None:
    """One script for the page and the widget: the module is explorer.js plus anywidget's render."""
    from gradcam_tutorial.explore import asset

    module = widget_module()
    assert module.startswith(asset("explorer.js"))
    assert "export default" in module and "mountExplorer(root" in module


def test_the_html_explorer_shows_the_same_and_its_pick_is_the_top_class(widget: ExplorerWidget) -> None:
    """explorer() (no widget: the core package does not need ipywidgets) shows the widget's HTML."""
    from gradcam_tutorial.explore import Explorer

    data = widget.explorer_data
    html = Explorer(data, "the grid")
    assert html._repr_html_() == widget._repr_mimebundle_()[0]["text/html"]
    assert html.selected_name == data.names[int(data.probabilities.argmax())]
