"""Publishing executed notebooks as a self-contained HTML site and as Jekyll blog posts, with nbconvert.

Nothing is re-executed: the pages are rendered from the outputs stored in the executed ``.ipynb``,
so what readers see is exactly what ran. nbconvert does the work: ``TagRemovePreprocessor`` drops the
set-up cells, ``RegexRemovePreprocessor`` the empty ones, ``CoalesceStreamsPreprocessor`` merges
streams and applies carriage returns, ``ExtractOutputPreprocessor`` writes the posts' figures, and
two ``TemplateExporter`` templates (``templates/page``, ``templates/post``) extend nbconvert's
``base/display_priority.j2`` with its filters (``highlight_code``, ``strip_ansi``, ``text_base64``,
``path2url``, ``markdown2html`` on its mistune parser with Pygments). Three pieces are ours, because
nbconvert has no equivalent: heading ids that are the ids Jekyll's kramdown gives the same headings
(:class:`KramdownIds`), maths that needs no web (:func:`math_html`; nbconvert links MathJax from a
CDN), and figure numbers with captions from cell metadata (:class:`FigurePreprocessor`).

The HTML pages need nothing from the web (images are data URIs, code is coloured by Pygments,
formulas are MathML), because they must open offline and from a plain file server.

Jekyll posts follow the convention of a notebook exported to markdown: figures live in a
``<slug>_files/`` folder beside the post and are linked relatively. Jekyll would serve a post at
``/YYYY/MM/DD/<slug>.html``, where that relative link points nowhere, so every post pins
``permalink: /<slug>.html``: copy ``blog/*.md`` into the site's ``_posts/`` and ``blog/*_files/`` to
the site's root, and the links resolve (also under a ``baseurl``).

``python -m gradcam_tutorial.publishing.publish --notebooks build/executed --sources notebooks --out build``
writes ``build/site/``, ``build/blog/``, checks every link offline and, where Chromium is installed,
checks each page in a headless browser at desktop and phone width (nothing clipped: what is too wide
scrolls in its own box) and saves full-page screenshots of both under ``build/screenshots/``.

Any number of notebooks is published in :data:`READING_ORDER` (the tutorial, the report, then any
other by name): the index lists them so, each page links the one before and after it, and the
posts' dates keep notebooks executed on one day in that order in Jekyll.

The pieces live beside this module, one concern each: :mod:`.markup` (markdown, kramdown ids,
maths), :mod:`.reading` (figures and what a page needs of a notebook), :mod:`.exporters` (the two
nbconvert exporters), :mod:`.html_site`, :mod:`.jekyll`, :mod:`.links` (offline link check) and
:mod:`.browser` (headless Chromium). Their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .browser import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, WIDTHS, browse, browser_missing
from .exporters import TEMPLATES, PageExporter, PostExporter
from .html_site import SITE_DESCRIPTION, SITE_TITLE, neighbours, render_index, render_page, write_site
from .jekyll import DEFAULT_TAGS, front_matter, post_name, write_post
from .links import check_links
from .markup import (
    Contents,
    Heading,
    KramdownIds,
    Renderer,
    fence,
    heading_text,
    kramdown_text,
    markdown_html,
    markdown_text,
    math_html,
    plain_text,
)
from .reading import (
    DISPLAY_PRIORITY,
    HIDDEN_TAGS,
    IMAGE_TYPES,
    VERSIONED_PACKAGES,
    FigurePreprocessor,
    Notebook,
    environment_versions,
    executed_date,
    figures,
    load,
    shared_steps,
    shown,
    shown_type,
    summary_line,
)

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "DEFAULT_TAGS",
    "DISPLAY_PRIORITY",
    "HIDDEN_TAGS",
    "IMAGE_TYPES",
    "READING_ORDER",
    "SITE_DESCRIPTION",
    "SITE_TITLE",
    "TEMPLATES",
    "VERSIONED_PACKAGES",
    "WIDTHS",
    "Contents",
    "FigurePreprocessor",
    "Heading",
    "KramdownIds",
    "Notebook",
    "PageExporter",
    "PostExporter",
    "Renderer",
    "browse",
    "browser_missing",
    "check_links",
    "environment_versions",
    "executed_date",
    "fence",
    "figures",
    "front_matter",
    "heading_text",
    "kramdown_text",
    "load",
    "main",
    "markdown_html",
    "markdown_text",
    "math_html",
    "neighbours",
    "plain_text",
    "post_name",
    "publish",
    "render_index",
    "render_page",
    "shared_steps",
    "shown",
    "shown_type",
    "summary_line",
    "write_post",
    "write_site",
]

# The order a reader takes: the post's path, then what goes beyond it, then the evidence. The index,
# the pages' previous/next links and the posts' dates follow it; a notebook not named here comes after.
READING_ORDER = ("tutorial", "report")


def _order(path: Path) -> tuple[int, str]:
    """Where a notebook comes in the reading order: :data:`READING_ORDER`, then any other by name."""
    known = READING_ORDER.index(path.stem) if path.stem in READING_ORDER else len(READING_ORDER)
    return (known, path.stem)


def publish(notebooks: Path, sources: Path | None, out: Path) -> list[Notebook]:
    """Render ``out/site`` and ``out/blog`` afresh from the executed notebooks in ``notebooks``."""
    paths = sorted(Path(notebooks).glob("*.ipynb"), key=_order)
    if not paths:
        raise FileNotFoundError(f"no executed .ipynb in {notebooks}")
    loaded = [load(path, sources) for path in paths]
    for folder in (out / "site", out / "blog"):
        shutil.rmtree(folder, ignore_errors=True)
    write_site(loaded, out / "site")
    (out / "blog").mkdir(parents=True)
    for position, nb in enumerate(loaded):
        write_post(nb, out / "blog", position)
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_tutorial.publishing.publish", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--notebooks", type=Path, required=True, help="folder of executed .ipynb")
    parser.add_argument("--sources", type=Path, default=None, help="folder of the paired .py sources")
    parser.add_argument("--out", type=Path, default=Path("build"), help="writes OUT/site, OUT/blog, OUT/screenshots")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless Chromium check and screenshots")
    args = parser.parse_args(argv)
    loaded = publish(args.notebooks, args.sources, args.out)
    for nb in loaded:
        print(f"{nb.path} -> {args.out / 'site' / (nb.slug + '.html')}, {args.out / 'blog' / post_name(nb)}")
    problems = check_links(args.out / "site") + check_links(args.out / "blog")
    if args.no_browser:
        pass
    elif reason := browser_missing():
        print(f"browser check skipped: {reason}")
    else:
        problems += browse(args.out / "site", args.out / "screenshots")
        print(f"screenshots in {args.out / 'screenshots'}")
    print("\n".join(problems) or "no broken links or page problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
