"""Markdown to HTML as Jekyll would read it, offline maths, and text made safe inside markdown.

nbconvert renders the cells' markdown, but its heading anchors are not the ids Jekyll's kramdown
gives the same headings and its maths needs MathJax from a CDN: :class:`KramdownIds` and
:func:`math_html` replace those pieces in :class:`Renderer`. :func:`fence` and :func:`markdown_text`
are the posts' filters, for code and captions that must survive inside markdown.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

_TAG = re.compile(r"<[^>]+>")


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
