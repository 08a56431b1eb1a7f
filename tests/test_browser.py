"""The rendered pages in a real headless Chromium over HTTP: images decode, TOC links land, no errors.

Missing Chromium is a failure, not a skip: `make test` installs it with `make system-deps`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradcam_tutorial.publishing import publish

from test_publish import COMMITTED, ROOT, write_synthetic

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def chromium() -> None:
    if reason := publish.browser_missing():
        pytest.fail(f"the browser tests need headless Chromium: {reason}")


def _screenshots_ok(shots: Path, page: str) -> None:
    """The page's desktop and phone screenshots: PNGs as wide as the window, with something drawn."""
    from PIL import Image

    for name, (width, _) in publish.WIDTHS.items():
        path = shots / (f"{page}.png" if name == "desktop" else f"{page}.{name}.png")
        with Image.open(path) as shot:
            assert shot.format == "PNG" and shot.width == width and shot.height >= 300, (path, shot.size)
            low, high = shot.convert("L").getextrema()
            assert high - low > 50, f"{path} is blank"


@pytest.mark.slow
def test_synthetic_site_passes_in_the_browser_with_screenshots(tmp_path: Path) -> None:
    """Every kind of wide content (write_synthetic's wide_cells) scrolls in its box at desktop and phone width."""
    executed, sources = write_synthetic(tmp_path / "in")
    build = tmp_path / "build"
    publish.publish(executed, sources, build)
    assert publish.browse(build / "site", build / "screenshots") == []
    shots = sorted(p.name for p in (build / "screenshots").glob("*.png"))
    assert shots == ["index.phone.png", "index.png", "synthetic.phone.png", "synthetic.png"]
    for page in ("index", "synthetic"):
        _screenshots_ok(build / "screenshots", page)


@pytest.mark.slow
def test_browser_check_reports_broken_pages(tmp_path: Path) -> None:
    long_line = "x" * 400
    (tmp_path / "bad.html").write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>bad</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
        '<nav class="toc"><a href="#present">ok</a><a href="#absent">missing</a></nav><h2 id="present">here</h2>'
        '<img src="nowhere.png" alt="lost figure"><script>console.error("deliberate failure")</script>'
        "<p><math><mfrac><mn>3</mn><mn>4</mn></mfrac></math> laid out, <mfrac><mn>1</mn><mn>2</mn></mfrac> not</p>"
        f'<main><div class="cut" style="width: 200px; overflow: hidden"><span>CUT {long_line}</span></div>'
        f'<div class="scrolls" style="width: 200px; overflow-x: auto"><pre>SCROLLS {long_line}</pre></div>'
        f'<table class="wide"><tr><td>WIDE {long_line}</td></tr></table></main>'
        "</body></html>"
    )
    problems = publish.browse(tmp_path)
    for where in ("bad.html", "bad.html (phone, 375 px)"):  # the layout is checked at both widths
        assert any(p.startswith(f"{where}: clipped") and 'div.cut "CUT x' in p for p in problems), problems
        assert any(p.startswith(f"{where}: wider than its column: table.wide") for p in problems), problems
        assert any(p.startswith(f"{where}: the page scrolls sideways") for p in problems), problems
    assert not any("SCROLLS" in p for p in problems)  # a box that scrolls holds its content: no problem
    assert "bad.html: image not decoded: lost figure" in problems
    assert "bad.html: fragment lands nowhere: #absent" in problems
    assert any("console SEVERE" in p and "deliberate failure" in p for p in problems)
    assert not any("#present" in p for p in problems)
    assert "bad.html: formula not laid out: 12" in problems and not any(": 34" in p for p in problems)


@pytest.mark.slow
@pytest.mark.skipif(not COMMITTED, reason="no committed notebooks/*.ipynb yet")
def test_committed_notebooks_pass_in_the_browser(tmp_path: Path) -> None:
    publish.publish(ROOT / "notebooks", ROOT / "notebooks", tmp_path)
    assert publish.browse(tmp_path / "site", tmp_path / "screenshots") == []
    for page in (tmp_path / "site").glob("*.html"):
        _screenshots_ok(tmp_path / "screenshots", page.stem)
