"""``gradcam explore``: the self-contained every-class page, driven in a real headless Chromium.

Two pages are written once for the module: the demo grid (its tiles as regions; Lite0 sees a centre
crop) and scikit-image's cat photo (451 x 300, so the page ships it scaled down, its quadrants as
regions). One Chromium session opens them; each test reloads its page. Missing Chromium is a failure,
not a skip, as in test_browser.py.
"""

from __future__ import annotations

import base64
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcam_tutorial.explore import DEFAULT_ALPHA, DISPLAY_SIDE, ExplorerData, compute, render_page
from gradcam_tutorial.publishing import browser
from gradcam_tutorial.viz import heatmap_on_photo, overlay

pytestmark = pytest.mark.browser

SEARCHED = ("tabby", "goose", "espresso")
TOLERANCE = 2  # of 255, per channel: the page's canvas against the package's overlay
MAX_PAGE_BYTES = 1 << 20

_CANVAS_JS = """
const canvas = document.getElementById('gcx-overlay');
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let text = '';
for (let i = 0; i < pixels.length; i += 8192) text += String.fromCharCode(...pixels.subarray(i, i + 8192));
return [canvas.width, canvas.height, btoa(text)];
"""


def _write(folder: Path, image: Any, model_and_spec: Any, regions: Any) -> tuple[Path, ExplorerData]:
    photo = folder / "photo.png"
    image.save(photo)
    model, spec = model_and_spec
    data = compute(image, model, spec, regions)
    page = folder / "page.html"
    page.write_text(render_page(data, photo.name), encoding="utf-8")
    return page, data


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, effnet, grid) -> tuple[Path, ExplorerData]:
    """The page written for the demo grid, with its tiles as regions, and the data it shows."""
    image, tiles = grid
    return _write(tmp_path_factory.mktemp("grid"), image, effnet, {tile.label: tile.box for tile in tiles})


@pytest.fixture(scope="module")
def written_photo(tmp_path_factory: pytest.TempPathFactory, effnet) -> tuple[Path, ExplorerData]:
    """The page written for a photo wider than the page ships (default regions: its quadrants)."""
    from PIL import Image
    from skimage import data as samples

    return _write(tmp_path_factory.mktemp("chelsea"), Image.fromarray(samples.chelsea()), effnet, None)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if reason := browser.browser_missing():
        pytest.fail(f"the explorer tests need headless Chromium: {reason}")
    with browser._chromium() as chromium:
        yield chromium


def _show(driver: Any, page: Path, width: int = 1280, height: int = 900) -> None:
    """Load the page at a viewport size and wait until its first overlay is drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.getElementById('gcx').dataset.ready === 'true'")
    )


def _chosen(driver: Any) -> int:
    return int(driver.execute_script("return document.getElementById('gcx-chosen').dataset.index"))


def _is_chosen(driver: Any, k: int) -> bool:
    return _chosen(driver) == k


def _canvas(driver: Any) -> np.ndarray:
    width, height, b64 = driver.execute_script(_CANVAS_JS)
    rgba = np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(height, width, 4)
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def _assert_same_arithmetic(drawn: np.ndarray, expected: np.ndarray) -> None:
    """The canvas against viz.overlay of the uint8 map the page ships: only float rounding may differ,
    which at an exact tie of round(255 * value) (torch in float32, the page in float64) moves one
    colour level, at a few pixels."""
    difference = np.abs(drawn.astype(int) - expected.astype(int)).max(-1)
    assert difference.max() <= 2 and (difference > 1).mean() < 1e-3, (difference.max(), (difference > 1).sum())


def _ranking(data: ExplorerData) -> list[int]:
    return sorted(range(len(data.names)), key=lambda k: -float(f"{data.probabilities[k]:.6g}"))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["written", "written_photo"])
def test_search_draws_each_class_as_the_package_overlay(driver: Any, which: str, request: Any) -> None:
    """Typing a class name selects it; the canvas changes and matches viz.overlay of that class's map
    placed on the picture (0 outside the network's crop)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page, data = request.getfixturevalue(which)
    _show(driver, page)
    assert driver.find_element(By.ID, "gcx-alpha").get_attribute("value") == str(DEFAULT_ALPHA)
    previous = _canvas(driver)
    search = driver.find_element(By.ID, "gcx-search")
    worst = np.zeros(3, dtype=int)
    for name in SEARCHED:
        k = data.names.index(name)
        search.clear()
        search.send_keys(name)
        WebDriverWait(driver, 10).until(functools.partial(_is_chosen, k=k))
        drawn = _canvas(driver)
        assert drawn.shape == (data.photo.height, data.photo.width, 3)
        assert (drawn != previous).any(), f"the canvas did not change for {name!r}"
        expected = data.overlay(k)
        difference = np.abs(drawn.astype(int) - expected.astype(int)).reshape(-1, 3).max(0)
        worst = np.maximum(worst, difference)
        _assert_same_arithmetic(drawn, data.overlay(k, quantised=True))
        previous = drawn
    print(f"largest canvas - viz.overlay difference per channel (R, G, B): {worst.tolist()} / 255")
    assert (worst <= TOLERANCE).all(), worst


_SHARES_JS = """
return [...document.querySelectorAll('#gcx-shares tbody tr')].map(
  (tr) => [tr.cells[0].textContent, tr.cells[2].textContent, tr.cells[1].firstChild.style.width]);
"""
_CROP_JS = """
const c = document.getElementById('gcx-overlay').getBoundingClientRect();
const b = document.getElementById('gcx-crop').getBoundingClientRect();
return [b.left - c.left, b.top - c.top, b.right - c.left, b.bottom - c.top, c.width, c.height];
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["written", "written_photo"])
def test_each_class_shows_its_region_shares_and_the_crop_is_outlined(driver: Any, which: str, request: Any) -> None:
    """The share table follows the chosen class (the package's shares, in whole percent); a dashed
    box over the canvas, outside its pixels, marks the part of the picture the network sees."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page, data = request.getfixturevalue(which)
    _show(driver, page, 375, 812)
    for name in SEARCHED:
        k = data.names.index(name)
        search = driver.find_element(By.ID, "gcx-search")
        search.clear()
        search.send_keys(name)
        WebDriverWait(driver, 10).until(functools.partial(_is_chosen, k=k))
        rows = driver.execute_script(_SHARES_JS)
        assert [row[0] for row in rows] == list(data.regions)
        assert [row[1] for row in rows] == [f"{100 * share:.0f}%" for share in data.shares[k]]
        bars = [float(row[2].removesuffix("%")) for row in rows]
        np.testing.assert_allclose(bars, 100 * data.shares[k], atol=0.06)
    left, top, right, bottom, width, height = driver.execute_script(_CROP_JS)
    scale = width / data.photo.width
    assert height / data.photo.height == pytest.approx(scale, rel=1e-3)
    drawn = np.array([left, top, right, bottom]) / scale
    assert np.abs(drawn - np.array(data.box)).max() < 1.0, (drawn, data.box)
    assert driver.find_element(By.ID, "gcx-crop").is_displayed()


def test_shares_are_the_tutorials_and_the_box_is_the_networks(written_photo: tuple[Path, ExplorerData], effnet) -> None:
    """The page's shares of a class are region_shares of the map explain() places on the full photo;
    the shipped picture is the photo scaled to DISPLAY_SIDE, and the box scaled with it."""
    from PIL import Image
    from skimage import data as samples

    from gradcam_tutorial.explain import explain
    from gradcam_tutorial.regions import quadrants, region_shares

    _, data = written_photo
    model, spec = effnet
    image = Image.fromarray(samples.chelsea())
    k = int(data.probabilities.argmax())
    explained = explain(image, model, spec, k)
    expected = region_shares(explained.heatmap(0), list(quadrants(image.size).values()))
    np.testing.assert_allclose(data.shares[k], expected, atol=1e-4)
    scale = DISPLAY_SIDE / image.width
    assert data.photo.size == (DISPLAY_SIDE, round(image.height * scale))
    assert data.box == tuple(round(v * scale) for v in explained.pixel_box)


@pytest.mark.slow
def test_arrow_keys_step_along_the_probability_ranking(driver: Any, written: tuple[Path, ExplorerData]) -> None:
    """The list is sorted by probability with percentages; a click selects, ArrowDown/ArrowUp step."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page, data = written
    _show(driver, page)
    ranking = _ranking(data)
    assert _chosen(driver) == ranking[0]
    listed = driver.execute_script(
        "return [...document.querySelectorAll('#gcx-ranking li')].map(li => +li.dataset.index)"
    )
    assert listed == ranking
    top = driver.find_element(By.CSS_SELECTOR, "#gcx-ranking li").text.split()
    assert top[-1] == f"{100 * data.probabilities[ranking[0]]:.1f}%", top
    driver.find_elements(By.CSS_SELECTOR, "#gcx-ranking li")[3].click()
    assert _chosen(driver) == ranking[3]
    for key, rank in ((Keys.ARROW_DOWN, 4), (Keys.ARROW_DOWN, 5), (Keys.ARROW_UP, 4), (Keys.ARROW_UP, 3)):
        ActionChains(driver).send_keys(key).perform()
        assert _chosen(driver) == ranking[rank], (key, rank)


@pytest.mark.slow
def test_no_console_errors_and_nothing_fetched(driver: Any, written: tuple[Path, ExplorerData]) -> None:
    """Loading, searching and moving the opacity slider log no SEVERE console entry; nothing is fetched."""
    from selenium.webdriver.common.by import By

    page, _ = written
    driver.get_log("browser")  # what earlier tests left
    _show(driver, page)
    driver.find_element(By.ID, "gcx-search").send_keys("goose")
    driver.execute_script(
        "const s = document.getElementById('gcx-alpha'); s.value = '0.7'; s.dispatchEvent(new Event('input'))"
    )
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == []


@pytest.mark.slow
@pytest.mark.parametrize("width", [375, 1280])
def test_no_sideways_scrolling(driver: Any, written: tuple[Path, ExplorerData], width: int) -> None:
    page, _ = written
    _show(driver, page, width, 812 if width < 600 else 900)
    scroll, inner = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert inner == width
    assert scroll <= inner


def test_page_is_small(written: tuple[Path, ExplorerData], written_photo: tuple[Path, ExplorerData]) -> None:
    page, data = written
    assert page.stat().st_size < MAX_PAGE_BYTES, page.stat().st_size
    assert data.maps.shape == (1000, 7, 7)
    assert max(data.photo.size) == DISPLAY_SIDE == max(written_photo[1].photo.size)
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text


@pytest.mark.slow
def test_cli_writes_the_page(tmp_path: Path, grid) -> None:
    image, _ = grid
    image.save(tmp_path / "photo.png")
    out = tmp_path / "page.html"
    command = [sys.executable, "-m", "gradcam_tutorial", "explore", "photo.png", "--out", str(out)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert '"mapShape":[1000,7,7]' in out.read_text(encoding="utf-8")


def test_cli_layer_option_explores_another_layer(
    tmp_path: Path, grid, effnet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--layer`` as in ``gradcam``: the page holds that layer's maps (GradCAM's, class by class); a
    layer the model does not have is one error line."""
    from gradcam_tutorial.cam import GradCAM
    from gradcam_tutorial.cli import main

    monkeypatch.chdir(tmp_path)
    grid[0].save(tmp_path / "photo.png")
    assert main(["explore", "photo.png", "--layer", "_blocks.10", "--out", "page.html"]) == 0
    capsys.readouterr()
    data = _embedded(tmp_path / "page.html")
    classes, height, width = data["mapShape"]
    assert (classes, height, width) == (1000, 14, 14) and data["title"] == "photo.png, layer _blocks.10"
    maps = np.frombuffer(base64.b64decode(data["maps"]), dtype=np.uint8).reshape(classes, height, width)
    model, spec = effnet
    picked = [data["names"].index(name) for name in SEARCHED]
    with GradCAM(model, "_blocks.10") as cam:
        expected = cam.compute(spec.preprocess(grid[0]), [picked]).normalized()[0].numpy()
    assert np.abs(maps[picked].astype(int) - np.round(255 * expected).astype(int)).max() <= 1
    assert main(["explore", "photo.png", "--layer", "_blocks.99", "--out", "other.html"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcam: error:") and "_blocks.99" in lines[0], lines
    assert not (tmp_path / "other.html").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["missing.png"], "missing.png: no such file"), (["photo.png", "--model", "nope"], "unknown model 'nope'")],
)
def test_cli_errors_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    """A missing photo or an unknown model: exit 2, one ``gradcam: error:`` line, no page."""
    from gradcam_tutorial.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(b"")
    assert main(["explore", *arguments, "--out", "page.html"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcam: error:") and message in lines[0], captured.err
    assert captured.out == ""
    assert not (tmp_path / "page.html").exists()


def _embedded(page: Path) -> dict[str, Any]:
    """The explorer's data as a page ships it (the JSON in its ``gcx-data`` script)."""
    import json
    import re

    found = re.search(r'<script type="application/json" id="gcx-data">(.*?)</script>', page.read_text(), re.S)
    assert found, f"no explorer in {page}"
    return json.loads(found.group(1).replace("<\\/", "</"))


@pytest.mark.slow
def test_the_published_tutorial_and_its_jekyll_post_carry_a_working_explorer(
    tmp_path: Path, driver: Any, effnet, grid
) -> None:
    """The committed tutorial's explorer, on the static page and on the page Jekyll builds from the
    post: it draws the class typed from the maps it ships, and those are the package's maps of the
    demo grid (to one level of 255, what another CPU's rounding may move)."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from gradcam_tutorial.publishing import publish
    from test_jekyll import jekyll_site

    root = Path(__file__).resolve().parents[1]
    publish.publish(root / "notebooks", root / "notebooks", tmp_path / "build")
    built = jekyll_site(tmp_path / "build" / "blog", tmp_path / "jekyll")
    pages = [
        p
        for folder in (tmp_path / "build" / "site", built)
        for p in folder.rglob("*.html")
        if 'id="gcx"' in p.read_text()
    ]
    assert len(pages) == 2, pages
    model, spec = effnet
    fresh = compute(grid[0], model, spec)
    for page in pages:
        data = _embedded(page)
        classes, height, width = data["mapShape"]
        maps = np.frombuffer(base64.b64decode(data["maps"]), dtype=np.uint8).reshape(classes, height, width)
        assert np.abs(maps.astype(int) - fresh.quantised().astype(int)).max() <= 1, page
        photo = Image.open(io.BytesIO(base64.b64decode(data["photo"].split(",", 1)[1]))).convert("RGB")
        _show(driver, page)
        assert driver.execute_script("return window.scrollY") == 0, "the explorer scrolled the page on load"
        k = data["names"].index("espresso")
        driver.find_element(By.ID, "gcx-search").send_keys("espresso")
        WebDriverWait(driver, 10).until(functools.partial(_is_chosen, k=k))
        placed = heatmap_on_photo(maps[k] / np.float32(255), photo.size, tuple(data["box"]))
        expected = overlay(photo, placed, alpha=DEFAULT_ALPHA)
        _assert_same_arithmetic(_canvas(driver), expected)
