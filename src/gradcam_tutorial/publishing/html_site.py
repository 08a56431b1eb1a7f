"""The HTML site: an index, one self-contained page per notebook, and the notebooks to download.

The pages need nothing from the web (images are data URIs, code is coloured by Pygments, formulas
are MathML), because they must open offline and from a plain file server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .exporters import TEMPLATES, PageExporter
from .reading import Notebook, environment_versions

SITE_TITLE = "Grad-CAM in PyTorch"
SITE_DESCRIPTION = "A reproducible Grad-CAM tutorial and report: executed notebooks, rendered without re-running them."


def neighbours(notebooks: list[Notebook], nb: Notebook) -> dict[str, dict[str, str]]:
    """The notebooks before and after ``nb`` in reading order, as links: ``previous`` and ``next``."""
    at = notebooks.index(nb)
    around = {
        "previous": notebooks[at - 1] if at > 0 else None,
        "next": notebooks[at + 1] if at + 1 < len(notebooks) else None,
    }
    return {
        key: {"href": f"{other.slug}.html", "title": other.title} for key, other in around.items() if other is not None
    }


def render_page(nb: Notebook, pager: dict[str, dict[str, str]] | None = None) -> str:
    """The notebook as one self-contained HTML page: TOC, highlighted code, embedded figures.

    ``pager`` (from :func:`neighbours`) links the pages before and after it in reading order.
    """
    page = {
        "pager": pager or {},
        "title": nb.title,
        "description": nb.summary,
        "site_title": SITE_TITLE,
        "downloads": [{"href": f"{nb.slug}.ipynb", "label": ".ipynb"}, {"href": f"{nb.slug}.py", "label": ".py"}],
        "executed": nb.executed.isoformat(),
        "versions": nb.versions,
    }
    body, _ = PageExporter().from_notebook_node(nb.node, {"page": page})
    return body


def render_index(notebooks: list[Notebook]) -> str:
    """The landing page: one entry per notebook with its one-line summary and downloads."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2", "html"]), keep_trailing_newline=True
    )
    return env.get_template("index.html.j2").render(
        title=SITE_TITLE,
        description=SITE_DESCRIPTION,
        site_title=SITE_TITLE,
        notebooks=notebooks,
        versions=environment_versions(),
    )


def write_site(notebooks: list[Notebook], site: Path) -> list[Path]:
    """``index.html``, one page per notebook and the downloadable ``.ipynb``/``.py`` beside them."""
    site.mkdir(parents=True, exist_ok=True)
    written = [site / "index.html"]
    written[0].write_text(render_index(notebooks), encoding="utf-8")
    for nb in notebooks:
        page = site / f"{nb.slug}.html"
        page.write_text(render_page(nb, neighbours(notebooks, nb)), encoding="utf-8")
        shutil.copyfile(nb.path, site / f"{nb.slug}.ipynb")
        if nb.source is not None:
            shutil.copyfile(nb.source, site / f"{nb.slug}.py")
        else:  # no paired source given: derive the py:percent text from the notebook itself
            import jupytext

            (site / f"{nb.slug}.py").write_text(jupytext.writes(nb.node, fmt="py:percent"), encoding="utf-8")
        written += [page, site / f"{nb.slug}.ipynb", site / f"{nb.slug}.py"]
    return written
