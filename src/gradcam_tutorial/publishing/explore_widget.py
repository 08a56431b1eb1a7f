"""The explorer of every class as a JupyterLab widget (anywidget on ipywidgets), bound to the kernel.

The widget runs the page's own script (``assets/explorer.js``) on the page's own data, so it draws
exactly what the static page draws; being a widget adds the kernel's side: ``selected`` is the class
the reader picked, readable in the next cell, and setting it from Python moves the view. Where no
widget can show (an exported page, nbval, a notebook opened without its kernel) the output carries
the HTML explorer as well: ``text/html`` beside the widget's own MIME type.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..explore import ExplorerData, asset, compute, fragment, payload_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from PIL import Image
    from torch import nn

    from ..models import ModelSpec
    from ..regions import Box

_RENDER = """
export default {
  render({ model, el }) {
    el.innerHTML = '<div class="gcx" id="gcx"><style>' + CSS + '</style>' + MARKUP + '</div>';
    const root = el.firstElementChild;
    const view = mountExplorer(root, JSON.parse(model.get("data")), (k) => {
      model.set("selected", k);
      model.save_changes();
    });
    const follow = () => view.select(model.get("selected"));
    follow();
    model.on("change:selected", follow);
    return () => model.off("change:selected", follow);
  },
};
"""


def widget_module() -> str:
    """The widget's ES module: the explorer's script, styles and markup, and anywidget's render."""
    css, markup = json.dumps(asset("explorer.css")), json.dumps(asset("explorer.html"))
    return f"{asset('explorer.js')}\nconst CSS = {css};\nconst MARKUP = {markup};\n{_RENDER}"


class ExplorerWidget(anywidget.AnyWidget):
    """Every class's map of one picture; ``selected`` is the class index shown, in both directions."""

    _esm = widget_module()
    data = traitlets.Unicode("").tag(sync=True)  # page_payload's JSON
    selected = traitlets.Int(0).tag(sync=True)

    def __init__(self, data: ExplorerData, title: str, **kwargs: Any) -> None:
        self.explorer_data, self.title = data, title  # before the traits: validating selected reads it
        super().__init__(data=payload_json(data, title), selected=int(data.probabilities.argmax()), **kwargs)

    @traitlets.validate("selected")
    def _check_selected(self, proposal: dict[str, Any]) -> int:
        k, classes = proposal["value"], len(self.explorer_data.names)
        if not 0 <= k < classes:
            raise traitlets.TraitError(f"selected must be a class index from 0 to {classes - 1}, not {k}")
        return int(k)

    @property
    def selected_name(self) -> str:
        """The name of the class the reader picked."""
        return self.explorer_data.names[self.selected]

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        return {**data, "text/html": fragment(self.data)}, metadata  # the payload encoded once, in __init__

    def __repr__(self) -> str:
        return f"Grad-CAM explorer of {len(self.explorer_data.names)} classes for {self.title}"


def explorer_widget(
    image: Image.Image,
    model: nn.Module,
    spec: ModelSpec,
    title: str = "the picture",
    regions: Mapping[str, Box] | None = None,
) -> ExplorerWidget:
    """Every class's map of ``image`` (:func:`~gradcam_tutorial.explore.compute`) as a widget."""
    return ExplorerWidget(compute(image, model, spec, regions), title)
