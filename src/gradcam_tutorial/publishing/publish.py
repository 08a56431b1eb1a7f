"""Publishing executed notebooks as a self-contained HTML site and as Jekyll blog posts.

Nothing is re-executed: the pages are rendered from the outputs stored in the executed ``.ipynb``,
so what readers see is exactly what ran. The HTML pages need nothing from the web (images are data
URIs, code is coloured by Pygments, formulas are drawn by matplotlib's mathtext), because they must
open offline and from a plain file server.

Jekyll posts follow the convention of a notebook exported to markdown: figures live in a
``<slug>_files/`` folder beside the post and are linked relatively. Jekyll would serve a post at
``/YYYY/MM/DD/<slug>.html``, where that relative link points nowhere, so every post pins
``permalink: /<slug>.html``: copy ``blog/*.md`` into the site's ``_posts/`` and ``blog/*_files/`` to
the site's root, and the links resolve (also under a ``baseurl``).

``python -m gradcam_tutorial.publishing.publish --notebooks build/executed --sources notebooks --out build``
writes ``build/site/``, ``build/blog/``, checks every link offline and, where Chromium is installed,
checks each page in a headless browser and saves a full-page screenshot under ``build/screenshots/``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import importlib.metadata
import io
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import mistune
import nbformat
from mistune.renderers.html import HTMLRenderer

SITE_TITLE = "Grad-CAM in PyTorch"
SITE_DESCRIPTION = "A reproducible Grad-CAM tutorial and report: executed notebooks, rendered without re-running them."
HIDDEN_TAGS = frozenset({"setup", "remove-cell", "remove_cell"})
DEFAULT_TAGS = ("grad-cam", "pytorch", "explainability")
VERSIONED_PACKAGES = ("torch", "torchvision")
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TAG = re.compile(r"<[^>]+>")
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.M | re.S)
_MD_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


# --- reading notebooks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """One displayable output, normalised so the HTML and the markdown writers agree on what to show."""

    kind: str  # "text", "stderr", "error", "image" or "html"
    data: str  # text, HTML, or base64 image bytes (SVG as text)
    mime: str = "text/plain"


@dataclass(frozen=True)
class Figure:
    """An image output with its number, so both writers caption "Figure N" the same way."""

    number: int
    caption: str
    output: Output


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


def slugify(text: str) -> str:
    """A file-name-safe slug: lower case, runs of other characters become one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "notebook"


def heading_id(text: str, used: set[str]) -> str:
    """The id Jekyll's default (GFM) markdown gives a heading, so one ``#fragment`` works in both outputs."""
    base = re.sub(r"[^\w\- \t]", "", text.lower()).replace(" ", "-").replace("\t", "-") or "section"
    anchor, n = base, 0
    while anchor in used:
        n += 1
        anchor = f"{base}-{n}"
    used.add(anchor)
    return anchor


def plain_text(markup: str) -> str:
    """Markdown or HTML reduced to one line of text, for titles, summaries and ids."""
    text = _TAG.sub("", _markdown_to_html(markup, _Renderer(math=False)))
    return " ".join(html.unescape(text).split())


def heading_text(markup: str) -> str:
    """A heading's plain text (a heading "3. Results" is not a list, as it would be on its own)."""
    renderer = _Renderer(math=False)
    _markdown_to_html("# " + markup, renderer)
    return str(renderer.toc[0]["text"]) if renderer.toc else ""


def is_hidden(cell: nbformat.NotebookNode) -> bool:
    """Set-up cells (and explicitly removed ones) are plumbing, not part of the story."""
    return bool(HIDDEN_TAGS.intersection(cell.metadata.get("tags", ())))


def visible_cells(node: nbformat.NotebookNode) -> Iterator[tuple[int, nbformat.NotebookNode]]:
    """The cells a reader sees, with their index in the notebook (used to name exported figures)."""
    for index, cell in enumerate(node.cells):
        if cell.source.strip() and not is_hidden(cell) and cell.cell_type in ("markdown", "code"):
            yield index, cell


def _clean_text(text: str) -> str:
    """Drop colour codes and carriage-return overwrites (progress bars), as a terminal would show it."""
    lines = [line.rsplit("\r", 1)[-1] for line in _ANSI.sub("", text).split("\n")]
    return "\n".join(lines)


def cell_outputs(cell: nbformat.NotebookNode) -> list[Output]:
    """A code cell's outputs, richest representation first; consecutive streams are merged."""
    result: list[Output] = []
    for out in cell.get("outputs", ()):
        if out.output_type == "stream":
            kind = "stderr" if out.name == "stderr" else "text"
            text = _clean_text(out.text)
            if result and result[-1].kind == kind:
                result[-1] = Output(kind, result[-1].data + text)
            else:
                result.append(Output(kind, text))
        elif out.output_type == "error":
            result.append(Output("error", _clean_text("\n".join(out.traceback))))
        elif out.output_type in ("display_data", "execute_result"):
            data = out.get("data", {})
            image = next((mime for mime in IMAGE_TYPES if mime in data), None)
            if image:
                payload = data[image]
                payload = payload if isinstance(payload, str) else "".join(payload)
                if image != "image/svg+xml":
                    payload = payload.replace("\n", "")  # base64 may be stored wrapped
                result.append(Output("image", payload, image))
            elif "text/html" in data:
                result.append(Output("html", data["text/html"]))
            elif "text/plain" in data:
                result.append(Output("text", _clean_text(data["text/plain"])))
    return [o for o in result if o.kind in ("image", "html") or o.data.strip()]


def figures(node: nbformat.NotebookNode) -> dict[tuple[int, int], Figure]:
    """Every visible image output keyed by (cell index, output index), numbered in reading order.

    The caption comes from the cell's ``caption`` metadata (``# %% caption="..."`` in py:percent).
    """
    found: dict[tuple[int, int], Figure] = {}
    for index, cell in visible_cells(node):
        if cell.cell_type != "code":
            continue
        for position, out in enumerate(cell_outputs(cell)):
            if out.kind == "image":
                number = len(found) + 1
                caption = str(cell.metadata.get("caption", "")).strip()
                found[(index, position)] = Figure(number, f"Figure {number}" + (f": {caption}" if caption else ""), out)
    return found


def _first_markdown(node: nbformat.NotebookNode, want_heading: bool) -> str:
    for _, cell in visible_cells(node):
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
    python = (node.metadata.get("language_info", {}).get("version") if node is not None else None)
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
    source = sources / f"{path.stem}.py" if sources else None
    return Notebook(
        slug=slugify(path.stem),
        path=path,
        source=source if source and source.exists() else None,
        node=node,
        title=heading_text(_first_markdown(node, want_heading=True)) or path.stem.replace("_", " ").title(),
        summary=summary_line(node.metadata.get("gradcam_tutorial", {}).get("description")
                             or _first_markdown(node, want_heading=False)),
        executed=executed_date(node, path),
        versions=environment_versions(node),
    )


# --- HTML -----------------------------------------------------------------------------------------


def _mathtext_dialect(tex: str) -> str:
    """LaTeX rewritten into the subset matplotlib's mathtext parses (one line, no sized delimiters)."""
    tex = " ".join(tex.split())
    tex = re.sub(r"\\[bB]ig{1,2}l?(?=[(\[|.]|\\{)", r"\\left", tex)
    tex = re.sub(r"\\[bB]ig{1,2}r?(?=[)\]|.]|\\})", r"\\right", tex)
    return tex.replace("\\text{", "\\mathrm{").replace("\\operatorname{", "\\mathrm{")


def _math_image(tex: str, display: bool) -> str | None:
    """A formula drawn by matplotlib as an inline SVG data URI; None where mathtext can't parse it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buffer = io.BytesIO()
    try:
        font = FontProperties(size=15 if display else 12)
        depth = mathtext.math_to_image(f"${_mathtext_dialect(tex)}$", buffer, prop=font, format="svg")
    except (ValueError, RuntimeError):
        return None
    svg = re.sub(r"<metadata>.*?</metadata>", "", buffer.getvalue().decode(), flags=re.S)  # no timestamp
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    style = "" if display else f' style="vertical-align: -{depth:.1f}pt"'
    return f'<img class="math" src="{uri}" alt="{html.escape(tex.strip())}"{style}>'


def _highlight(code: str, language: str = "python") -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, HtmlFormatter())


class _Renderer(HTMLRenderer):
    """Markdown to HTML with GFM heading ids (collected for the TOC), Pygments and mathtext."""

    def __init__(self, math: bool = True) -> None:
        super().__init__(escape=False)
        self.math = math
        self.used: set[str] = set()
        self.toc: list[dict[str, object]] = []

    def heading(self, text: str, level: int, **attrs: object) -> str:
        label = " ".join(html.unescape(_TAG.sub("", text)).split())
        anchor = heading_id(label, self.used)
        self.toc.append({"level": level, "anchor": anchor, "text": label})
        link = f'<a class="anchor" href="#{anchor}" aria-hidden="true">¶</a>'
        return f'<h{level} id="{anchor}">{text}{link}</h{level}>\n'

    def block_code(self, code: str, info: str | None = None) -> str:
        return _highlight(code, info.split()[0] if info and info.strip() else "text")

    def inline_math(self, text: str) -> str:
        image = _math_image(text, display=False) if self.math else None
        return image or f'<code class="math">{html.escape(text)}</code>'

    def block_math(self, text: str) -> str:
        image = _math_image(text, display=True) if self.math else None
        # a span (shown as a block): mistune also calls this for $$...$$ inside a paragraph
        return f'<span class="math-block">{image or "<code>" + html.escape(text) + "</code>"}</span>\n'


def _markdown_to_html(text: str, renderer: _Renderer) -> str:
    return mistune.create_markdown(renderer=renderer, plugins=["table", "strikethrough", "math"])(text)


def _output_html(out: Output, figure: Figure | None) -> str:
    if out.kind == "image":
        payload = base64.b64encode(out.data.encode()).decode() if out.mime == "image/svg+xml" else out.data
        caption = html.escape(figure.caption if figure else "Figure")
        return (f'<figure><img src="data:{out.mime};base64,{payload}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")
    if out.kind == "html":
        return f'<div class="output html">{out.data}</div>'
    return f'<div class="output {out.kind}"><pre>{html.escape(out.data.rstrip())}</pre></div>'


def _template(name: str):
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["j2", "html"]), keep_trailing_newline=True)
    return env.get_template(name)


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter().get_style_defs(".highlight")


def render_page(nb: Notebook) -> str:
    """The notebook as one self-contained HTML page: TOC, highlighted code, embedded figures."""
    from markupsafe import Markup

    renderer = _Renderer()
    numbered = figures(nb.node)
    blocks: list[str] = []
    for index, cell in visible_cells(nb.node):
        if cell.cell_type == "markdown":
            blocks.append(f'<div class="cell markdown">{_markdown_to_html(cell.source, renderer)}</div>')
            continue
        tags = cell.metadata.get("tags", ())
        label = '<div class="label">Parameters</div>' if "parameters" in tags else ""
        parts = [f'<div class="cell code">{label}<div class="input">{_highlight(cell.source)}</div>']
        for position, out in enumerate(cell_outputs(cell)):
            parts.append(_output_html(out, numbered.get((index, position))))
        blocks.append("".join(parts) + "</div>")
    toc = [entry for entry in renderer.toc if entry["level"] <= 3]
    if toc and toc[0]["level"] == 1 and toc[0]["text"] == nb.title:
        toc = toc[1:]  # the page title is not a section
    return _template("page.html.j2").render(
        title=f"{nb.title} · {SITE_TITLE}", description=nb.summary, site_title=SITE_TITLE,
        pygments_css=Markup(_pygments_css()), toc=toc, blocks=[Markup(b) for b in blocks],
        downloads=[{"href": f"{nb.slug}.ipynb", "label": ".ipynb"}, {"href": f"{nb.slug}.py", "label": ".py"}],
        executed=nb.executed.isoformat(), versions=nb.versions,
    )


def render_index(notebooks: list[Notebook]) -> str:
    """The landing page: one entry per notebook with its one-line summary and downloads."""
    from markupsafe import Markup

    return _template("index.html.j2").render(
        title=SITE_TITLE, description=SITE_DESCRIPTION, site_title=SITE_TITLE,
        pygments_css=Markup(""), notebooks=notebooks, versions=environment_versions(),
    )


def write_site(notebooks: list[Notebook], site: Path) -> list[Path]:
    """``index.html``, one page per notebook and the downloadable ``.ipynb``/``.py`` beside them."""
    site.mkdir(parents=True, exist_ok=True)
    written = [site / "index.html"]
    written[0].write_text(render_index(notebooks), encoding="utf-8")
    for nb in notebooks:
        page = site / f"{nb.slug}.html"
        page.write_text(render_page(nb), encoding="utf-8")
        shutil.copyfile(nb.path, site / f"{nb.slug}.ipynb")
        if nb.source is not None:
            shutil.copyfile(nb.source, site / f"{nb.slug}.py")
        else:  # no paired source given: derive the py:percent text from the notebook itself
            import jupytext

            (site / f"{nb.slug}.py").write_text(jupytext.writes(nb.node, fmt="py:percent"), encoding="utf-8")
        written += [page, site / f"{nb.slug}.ipynb", site / f"{nb.slug}.py"]
    return written


# --- Jekyll ---------------------------------------------------------------------------------------


def _fence(text: str, info: str = "") -> str:
    """A fenced block that survives backticks inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}"


def front_matter(nb: Notebook) -> str:
    """YAML front matter; Liquid is off so ``{{``/``{%`` in code (f-strings, dicts) stay literal."""
    import yaml

    tags = nb.node.metadata.get("gradcam_tutorial", {}).get("tags") or list(DEFAULT_TAGS)
    fields = {
        "layout": "post",
        "title": nb.title,
        "description": nb.summary,
        "date": nb.executed,
        "tags": list(tags),
        "permalink": f"/{nb.slug}.html",
        "render_with_liquid": False,
    }
    return "---\n" + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


def post_name(nb: Notebook) -> str:
    return f"{nb.executed.isoformat()}-{nb.slug}.md"


def write_post(nb: Notebook, blog: Path) -> Path:
    """One Jekyll post; figures go to ``<slug>_files/`` and are linked relatively."""
    files = blog / f"{nb.slug}_files"
    shutil.rmtree(files, ignore_errors=True)
    numbered = figures(nb.node)
    chunks = [front_matter(nb)]
    for index, cell in visible_cells(nb.node):
        if cell.cell_type == "markdown":
            chunks.append(cell.source.strip())
            continue
        chunks.append(_fence(cell.source, "python"))
        for position, out in enumerate(cell_outputs(cell)):
            if out.kind == "image":
                figure = numbered[(index, position)]
                name = f"output_{index}_{position}.{IMAGE_TYPES[out.mime]}"
                files.mkdir(parents=True, exist_ok=True)
                raw = out.data.encode() if out.mime == "image/svg+xml" else base64.b64decode(out.data)
                (files / name).write_bytes(raw)
                chunks.append(f"![{figure.caption}]({nb.slug}_files/{name})\n\n*{figure.caption}*")
            elif out.kind == "html":
                chunks.append(out.data.strip())
            else:
                chunks.append(_fence(out.data))
    post = blog / post_name(nb)
    post.write_text(chunks[0] + "\n" + "\n\n".join(chunks[1:]) + "\n", encoding="utf-8")
    return post


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
    text = path.read_text(encoding="utf-8", errors="replace")
    parser = _Refs()
    if path.suffix == ".md":
        text = _FENCE.sub("", text)
        text = re.sub(r"`[^`\n]*`", "", text)
        parser.refs.extend(_MD_LINK.findall(text))
        used: set[str] = set()
        for heading in _MD_HEADING.findall(text):
            parser.ids.add(heading_id(heading_text(heading), used))
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
            elif parts.fragment and target.suffix in (".html", ".md"):
                if unquote(parts.fragment) not in scan(target).ids:
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
for (const entry of performance.getEntriesByType('resource')) {
  const local = entry.name.startsWith(location.origin) || entry.name.startsWith('data:');
  if (!local) problems.push('external resource: ' + entry.name);
}
return problems;
"""


def browser_missing() -> str | None:
    """Why the headless browser check cannot run here, or None when it can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not found: `make system-deps` installs them (Debian chromium, chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run `make venv`"
    return None


def _full_page_png(driver) -> bytes:
    """A screenshot of the whole page, not only the window (Chrome DevTools protocol)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width, height = max(1, int(size["width"])), max(1, int(size["height"]))
    scale = min(1.0, 16000 / height)  # Chrome draws nothing past ~16k pixels
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": scale},
    })
    return base64.b64decode(shot["data"])


def browse(site: Path, screenshots: Path | None = None) -> list[str]:
    """Open every page of ``site`` in headless Chromium over HTTP; report what a reader would hit.

    Checked per page: every ``<img>`` decoded, every in-page ``#fragment`` link has a target, no
    SEVERE console message, nothing fetched from outside the local server. A full-page screenshot
    of each page goes to ``screenshots/<page>.png`` when that folder is given.
    """
    import functools
    import tempfile
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base
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
            for page in sorted(site.glob("*.html")):
                driver.get(f"http://127.0.0.1:{server.server_address[1]}/{page.name}")
                problems += [f"{page.name}: {p}" for p in driver.execute_script(_PAGE_PROBLEMS_JS)]
                problems += [f"{page.name}: console {e['level']}: {e['message']}"
                             for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    (screenshots / f"{page.stem}.png").write_bytes(_full_page_png(driver))
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    return problems


# --- the command ----------------------------------------------------------------------------------


def _order(path: Path) -> tuple[bool, str]:
    return (path.stem != "tutorial", path.stem)  # the tutorial reads first, the rest by name


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
    for nb in loaded:
        write_post(nb, out / "blog")
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcam_tutorial.publishing.publish", description=__doc__.split("\n\n")[0])
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
