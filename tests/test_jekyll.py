"""The exported posts built by a real (offline, plugin-free) Jekyll: every figure shows, no link breaks.

Missing Jekyll is a failure, not a skip: `make test` installs it with `make system-deps`.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from gradcam_tutorial.publishing import publish

from test_publish import (
    ANCHORS,
    COMMITTED,
    ROOT,
    TRICKY_HEADINGS,
    reading_order,
    tricky_markdown,
    write_series,
    write_synthetic,
)

pytestmark = pytest.mark.jekyll

CONFIG = """\
title: Grad-CAM tutorial test blog
markdown: kramdown
plugins: []
exclude: [Gemfile, Gemfile.lock]
"""
DEFAULT_LAYOUT = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ page.title }}</title></head>
<body>{{ content }}</body></html>
"""
POST_LAYOUT = """\
---
layout: default
---
<article><h1 class="post-title">{{ page.title }}</h1><p class="description">{{ page.description }}</p>
<p class="tags">{{ page.tags | join: ", " }}</p>{{ content }}</article>
<p class="order" data-previous="{{ page.previous.url }}" data-next="{{ page.next.url }}"></p>
"""


def jekyll_site(blog: Path, site: Path) -> Path:
    """A minimal Jekyll source as the post's docs say: posts in _posts/, figure folders at the root."""
    jekyll = shutil.which("jekyll")
    if jekyll is None:
        pytest.fail("the jekyll command is missing: install it with `make system-deps` (Debian package jekyll)")
    (site / "_layouts").mkdir(parents=True)
    (site / "_posts").mkdir()
    (site / "_config.yml").write_text(CONFIG)
    (site / "_layouts" / "default.html").write_text(DEFAULT_LAYOUT)
    (site / "_layouts" / "post.html").write_text(POST_LAYOUT)
    for post in blog.glob("*.md"):
        shutil.copy(post, site / "_posts" / post.name)
    for files in blog.glob("*_files"):
        shutil.copytree(files, site / files.name)
    result = subprocess.run(
        [jekyll, "build", "--safe", "--source", str(site), "--destination", str(site / "_site")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site / "_site"


def _check_posts(blog: Path, built: Path) -> None:
    assert publish.check_links(built) == []  # every src/href (and #fragment) resolves inside _site
    for post in blog.glob("*.md"):
        slug = post.stem[len("YYYY-MM-DD-") :]
        page = (built / f"{slug}.html").read_text()
        for png in (blog / f"{slug}_files").glob("*.png"):
            assert re.search(rf'<img src="{slug}_files/{png.name}"', page), f"{png.name} is not shown in {slug}.html"
        assert "<pre" in page and "<img" in page


@pytest.mark.slow
def test_synthetic_post_builds_with_every_figure(tmp_path: Path) -> None:
    executed, sources = write_synthetic(tmp_path / "in")
    publish.publish(executed, sources, tmp_path / "build")
    blog = tmp_path / "build" / "blog"
    built = jekyll_site(blog, tmp_path / "jekyll")
    _check_posts(blog, built)
    page = (built / "synthetic.html").read_text()
    assert len(re.findall(r"<img ", page)) == 2
    assert '<h1 class="post-title">Synthetic notebook</h1>' in page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "f'{{literal}} {size}'" in text and "hello 42" in text  # Liquid left the f-string alone
    for anchor in ANCHORS:  # the HTML page's TOC anchors are the ids Jekyll gives the same headings
        assert f'id="{anchor}"' in page


def _h2_ids(page: str) -> list[str]:
    return [m.group(1) or "" for m in re.finditer(r'<h2(?: id="([^"]*)")?>', page)]


@pytest.mark.slow
def test_tricky_heading_ids_agree_with_jekyll(tmp_path: Path) -> None:
    """Punctuation, code spans, non-ASCII, entities, maths, duplicates: the HTML page's ids are Jekyll's."""
    executed = tmp_path / "in"
    executed.mkdir()
    node = new_notebook(
        cells=[new_markdown_cell("# Headings\n\n" + tricky_markdown())],
        metadata={"gradcam_tutorial": {"executed": "2024-03-05"}},
    )
    nbformat.write(node, executed / "headings.ipynb")
    publish.publish(executed, None, tmp_path / "build")
    built = jekyll_site(tmp_path / "build" / "blog", tmp_path / "jekyll")
    jekyll = _h2_ids((built / "headings.html").read_text())
    ours = _h2_ids((tmp_path / "build" / "site" / "headings.html").read_text().split("<main>", 1)[1])
    assert jekyll == [anchor for _, anchor in TRICKY_HEADINGS]  # the table in test_publish is Jekyll's
    assert ours == jekyll


@pytest.mark.slow
def test_posts_of_one_day_link_in_reading_order(tmp_path: Path) -> None:
    """Jekyll's previous/next (``page.previous``, ``page.next``) walk the notebooks as the site does."""
    names = ["report", "beta", "alpha", "tutorial"]
    publish.publish(write_series(tmp_path / "in", names), None, tmp_path / "build")
    built = jekyll_site(tmp_path / "build" / "blog", tmp_path / "jekyll")
    order = reading_order(names)
    for at, name in enumerate(order):
        found = re.search(r'data-previous="([^"]*)" data-next="([^"]*)"', (built / f"{name}.html").read_text())
        assert found, name
        previous = f"/{order[at - 1]}.html" if at else ""
        following = f"/{order[at + 1]}.html" if at + 1 < len(order) else ""
        assert found.groups() == (previous, following), name


@pytest.mark.slow
def test_check_links_sees_a_figure_jekyll_lost(tmp_path: Path) -> None:
    executed, sources = write_synthetic(tmp_path / "in")
    publish.publish(executed, sources, tmp_path / "build")
    blog = tmp_path / "build" / "blog"
    shutil.rmtree(blog / "synthetic_files")  # as if the figure folder had not been copied to the site
    built = jekyll_site(blog, tmp_path / "jekyll")
    assert [p for p in publish.check_links(built) if "synthetic_files/" in p and "no such file" in p]


@pytest.mark.slow
@pytest.mark.skipif(not COMMITTED, reason="no committed notebooks/*.ipynb yet")
def test_committed_posts_build_with_every_figure(tmp_path: Path) -> None:
    publish.publish(ROOT / "notebooks", ROOT / "notebooks", tmp_path / "build")
    blog = tmp_path / "build" / "blog"
    _check_posts(blog, jekyll_site(blog, tmp_path / "jekyll"))
