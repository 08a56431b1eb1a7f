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
        resources={"metadata": {"path": str(source.parent.resolve())}},
    )
    with _environment(env or {}):
        client.execute()
    notebook.metadata["gradcam_tutorial"] = {"executed": _dt.date.today().isoformat()}
    target = (out_dir or source.parent) / (source.stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target
