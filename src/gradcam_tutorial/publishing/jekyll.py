"""Jekyll blog posts, following the convention of a notebook exported to markdown.

Figures live in a ``<slug>_files/`` folder beside the post and are linked relatively. Jekyll would
serve a post at ``/YYYY/MM/DD/<slug>.html``, where that relative link points nowhere, so every post
pins ``permalink: /<slug>.html``: copy ``blog/*.md`` into the site's ``_posts/`` and
``blog/*_files/`` to the site's root, and the links resolve (also under a ``baseurl``).
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

from nbconvert.writers import FilesWriter

from .exporters import PostExporter
from .reading import Notebook

DEFAULT_TAGS = ("grad-cam", "pytorch", "explainability")


def front_matter(nb: Notebook, position: int = 0) -> str:
    """YAML front matter; Liquid is off so ``{{``/``{%`` in code (f-strings, dicts) stay literal.

    The date is the day the notebook ran, at ``00:MM`` for its ``position`` in reading order: Jekyll
    orders posts of one day by file name, which would put ``report`` before ``tutorial`` in its
    previous/next links; the minute keeps notebooks executed together (``make
    report``) in reading order there as well.
    """
    import yaml

    tags = nb.node.metadata.get("gradcam_tutorial", {}).get("tags") or list(DEFAULT_TAGS)
    fields = {
        "layout": "post",
        "title": nb.title,
        "description": nb.summary,
        "date": _dt.datetime.combine(nb.executed, _dt.time()) + _dt.timedelta(minutes=position),
        "tags": list(tags),
        "permalink": f"/{nb.slug}.html",
        "render_with_liquid": False,
    }
    return "---\n" + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


def post_name(nb: Notebook) -> str:
    return f"{nb.executed.isoformat()}-{nb.slug}.md"


def write_post(nb: Notebook, blog: Path, position: int = 0) -> Path:
    """One Jekyll post, ``position``-th in reading order; figures go to ``<slug>_files/``, linked relatively."""
    shutil.rmtree(blog / f"{nb.slug}_files", ignore_errors=True)
    resources = {
        "front_matter": front_matter(nb, position),
        "output_files_dir": f"{nb.slug}_files",
        "unique_key": nb.slug,
    }
    body, resources = PostExporter().from_notebook_node(nb.node, resources)
    written = FilesWriter(build_directory=str(blog)).write(body, resources, notebook_name=Path(post_name(nb)).stem)
    return Path(written)
