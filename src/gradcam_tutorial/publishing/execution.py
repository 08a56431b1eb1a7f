"""Executing a py:percent notebook top to bottom in a fresh kernel, with parameters and environment."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import jupytext
import nbformat


@contextlib.contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for kernels started inside the block (they copy os.environ)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def inject_parameters(notebook: nbformat.NotebookNode, parameters: Mapping[str, object]) -> None:
    """Add a cell that overrides ``parameters`` right after the cell tagged ``parameters``.

    The same convention as papermill: the notebook's defaults stay visible, the override follows
    them in a cell tagged ``injected-parameters``.
    """
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_widget_views(notebook: nbformat.NotebookNode) -> None:
    """Keep only the HTML of outputs that are a widget with an HTML fallback (the explorer).

    A widget's view lives in the kernel that made it: in the committed notebook, an exported page or
    a JupyterLab without that kernel it would be a broken widget, and its model id changes with every
    run. The widget's state is not saved either (``store_widget_state=False``).
    """
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "text/html" in data:
                del data[WIDGET_VIEW]
    notebook.metadata.pop("widgets", None)


def execute(
    source: Path,
    out_dir: Path | None = None,
    timeout: int = 1200,
    env: Mapping[str, str] | None = None,
    parameters: Mapping[str, object] | None = None,
) -> Path:
    """Run ``source`` (a .py notebook) top to bottom in a new kernel; write and return the .ipynb."""
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # a kernel told to use Agg would show no figures at all
    notebook = jupytext.read(source)
    if parameters:
        inject_parameters(notebook, parameters)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(source.parent.resolve())}},
    )
    with _environment(env or {}):
        client.execute()
    drop_widget_views(notebook)
    notebook.metadata["gradcam_tutorial"] = {"executed": _dt.date.today().isoformat()}
    target = (out_dir or source.parent) / (source.stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target
