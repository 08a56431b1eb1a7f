"""Offline link checking of the site and the posts: every local href/src and #fragment resolves."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .markup import markdown_html

_FRONT_MATTER = re.compile(r"\A---\n.*?^---\n", re.M | re.S)


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
