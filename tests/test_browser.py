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


def _screenshot_ok(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 300, (path, shot.size)
        low, high = shot.convert("L").getextrema()
        assert high - low > 50, f"{path} is blank"


def test_synthetic_site_passes_in_the_browser_with_screenshots(tmp_path: Path) -> None:
    executed, sources = write_synthetic(tmp_path / "in")
    build = tmp_path / "build"
    publish.publish(executed, sources, build)
    assert publish.browse(build / "site", build / "screenshots") == []
    shots = sorted(p.name for p in (build / "screenshots").glob("*.png"))
    assert shots == ["index.png", "synthetic.png"]
    for shot in shots:
        _screenshot_ok(build / "screenshots" / shot)


def test_browser_check_reports_broken_pages(tmp_path: Path) -> None:
    (tmp_path / "bad.html").write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>bad</title></head><body>'
        '<nav class="toc"><a href="#present">ok</a><a href="#absent">missing</a></nav><h2 id="present">here</h2>'
        '<img src="nowhere.png" alt="lost figure"><script>console.error("deliberate failure")</script>'
        "<p><math><mfrac><mn>3</mn><mn>4</mn></mfrac></math> laid out, <mfrac><mn>1</mn><mn>2</mn></mfrac> not</p>"
        "</body></html>"
    )
    problems = publish.browse(tmp_path)
    assert "bad.html: image not decoded: lost figure" in problems
    assert "bad.html: fragment lands nowhere: #absent" in problems
    assert any("console SEVERE" in p and "deliberate failure" in p for p in problems)
    assert not any("#present" in p for p in problems)
    assert "bad.html: formula not laid out: 12" in problems and not any(": 34" in p for p in problems)


@pytest.mark.skipif(not COMMITTED, reason="no committed notebooks/*.ipynb yet")
def test_committed_notebooks_pass_in_the_browser(tmp_path: Path) -> None:
    publish.publish(ROOT / "notebooks", ROOT / "notebooks", tmp_path)
    assert publish.browse(tmp_path / "site", tmp_path / "screenshots") == []
    for page in (tmp_path / "site").glob("*.html"):
        _screenshot_ok(tmp_path / "screenshots" / f"{page.stem}.png")
