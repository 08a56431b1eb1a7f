"""Reading an executed notebook: what readers see of it, its figures' captions, title, summary and date.

Both outputs (the HTML page and the Jekyll post) share :func:`shared_steps`: hidden and empty cells
go, streams merge, and :class:`FigurePreprocessor` numbers the figures with captions from cell
metadata (nbconvert has no equivalent). :func:`load` derives from the notebook what every page
about it needs (:class:`Notebook`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import importlib.metadata
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import (
    CoalesceStreamsPreprocessor,
    Preprocessor,
    RegexRemovePreprocessor,
    TagRemovePreprocessor,
)

from ..outputs import slug
from .markup import heading_text, plain_text

HIDDEN_TAGS = frozenset({"setup", "remove-cell", "remove_cell"})
VERSIONED_PACKAGES = ("torch", "torchvision")
# Which representation of an output is shown: a figure before its HTML or text fallback.
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
DISPLAY_PRIORITY = [*IMAGE_TYPES, "text/html", "text/plain"]


# --- custom piece 3: figure numbers and captions --------------------------------------------------


def shown_type(output: nbformat.NotebookNode) -> str | None:
    """The representation of an output that the pages show (nbconvert's display priority)."""
    return next((mime for mime in DISPLAY_PRIORITY if mime in output.get("data", {})), None)


class FigurePreprocessor(Preprocessor):
    """Numbers the figures in reading order; ``output.metadata.caption`` is "Figure N: <caption>".

    The caption is the cell's ``caption`` metadata (``# %% caption="..."`` in py:percent). Only the
    shown image stays in a figure's data, so ExtractOutputPreprocessor writes one file per figure.
    """

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        number = 0
        for cell in nb.cells:
            caption = str(cell.metadata.get("caption", "")).strip()
            for output in cell.get("outputs", []):
                mime = shown_type(output)
                if mime in IMAGE_TYPES:
                    number += 1
                    output.setdefault("metadata", nbformat.NotebookNode())
                    output.metadata["caption"] = f"Figure {number}" + (f": {caption}" if caption else "")
                    output.data = nbformat.NotebookNode({mime: output.data[mime]})
        return nb, resources


def shared_steps() -> list[Preprocessor]:
    """What both outputs share: hidden and empty cells go, streams merge, figures are numbered."""
    return [
        TagRemovePreprocessor(remove_cell_tags=set(HIDDEN_TAGS), enabled=True),
        RegexRemovePreprocessor(patterns=[r"\s*\Z"], enabled=True),
        CoalesceStreamsPreprocessor(enabled=True),
        FigurePreprocessor(enabled=True),
    ]


def shown(node: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the notebook as readers see it (the shared preprocessing applied)."""
    node = copy.deepcopy(node)
    resources: dict[str, Any] = {}
    for step in shared_steps():
        node, resources = step(node, resources)
    return node


def figures(node: nbformat.NotebookNode) -> list[str]:
    """The captions of the notebook's figures, in reading order ("Figure 1: ...", ...)."""
    return [
        out.metadata["caption"]
        for cell in shown(node).cells
        for out in cell.get("outputs", [])
        if "caption" in out.get("metadata", {})
    ]


# --- reading notebooks ----------------------------------------------------------------------------


@dataclass
class Notebook:
    """An executed notebook and what every page about it needs."""

    slug: str
    path: Path
    source: Path | None
    node: nbformat.NotebookNode
    title: str
    summary: str
    executed: _dt.date
    versions: list[tuple[str, str]] = field(default_factory=list)


def _first_markdown(node: nbformat.NotebookNode, want_heading: bool) -> str:
    for cell in node.cells:
        if cell.cell_type != "markdown":
            continue
        for block in re.split(r"\n\s*\n", cell.source.strip()):
            block = block.strip()
            if want_heading and block.startswith("# "):
                return block[2:].splitlines()[0]
            if not want_heading and block and not block.startswith(("#", "<", "|", "```", "$$", "!", "---")):
                return block
    return ""


def summary_line(paragraph: str, limit: int = 220) -> str:
    """One line for the index: as many whole sentences of the paragraph as fit in ``limit``."""
    text = plain_text(paragraph)
    if len(text) <= limit:
        return text
    fitting = ""
    for sentence in re.findall(r".+?[.!?](?=\s|$)", text):
        if len(fitting) + len(sentence) > limit:
            break
        fitting += sentence
    return fitting.strip() or text[: limit - 1].rstrip() + "…"


def executed_date(node: nbformat.NotebookNode, path: Path) -> _dt.date:
    """When the outputs were made: the date ``notebooks.execute`` stored, else the file's mtime."""
    stamp = node.metadata.get("gradcam_tutorial", {}).get("executed")
    if stamp:
        return _dt.date.fromisoformat(str(stamp)[:10])
    return _dt.date.fromtimestamp(path.stat().st_mtime)


def environment_versions(node: nbformat.NotebookNode | None = None) -> list[tuple[str, str]]:
    """Versions behind the outputs: Python from the kernel that ran them, packages from this venv."""
    python = node.metadata.get("language_info", {}).get("version") if node is not None else None
    versions = [("Python", python or platform.python_version())]
    for package in VERSIONED_PACKAGES:
        try:
            versions.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((package, "not installed"))
    return versions


def load(path: Path, sources: Path | None = None) -> Notebook:
    """Read an executed notebook and derive its slug, title, summary and date."""
    node = nbformat.read(path, as_version=4)
    visible = shown(node)
    source = sources / f"{path.stem}.py" if sources else None
    return Notebook(
        slug=slug(path.stem, fallback="notebook"),
        path=path,
        source=source if source and source.exists() else None,
        node=node,
        title=heading_text(_first_markdown(visible, want_heading=True)) or path.stem.replace("_", " ").title(),
        summary=summary_line(
            node.metadata.get("gradcam_tutorial", {}).get("description") or _first_markdown(visible, want_heading=False)
        ),
        executed=executed_date(node, path),
        versions=environment_versions(node),
    )
