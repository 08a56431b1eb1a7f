"""The publisher: HTML site and Jekyll posts from executed notebooks, and the offline link checker.

A small synthetic notebook exercises every feature; the committed notebooks, when present, are
rendered too so that real content (long outputs, many figures) is checked the same way.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import itertools
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from gradcam_tutorial.publishing import publish

ROOT = Path(__file__).resolve().parents[1]
# The notebooks are their py:percent sources; each is committed executed, as an .ipynb beside it.
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
NOTEBOOKS = [source.stem for source in SOURCES]
COMMITTED = [source.with_suffix(".ipynb") for source in SOURCES if source.with_suffix(".ipynb").exists()]
EXECUTED = "2024-03-05"
# What Jekyll's GFM markdown calls the synthetic notebook's sections (the TOC must agree).
ANCHORS = ["first-section", "results-2nd-section", "details", "first-section-1", "3-a-numbered-section"]


def _png() -> str:
    """A real matplotlib figure as base64 PNG, as the kernel would have stored it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1, 2], [0, 1, 4])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


WIDE_COLUMNS = 24


def wide_cells() -> list[nbformat.NotebookNode]:
    """Content wider than any column, each kind the pages must scroll or wrap rather than clip.

    A markdown table, an unbreakable identifier and word in prose, a long line of code, a long
    printed line, a pandas-like text table and an HTML table (a ``DataFrame``'s rich output).
    """
    header = [f"column {i}" for i in range(WIDE_COLUMNS)]
    row = [f"{i * 1.2345:.4f}" for i in range(WIDE_COLUMNS)]
    markdown_table = "\n".join(["| " + " | ".join(cells) + " |" for cells in (header, ["---"] * WIDE_COLUMNS, row)])
    text_table = "\n".join("  ".join(f"{cell:>10}" for cell in cells) for cells in (header, row, row))
    html_table = (
        '<table class="dataframe"><thead><tr>'
        + "".join(f"<th>{cell}</th>" for cell in header)
        + "</tr></thead><tbody><tr>"
        + "".join(f"<td>{cell}</td>" for cell in row)
        + "</tr></tbody></table>"
    )
    return [
        new_markdown_cell(
            "A wide table:\n\n" + markdown_table + "\n\nProse with `gradcam_tutorial.evaluation.faithfulness."
            "deletion_insertion_curves_for_every_photo` and Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch."
        ),
        new_code_cell(
            "print(" + ", ".join(f"'value number {i}'" for i in range(20)) + ")\ntable()\nframe()",
            execution_count=6,
            outputs=[
                new_output("stream", name="stdout", text=" ".join(f"value number {i}" for i in range(20)) + "\n"),
                new_output("execute_result", data={"text/plain": text_table}, execution_count=6),
                new_output("display_data", data={"text/html": html_table, "text/plain": text_table}),
            ],
        ),
    ]


def write_synthetic(folder: Path) -> tuple[Path, Path]:
    """An executed notebook and its .py source in ``folder/executed`` and ``folder/sources``."""
    png = _png()
    cells = [
        new_markdown_cell(
            "# Synthetic notebook\n\nA tiny executed notebook that exercises the publisher, "
            "with a formula $\\alpha_k^c = \\frac{1}{Z}\\sum_i y^c$ inline.\n\n"
            "Jump to [the results](#results-2nd-section)."
        ),
        new_code_cell(
            "import os  # SETUP-MARKER",
            execution_count=1,
            metadata={"tags": ["setup"]},
            outputs=[
                new_output("stream", name="stdout", text="SETUP-OUTPUT\n"),
                new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            ],
        ),
        new_markdown_cell("## Removed section\n\nREMOVED-MARKER", metadata={"tags": ["remove_cell"]}),
        new_code_cell("size = 3", execution_count=2, metadata={"tags": ["parameters"]}),
        new_markdown_cell(
            "## First section\n\nSome *prose* and `code`.\n\n$$\nL = \\mathrm{ReLU}\\Big(\\sum_k w_k A_k\\Big)\n$$"
        ),
        new_code_cell(
            "print('hello', 6 * 7)\nplot()",
            execution_count=3,
            metadata={"caption": "A rising curve"},
            outputs=[
                new_output("stream", name="stdout", text="hello 42\n"),
                new_output("stream", name="stderr", text="progress 10%\r"),
                new_output("stream", name="stderr", text="progress 100%\n\x1b[33mwarning\x1b[0m\n"),
                new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            ],
        ),
        new_markdown_cell("## Results: 2nd *section*\n\n### Details\n\nBack to [the first section](#first-section)."),
        new_code_cell(
            "f'{{literal}} {size}'",
            execution_count=4,
            outputs=[new_output("execute_result", data={"text/plain": "'{literal} 3'"}, execution_count=4)],
        ),
        new_code_cell(
            "plot_again()",
            execution_count=5,
            outputs=[
                new_output(
                    "display_data",
                    data={"image/png": png, "text/html": "<b>HTML-FALLBACK</b>", "text/plain": "<Figure>"},
                )
            ],
        ),
        new_markdown_cell(
            "## First section\n\nThe same heading twice gets a numbered id.\n\n"
            "## 3. A numbered section\n\nLinked from [here](#3-a-numbered-section)."
        ),
        *wide_cells(),
    ]
    node = new_notebook(
        cells=cells,
        metadata={"gradcam_tutorial": {"executed": EXECUTED}, "language_info": {"name": "python", "version": "3.11.9"}},
    )
    executed, sources = folder / "executed", folder / "sources"
    executed.mkdir(parents=True)
    sources.mkdir(parents=True)
    nbformat.write(node, executed / "synthetic.ipynb")
    (sources / "synthetic.py").write_text("# %% [markdown]\n# # Synthetic notebook\n", encoding="utf-8")
    return executed, sources


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("publish")
    executed, sources = write_synthetic(out / "in")
    publish.publish(executed, sources, out / "build")
    return out / "build"


def test_index_lists_each_notebook_with_title_summary_and_links(built: Path) -> None:
    index = (built / "site" / "index.html").read_text()
    assert "<title>Grad-CAM in PyTorch</title>" in index
    assert 'href="synthetic.html"' in index and "Synthetic notebook" in index
    assert "A tiny executed notebook that exercises the publisher" in index
    assert 'href="synthetic.ipynb"' in index and 'href="synthetic.py"' in index


def test_page_has_a_toc_of_the_headings_with_unique_anchors(built: Path) -> None:
    page = (built / "site" / "synthetic.html").read_text()
    toc = re.search(r'<nav class="toc".*?</nav>', page, re.S).group(0)
    assert re.findall(r'href="#([^"]+)"', toc) == ANCHORS
    for anchor in ANCHORS:
        assert f'id="{anchor}"' in page


def test_page_hides_setup_cells_and_labels_parameters(built: Path) -> None:
    page = (built / "site" / "synthetic.html").read_text()
    assert "SETUP-MARKER" not in page and "SETUP-OUTPUT" not in page
    assert "REMOVED-MARKER" not in page and "removed-section" not in page
    assert '<div class="label">Parameters</div>' in page


def test_streams_merge_as_a_terminal_shows_them(built: Path) -> None:
    """Consecutive stderr chunks are one block; a carriage return overwrites; colour codes go."""
    page = (built / "site" / "synthetic.html").read_text()
    assert '<div class="output stderr"><pre>progress 100%\nwarning</pre></div>' in page
    assert "progress 10%" not in page and "\x1b" not in page
    body = (built / "blog" / f"{EXECUTED}-synthetic.md").read_text()
    assert "```\nprogress 100%\nwarning\n```" in body and "progress 10%" not in body and "\x1b" not in body


def test_page_is_self_contained_with_highlighted_code_figures_and_footer(built: Path) -> None:
    page = (built / "site" / "synthetic.html").read_text()
    assert len(re.findall(r'<figure><img src="data:image/png;base64,', page)) == 2
    assert "<figcaption>Figure 1: A rising curve</figcaption>" in page and "<figcaption>Figure 2</figcaption>" in page
    assert re.search(r'class="[^"]*\bhighlight\b', page) and '<span class="nb">print</span>' in page  # Pygments
    assert "hello 42" in page and "&#x27;{literal} 3&#x27;" in page
    assert "HTML-FALLBACK" not in page  # an image is shown before the HTML beside it
    # formulas are MathML, inline and displayed, with nothing of the TeX left over (\\Big is a sized bracket)
    assert page.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">') == 1
    assert page.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') == 1
    assert "<mfrac>" in page and '<mo minsize="1.623em" maxsize="1.623em">(</mo>' in page
    main = page.split("<main>", 1)[1]  # (the description in <head> is plain text, TeX and all)
    assert "\\frac" not in main and "\\Big" not in main and "$" not in main
    footer = re.search(r'<footer class="site">.*?</footer>', page, re.S).group(0)
    assert f"Executed on {EXECUTED}" in footer and "Python 3.11.9" in footer
    assert re.search(r"torch \d", footer) and re.search(r"torchvision \d", footer)
    # nothing on the page may come from the web: no http(s) src, stylesheet or script
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page


def test_downloads_sit_beside_the_pages(built: Path) -> None:
    site = built / "site"
    assert nbformat.read(site / "synthetic.ipynb", as_version=4).metadata["gradcam_tutorial"]["executed"] == EXECUTED
    assert (site / "synthetic.py").read_text().startswith("# %% [markdown]")


def test_post_has_front_matter_fenced_code_and_relative_figures(built: Path) -> None:
    post = built / "blog" / f"{EXECUTED}-synthetic.md"
    text = post.read_text()
    _, header, body = text.split("---\n", 2)
    fields = yaml.safe_load(header)
    assert fields["layout"] == "post" and fields["title"] == "Synthetic notebook"
    assert fields["date"] == dt.datetime.fromisoformat(EXECUTED)  # the first in reading order: midnight
    assert fields["description"].startswith("A tiny executed notebook") and fields["tags"]
    assert fields["permalink"] == "/synthetic.html" and fields["render_with_liquid"] is False
    assert "```python\nprint('hello', 6 * 7)\nplot()\n```" in body
    assert "```\nhello 42\n```" in body
    assert "SETUP-MARKER" not in body and "REMOVED-MARKER" not in body and "## Results: 2nd *section*" in body
    assert "HTML-FALLBACK" not in body
    links = re.findall(r"!\[[^\]]*\]\((synthetic_files/[^)]+\.png)\)", body)
    assert len(links) == 2 and sorted(p.name for p in (built / "blog" / "synthetic_files").iterdir()) == sorted(
        Path(link).name for link in links
    )  # the hidden figure is not exported
    assert "![Figure 1: A rising curve](synthetic_files/" in body and "\n\n*Figure 1: A rising curve*\n" in body
    assert "![Figure 2](synthetic_files/" in body and "\n\n*Figure 2*\n" in body
    for link in links:
        assert (built / "blog" / link).read_bytes().startswith(b"\x89PNG")


def test_executed_date_falls_back_to_the_file_mtime(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Plain")]), path)
    os.utime(path, (0, dt.datetime(2023, 7, 1, 12).timestamp()))
    assert publish.executed_date(nbformat.read(path, as_version=4), path) == dt.date(2023, 7, 1)


def test_check_links_passes_the_build_and_catches_breakage(built: Path, tmp_path: Path) -> None:
    assert publish.check_links(built / "site") == []
    assert publish.check_links(built / "blog") == []
    (tmp_path / "a.html").write_text(
        '<h2 id="here">x</h2><a href="#here">ok</a><a href="#gone">bad</a>'
        '<img src="missing.png"><a href="sub/">dir</a>'
        '<a href="https://example.org/">web</a>'
    )
    (tmp_path / "p.md").write_text("# Title\n\n![fig](p_files/x.png) [t](#title)\n\n```\n[not](a-link.png)\n```\n")
    assert publish.check_links(tmp_path) == [
        "a.html: #gone (no element with id 'gone')",
        "a.html: missing.png (no such file)",
        "a.html: sub/ (no such file)",
        "p.md: p_files/x.png (no such file)",
    ]


def test_main_renders_and_reports_no_problems(tmp_path: Path, capsys) -> None:
    executed, sources = write_synthetic(tmp_path / "in")
    out = tmp_path / "b"
    code = publish.main(["--notebooks", str(executed), "--sources", str(sources), "--out", str(out), "--no-browser"])
    assert code == 0, capsys.readouterr().out
    assert (out / "site" / "synthetic.html").exists() and (out / "blog" / f"{EXECUTED}-synthetic.md").exists()


def reading_order(names: list[str]) -> list[str]:
    """The order the site must show: the tutorial, the report, then any other by name."""
    return [n for n in ("tutorial", "report") if n in names] + sorted(
        n for n in names if n not in ("tutorial", "report")
    )


def pager(page: str) -> dict[str, str]:
    """A page's previous/next links: {"prev": href, "next": href}."""
    found = re.search(r'<nav class="pager".*?</nav>', page, re.S)
    return dict(re.findall(r'rel="(prev|next)" href="([^"]+)"', found.group(0))) if found else {}


def check_reading_order(out: Path, names: list[str]) -> None:
    """Index, previous/next links and post dates all follow the reading order of ``names``."""
    order = reading_order(names)
    index = (out / "site" / "index.html").read_text()
    assert re.findall(r'<a href="([^"]+)\.html"><strong>', index) == order
    for at, name in enumerate(order):
        links = pager((out / "site" / f"{name}.html").read_text())
        expected = {"prev": f"{order[at - 1]}.html"} if at else {}
        expected |= {"next": f"{order[at + 1]}.html"} if at + 1 < len(order) else {}
        assert links == expected, (name, links)
    dates = {}
    for post in (out / "blog").glob("*.md"):
        fields = yaml.safe_load(post.read_text().split("---\n", 2)[1])
        dates[fields["permalink"].strip("/").removesuffix(".html")] = fields["date"]
    same_day = [n for n in order if dates[n].date() == dates[order[0]].date()]
    # Jekyll orders one day's posts by their date, then by file name: the dates alone must give the reading order
    assert all(dates[a] < dates[b] for a, b in itertools.pairwise(same_day)), dates


def write_series(folder: Path, names: list[str]) -> Path:
    """One small executed notebook per name, all run the same day (as ``make report`` runs them)."""
    folder.mkdir(parents=True)
    for name in names:
        node = new_notebook(
            cells=[new_markdown_cell(f"# The {name} notebook\n\nWhat {name} is about.")],
            metadata={"gradcam_tutorial": {"executed": EXECUTED}},
        )
        nbformat.write(node, folder / f"{name}.ipynb")
    return folder


@pytest.mark.slow
def test_any_number_of_notebooks_read_in_order(tmp_path: Path) -> None:
    """Five notebooks run the same day: tutorial, report, then the others by name."""
    names = ["zeta", "report", "alpha", "beta", "tutorial"]
    loaded = publish.publish(write_series(tmp_path / "in", names), None, tmp_path / "build")
    assert [nb.slug for nb in loaded] == ["tutorial", "report", "alpha", "beta", "zeta"]
    check_reading_order(tmp_path / "build", names)
    assert publish.check_links(tmp_path / "build" / "site") == []


def test_a_lone_notebook_has_no_previous_or_next(built: Path) -> None:
    assert '<nav class="pager"' not in (built / "site" / "synthetic.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not COMMITTED, reason="no committed notebooks/*.ipynb yet")
def test_committed_notebooks_render_with_working_links(tmp_path: Path) -> None:
    loaded = publish.publish(ROOT / "notebooks", ROOT / "notebooks", tmp_path)
    assert [nb.slug for nb in loaded] == reading_order(NOTEBOOKS)  # every notebooks/*.py, none left out
    check_reading_order(tmp_path, NOTEBOOKS)
    assert publish.check_links(tmp_path / "site") == [] and publish.check_links(tmp_path / "blog") == []
    for nb in loaded:
        page = (tmp_path / "site" / f"{nb.slug}.html").read_text()
        assert nb.summary and f"Executed on {nb.executed.isoformat()}" in page
        captions = publish.figures(nb.node)
        shown = len(captions)
        assert page.count('<figure><img src="data:image/') == shown
        assert [html.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)] == captions
        assert len(list((tmp_path / "blog" / f"{nb.slug}_files").glob("*"))) == shown
        text = html.unescape(re.sub(r"<[^>]+>", "", page))  # highlighted code reads as its source here
        hidden = [c for c in nb.node.cells if publish.HIDDEN_TAGS.intersection(c.metadata.get("tags", ()))]
        shown = [c for c in nb.node.cells if c not in hidden and c.cell_type == "code" and c.source.strip()]
        assert hidden and all(c.source.strip() in text for c in shown)  # so the check below can fail
        for cell in hidden:
            assert cell.source.strip() not in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_figure_has_a_caption(name: str) -> None:
    """Each figure a reader sees carries "Figure N: <what it shows>", from its cell's ``caption`` metadata."""
    node = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    bare = []
    for at, cell in enumerate(node.cells):  # numbered as in the .ipynb, so that the cell can be found
        if publish.HIDDEN_TAGS.intersection(cell.metadata.get("tags", ())):
            continue
        images = sum(publish.shown_type(output) in publish.IMAGE_TYPES for output in cell.get("outputs", []))
        if images and not str(cell.metadata.get("caption", "")).strip():
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            bare.append(f"cell {at} ({images} figure(s)): {first[:70]}")
    captions = publish.figures(node)
    assert captions, f"{name} has no figures, so this check could not fail"
    assert not bare, f"{name}.ipynb: cells with figures but no caption metadata:\n" + "\n".join(bare)
    assert all(re.fullmatch(r"Figure \d+: \S.*", caption, re.S) for caption in captions), captions


# Tricky headings and the ids Jekyll 4.3 (kramdown-parser-gfm 1.1) gives them, read off a real `jekyll build`;
# tests/test_jekyll.py checks them against Jekyll itself. An empty id means Jekyll writes no id at all.
TRICKY_HEADINGS = [
    ("Results: 2nd *section*", "results-2nd-section"),
    ("The package's `GradCAM`: the same map", "the-packages-gradcam-the-same-map"),
    ("Über straße — café naïve", "über-straße--café-naïve"),
    ("A -- B --- C ... D", "a--b--c--d"),
    ("See [the docs](https://example.org/x.html) & more", "see-the-docs--more"),
    ("3. A numbered section", "3-a-numbered-section"),
    ("a", "a"),
    ("a", "a-1"),
    ("a 1", "a-1"),  # kramdown counts per id, so this repeats the id above
    ("a-1", "a-1-1"),
    ("Tom &amp; Jerry &lt;3", "tom--jerry-3"),
    ("$\\alpha_k^c$ weights", "alpha_kc-weights"),
    ("🚀", ""),
    ("🚀", "-1"),
    ("Ⓐ ½ x² Ⅻ", "ⓐ--x-ⅻ"),
    ("under_score and \t spaces", "under_score-and---spaces"),
    ("![img](x.png) picture", "-picture"),
    ("<span>html</span> inside", "html-inside"),
    ("«quoted» “smart” 'single'", "quoted-smart-single"),
]


def tricky_markdown() -> str:
    return "\n\n".join(f"## {text}\n\nText." for text, _ in TRICKY_HEADINGS)


def test_heading_ids_are_the_ones_kramdown_gives() -> None:
    contents = publish.Contents()
    page = publish.markdown_html(tricky_markdown(), contents)
    ids = [m.group(1) or "" for m in re.finditer(r'<h2(?: id="([^"]*)")?>', page)]
    assert ids == [anchor for _, anchor in TRICKY_HEADINGS]
    assert [h.anchor for h in contents.headings] == [a for _, a in TRICKY_HEADINGS if a]  # no TOC entry without id
    assert contents.headings[1].text == "The package's GradCAM: the same map"


def test_maths_is_mathml_and_malformed_tex_stays_readable() -> None:
    page = publish.markdown_html(
        "Inline $\\frac{a}{b}$ and\n\n$$\\sum_k w_k \\Big( x \\Big)$$\n\nbad $\\frac{1}{$ here"
    )
    assert re.search(r'<math [^>]*display="inline"><mrow><mfrac>', page)
    assert re.search(r'<math [^>]*display="block">.*<munder><mo>&#x02211;</mo>', page)
    assert '<code class="math">\\frac{1}{</code>' in page  # the converter gave up: the TeX is shown as code
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/1998/Math/MathML", "")


def test_figures_are_numbered_in_reading_order_with_captions() -> None:
    png = _png()
    image = {"image/png": png, "text/plain": "<Figure>"}
    node = new_notebook(
        cells=[
            new_code_cell(
                "hidden()",
                metadata={"tags": ["remove-cell"], "caption": "never shown"},
                outputs=[new_output("display_data", data=image)],
            ),
            new_code_cell(
                "two()",
                metadata={"caption": "Two panels"},
                outputs=[
                    new_output("display_data", data=image),
                    new_output("stream", name="stdout", text="x"),
                    new_output("execute_result", data=image, execution_count=1),
                ],
            ),
            new_code_cell("table()", outputs=[new_output("display_data", data={"text/html": "<table></table>"})]),
            new_code_cell(
                "svg()", outputs=[new_output("display_data", data={"image/svg+xml": "<svg/>", "text/html": "x"})]
            ),
        ]
    )
    assert publish.figures(node) == ["Figure 1: Two panels", "Figure 2: Two panels", "Figure 3"]
