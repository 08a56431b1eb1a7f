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
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as _dt
import html
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import sys
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nbformat
from jinja2 import pass_context
from nbconvert.exporters import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import (
    CoalesceStreamsPreprocessor,
    ExtractOutputPreprocessor,
    Preprocessor,
    RegexRemovePreprocessor,
    TagRemovePreprocessor,
)
from nbconvert.writers import FilesWriter
from traitlets import default
from traitlets.config import Config

from ..outputs import slug

SITE_TITLE = "Grad-CAM in PyTorch"
SITE_DESCRIPTION = "A reproducible Grad-CAM tutorial and report: executed notebooks, rendered without re-running them."
HIDDEN_TAGS = frozenset({"setup", "remove-cell", "remove_cell"})
DEFAULT_TAGS = ("grad-cam", "pytorch", "explainability")
VERSIONED_PACKAGES = ("torch", "torchvision")
# Which representation of an output is shown: a figure before its HTML or text fallback.
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
DISPLAY_PRIORITY = [*IMAGE_TYPES, "text/html", "text/plain"]
TEMPLATES = Path(__file__).parent / "templates"
# The order a reader takes: the post's path, then what goes beyond it, then the evidence. The index,
# the pages' previous/next links and the posts' dates follow it; a notebook not named here comes after.
READING_ORDER = ("tutorial", "report")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
_TAG = re.compile(r"<[^>]+>")
_FRONT_MATTER = re.compile(r"\A---\n.*?^---\n", re.M | re.S)


# --- custom piece 1: heading ids that agree with Jekyll -------------------------------------------


def _kramdown_word(char: str) -> bool:
    """Ruby's ``\\p{Word}``: letters, marks, decimal and letter numbers, connectors, joiners, and the
    circled and squared Latin letters (symbols that Unicode counts as alphabetic)."""
    category, code = unicodedata.category(char), ord(char)
    return (
        category[0] in "LM"
        or category in ("Nd", "Nl", "Pc")
        or char in "\u200c\u200d"
        or 0x24B6 <= code <= 0x24E9
        or 0x1F130 <= code <= 0x1F189
    )


class KramdownIds:
    """Heading ids as Jekyll's default markdown makes them (kramdown's GFM parser, 1.1).

    nbconvert's own anchors keep case and punctuation, so a ``#fragment`` written for the blog would
    miss on the HTML page. kramdown lower-cases the heading's text, drops every character that is not
    a word character, hyphen, space or tab, turns spaces and tabs into hyphens, and numbers repeats
    with a counter per id: ``a``, ``a-1``, ``a-2``. The counter is kept per id, not per used name, so
    a third heading "A 1" after two "A" gets ``a-1`` a second time, as it does in Jekyll.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        kept = "".join(c for c in text.lower() if c in "- \t" or _kramdown_word(c))
        base = kept.replace(" ", "-").replace("\t", "-")
        count = self._seen[base] = self._seen.get(base, -1) + 1
        return f"{base}-{count}" if count else base


def kramdown_text(tokens: list[dict[str, Any]]) -> str:
    """A heading's text as kramdown reads it for its id, from mistune's inline tokens.

    Code spans and maths count with their content, links and emphasis with their text, images not
    at all; kramdown turns ``--``/``---`` in text into dashes, which the id then drops.
    """
    parts = []
    for token in tokens:
        kind = token["type"]
        if kind == "text":
            parts.append(re.sub(r"---|--", "", html.unescape(token["raw"])))
        elif kind in ("codespan", "inline_math"):
            parts.append(token["raw"])
        elif kind != "image" and "children" in token:
            parts.append(kramdown_text(token["children"]))
    return "".join(parts)


# --- custom piece 2: maths offline ----------------------------------------------------------------


def math_html(tex: str, display: bool) -> str:
    """A formula as MathML (latex2mathml), or its TeX as code where the converter gives up.

    Chosen over the formulas that matplotlib's mathtext drew as SVG images before, after comparing
    both in Chromium: MathML is text (selectable, searchable, read by screen readers, sharp at any
    zoom, a few hundred bytes instead of a base64 image), and it lays out display maths in display
    style, where mathtext set the fractions of a displayed formula at script size and needed the TeX
    rewritten into its subset (no ``\\Big``, ``\\text``, ``\\operatorname``). The cost: its looks
    depend on the reader's maths font (the stylesheet asks for STIX Two Math, Cambria Math, Latin
    Modern Math or DejaVu Math), and Chromium sets a displayed sum at text size. Nbconvert's
    default, MathJax from a CDN, would need the web.
    """
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:
        code = f'<code class="math">{html.escape(tex.strip())}</code>'
        return f'<span class="math-block">{code}</span>' if display else code


@dataclass(frozen=True)
class Heading:
    level: int
    anchor: str
    text: str


@dataclass
class Contents:
    """The headings of one page in order, collected while its markdown renders."""

    headings: list[Heading] = field(default_factory=list)
    ids: KramdownIds = field(default_factory=KramdownIds)

    def sections(self, title: str) -> list[Heading]:
        """The table of contents: levels 1-3, less the page title (it is no section)."""
        toc = [h for h in self.headings if h.level <= 3]
        return toc[1:] if toc and toc[0].level == 1 and toc[0].text == title else toc


class Renderer(IPythonRenderer):
    """nbconvert's markdown renderer (Pygments, attachments) with kramdown ids and offline maths."""

    def __init__(self, contents: Contents | None = None, math: bool = True, **options: Any) -> None:
        super().__init__(escape=False, **options)
        self.contents = contents if contents is not None else Contents()
        self.math = math

    def render_token(self, token: dict[str, Any], state: Any) -> str:
        if token["type"] == "heading":  # the id needs the inline tokens, which heading() gets rendered
            token.setdefault("attrs", {})["id"] = self.contents.ids(kramdown_text(token.get("children", [])))
        return super().render_token(token, state)

    def heading(self, text: str, level: int, **attrs: Any) -> str:
        anchor = str(attrs["id"])
        if not anchor:  # kramdown gives a heading of symbols alone (an emoji) no id: no link, no TOC entry
            return f"<h{level}>{text}</h{level}>\n"
        self.contents.headings.append(Heading(level, anchor, " ".join(html.unescape(_TAG.sub("", text)).split())))
        link = f'<a class="anchor" href="#{anchor}" aria-hidden="true">¶</a>'
        return f'<h{level} id="{anchor}">{text}{link}</h{level}>\n'

    def table(self, text: str) -> str:
        """A markdown table in its own scrolling box: a wide one scrolls there, not the whole page."""
        return f'<div class="table-scroll"><table>\n{text}</table></div>\n'

    def inline_math(self, body: str) -> str:
        return math_html(body, display=False) if self.math else f'<code class="math">{html.escape(body)}</code>'

    def block_math(self, body: str) -> str:
        return math_html(body, display=True) if self.math else f"<code>{html.escape(body)}</code>"

    def latex_environment(self, name: str, body: str) -> str:
        return self.block_math(f"\\begin{{{name}}}{body}\\end{{{name}}}")


def markdown_html(text: str, contents: Contents | None = None, math: bool = True, **options: Any) -> str:
    """Markdown to HTML on nbconvert's parser (``$``-maths aware) with our renderer."""
    return MarkdownWithMath(renderer=Renderer(contents, math, **options)).render(text)


def plain_text(markup: str) -> str:
    """Markdown or HTML reduced to one line of text, for titles, summaries and ids."""
    text = _TAG.sub("", markdown_html(markup, math=False))
    return " ".join(html.unescape(text).split())


def heading_text(markup: str) -> str:
    """A heading's plain text (a heading "3. Results" is not a list, as it would be on its own)."""
    contents = Contents()
    markdown_html("# " + markup, contents, math=False)
    return contents.headings[0].text if contents.headings else ""


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


# --- the exporters --------------------------------------------------------------------------------


class _Exporter(TemplateExporter):
    """A TemplateExporter on our template folders, showing figures before their text fallbacks."""

    @property
    def default_config(self) -> Config:
        config = Config({"NbConvertBase": {"display_data_priority": DISPLAY_PRIORITY}})
        config.merge(super().default_config)
        return config

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(extra_template_basedirs=[str(TEMPLATES)], extra_template_paths=[str(TEMPLATES)], **kwargs)
        for step in shared_steps():
            self.register_preprocessor(step, enabled=True)


class PageExporter(_Exporter):
    """One self-contained HTML page: nbconvert's highlighting, our heading ids, maths and captions."""

    output_mimetype = "text/html"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".html"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "page"

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:
        """nbconvert's markdown filter, with attachments, on our renderer and this page's contents."""
        attachments = context.get("cell", {}).get("attachments", {})
        return markdown_html(source, self._contents, attachments=attachments)

    def sections(self, title: str) -> list[Heading]:
        """The contents of the page being rendered (a filter: nbconvert deep-copies resources)."""
        return self._contents.sections(title)

    def default_filters(self) -> Any:
        yield from super().default_filters()
        yield ("markdown2html", self.markdown2html)
        yield ("sections", self.sections)

    def from_notebook_node(  # the rendered page (nbconvert's base class annotates a notebook)
        self, nb: nbformat.NotebookNode, resources: dict | None = None, **kw: Any
    ) -> tuple[Any, dict[str, Any]]:
        from pygments.formatters import HtmlFormatter

        language = nb.metadata.get("language_info", {})
        self.register_filter(
            "highlight_code",
            Highlight2HTML(pygments_lexer=language.get("pygments_lexer", language.get("name")), parent=self),
        )
        self._contents = Contents()
        resources = dict(resources or {})
        resources["page"] = dict(resources.get("page", {}), pygments_css=HtmlFormatter().get_style_defs(".highlight"))
        return super().from_notebook_node(nb, resources, **kw)


class PostExporter(_Exporter):
    """A Jekyll post; ExtractOutputPreprocessor names its figures ``<slug>_files/output_<cell>_<output>``."""

    output_mimetype = "text/markdown"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".md"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "post"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        extract = ExtractOutputPreprocessor(
            output_filename_template="output_{cell_index}_{index}{extension}", extract_output_types=set(IMAGE_TYPES)
        )
        self.register_preprocessor(extract, enabled=True)

    def default_filters(self) -> Any:
        yield from super().default_filters()
        yield ("fence", fence)
        yield ("markdown_text", markdown_text)


# --- HTML -----------------------------------------------------------------------------------------


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


# --- Jekyll ---------------------------------------------------------------------------------------


def fence(text: str, info: str = "") -> str:
    """A fenced block that survives backticks inside ``text`` (nbconvert's markdown indents instead)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}"


def markdown_text(text: str) -> str:
    """Plain text made safe inside a markdown line: a caption such as "mean |Spearman|" would otherwise
    turn its line into a kramdown table row and the figure would vanish from the Jekyll post; ``[``
    and ``]`` would end an image's alt text, ``*`` and ``_`` start emphasis."""
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", text)


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


# --- offline link checking ------------------------------------------------------------------------


class _Refs(HTMLParser):
    """Collects ids (link targets) and href/src values (links) from one HTML text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value)
            elif name in ("href", "src") and not (tag == "link" and value.startswith("data:")):
                self.refs.append(value)


def _scan(path: Path) -> _Refs:
    """A page's ids and links; a markdown page is read as it renders (kramdown ids, no fenced code)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".md":
        text = markdown_html(_FRONT_MATTER.sub("", text), math=False)
    parser = _Refs()
    parser.feed(text)
    return parser


def check_links(root: Path) -> list[str]:
    """Every href/src in the HTML and markdown files under ``root`` whose target is missing.

    Relative paths resolve against the linking file, ``/paths`` against ``root``, folders to their
    ``index.html``, and ``#fragments`` must name an id in the target page. Web and data URLs are
    not followed (there is no network), so only local breakage is reported.
    """
    root = Path(root)
    scans: dict[Path, _Refs] = {}

    def scan(path: Path) -> _Refs:
        if path not in scans:
            scans[path] = _scan(path)
        return scans[path]

    broken: list[str] = []
    pages = sorted(p for p in root.rglob("*") if p.suffix in (".html", ".md") and p.is_file())
    for page in pages:
        for ref in scan(page).refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith(("data:", "mailto:", "javascript:")):
                continue
            path = unquote(parts.path)
            if not path:
                target = page
            elif path.startswith("/"):
                target = root / path.lstrip("/")
            else:
                target = page.parent / path
            if target.is_dir():
                target = target / "index.html"
            where = page.relative_to(root).as_posix()
            if not target.is_file():
                broken.append(f"{where}: {ref} (no such file)")
            elif (
                parts.fragment and target.suffix in (".html", ".md") and unquote(parts.fragment) not in scan(target).ids
            ):
                broken.append(f"{where}: {ref} (no element with id {parts.fragment!r})")
    return broken


# --- the browser check ----------------------------------------------------------------------------

_PAGE_PROBLEMS_JS = """
const problems = [];
for (const img of document.images) {
  if (!(img.complete && img.naturalWidth > 0)) problems.push('image not decoded: ' + (img.alt || img.src.slice(0, 60)));
}
for (const a of document.querySelectorAll('a[href^="#"]')) {
  const id = decodeURIComponent(a.getAttribute('href').slice(1));
  if (!document.getElementById(id)) problems.push('fragment lands nowhere: #' + id);
}
for (const frac of document.querySelectorAll('mfrac')) {  // MathML laid out: numerator above denominator
  const [top, bottom] = frac.children;
  if (!(top && bottom && top.getBoundingClientRect().bottom <= bottom.getBoundingClientRect().top + 1)) {
    problems.push('formula not laid out: ' + frac.textContent);
  }
}
for (const entry of performance.getEntriesByType('resource')) {
  const local = entry.name.startsWith(location.origin) || entry.name.startsWith('data:');
  if (!local) problems.push('external resource: ' + entry.name);
}
return problems;
"""

# Nothing wider than its column unless it scrolls in its own box, and no sideways scrolling of the page.
# A box clips (overflow hidden) or spills (overflow visible) when its content is wider than it and it
# does not scroll; an element pokes out when its border box passes the right edge of the page's
# column (main, the contents, header, footer) with no scrolling box around it. Only the outermost
# offender of a nest is reported, so one wide table is one problem, not one per cell.
_LAYOUT_PROBLEMS_JS = """
const problems = [];
const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
const describe = (el) => {
  const names = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).filter(Boolean) : [];
  const text = (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  return [el.tagName.toLowerCase(), ...names].join('.') + ' "' + text + '"';
};
const columns = document.querySelectorAll('main, nav.toc, header.site, footer.site');
for (const column of columns) {
  const right = column.getBoundingClientRect().right + 1;
  const inScroller = (el) => {
    for (let up = el.parentElement; up && up !== column; up = up.parentElement) if (scrolls(up)) return true;
    return false;
  };
  const pokes = (el) => el !== column && el.getBoundingClientRect().right > right && !inScroller(el);
  for (const el of column.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'inline' || style.display === 'none' || el.clientWidth === 0) {
      // inline boxes have no width of their own to clip; their block ancestor is checked instead
    } else if (el.scrollWidth > el.clientWidth + 1 && !scrolls(el) && !inScroller(el)) {
      const sizes = el.scrollWidth + ' px of content in ' + el.clientWidth + ' px, overflow-x ' + style.overflowX;
      problems.push('clipped (' + sizes + '): ' + describe(el));
    }
    if (pokes(el) && !pokes(el.parentElement)) problems.push('wider than its column: ' + describe(el));
  }
}
const page = document.documentElement.scrollWidth;
if (page > window.innerWidth || page > document.documentElement.clientWidth) {
  const view = Math.min(window.innerWidth, document.documentElement.clientWidth);
  problems.push('the page scrolls sideways: ' + page + ' px wide in a ' + view + ' px viewport');
}
return problems;
"""
# Desktop and a phone (an iPhone's 375 CSS px): every page is laid out and checked at both.
WIDTHS = {"desktop": (1280, 900), "phone": (375, 812)}


def browser_missing() -> str | None:
    """Why the headless browser check cannot run here, or None when it can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not found: `make system-deps` installs them (Debian chromium, chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: run `make venv`"
    return None


def _full_page_png(driver, band: int = 8000) -> bytes:
    """A screenshot of the whole page, not only the window (Chrome DevTools protocol).

    Chrome draws nothing past about 16 000 pixels in one capture, so a taller page is captured in
    bands of ``band`` pixels at full scale and the bands are stacked into one PNG.
    """
    import io

    from PIL import Image

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width, height = max(1, int(size["width"])), max(1, int(size["height"]))
    page = Image.new("RGB", (width, height), "white")
    for top in range(0, height, band):
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": top, "width": width, "height": min(band, height - top), "scale": 1},
            },
        )
        with Image.open(io.BytesIO(base64.b64decode(shot["data"]))) as part:
            page.paste(part.convert("RGB"), (0, top))
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


def browse(site: Path, screenshots: Path | None = None) -> list[str]:
    """Open every page of ``site`` in headless Chromium over HTTP; report what a reader would hit.

    Checked per page: every ``<img>`` decoded, every in-page ``#fragment`` link has a target, every
    MathML fraction stacked (the browser laid the maths out), no SEVERE console message, nothing
    fetched from outside the local server; and at each of :data:`WIDTHS` (desktop, phone) nothing
    clipped or wider than its column unless it scrolls in its own box, and no sideways scrolling of
    the page. A full-page screenshot of each page goes to ``screenshots/<page>.png`` (desktop) and
    ``screenshots/<page>.phone.png`` when that folder is given.
    """
    import functools
    import tempfile
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900", "--hide-scrollbars"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(60)
            for device, (width, height) in WIDTHS.items():
                # A phone's viewport, not a narrow window: the page's viewport meta tag is honoured.
                metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": device == "phone"}
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
                for page in sorted(site.glob("*.html")):
                    driver.get(f"http://127.0.0.1:{server.server_address[1]}/{page.name}")
                    where = page.name if device == "desktop" else f"{page.name} ({device}, {width} px)"
                    if device == "desktop":  # images, links, maths and requests do not depend on the width
                        problems += [f"{where}: {p}" for p in driver.execute_script(_PAGE_PROBLEMS_JS)]
                    problems += [f"{where}: {p}" for p in driver.execute_script(_LAYOUT_PROBLEMS_JS)]
                    problems += [
                        f"{where}: console {e['level']}: {e['message']}"
                        for e in driver.get_log("browser")
                        if e["level"] == "SEVERE"
                    ]
                    if screenshots is not None:
                        screenshots.mkdir(parents=True, exist_ok=True)
                        name = page.stem if device == "desktop" else f"{page.stem}.{device}"
                        (screenshots / f"{name}.png").write_bytes(_full_page_png(driver))
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    return problems


# --- the command ----------------------------------------------------------------------------------


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
