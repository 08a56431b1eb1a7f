"""The browser check: every page in headless Chromium at desktop and phone width, with screenshots.

Nothing may be clipped (what is too wide scrolls in its own box), every image decodes, every
in-page link lands, the maths is laid out, and nothing is fetched from the web.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def _serving(site: Path) -> Iterator[str]:
    """``site`` served over HTTP on a free local port for the block; yields its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _chromium() -> Iterator[Any]:
    """A headless Chromium (selenium) on a throw-away profile, logging the console; quit after the block."""
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900", "--hide-scrollbars"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(60)
            yield driver
        finally:
            driver.quit()


def _page_problems(driver: Any, where: str, device: str) -> list[str]:
    """What the page loaded in ``driver`` shows a reader at this width, each line prefixed ``where: ``."""
    problems: list[str] = []
    if device == "desktop":  # images, links, maths and requests do not depend on the width
        problems += [f"{where}: {p}" for p in driver.execute_script(_PAGE_PROBLEMS_JS)]
    problems += [f"{where}: {p}" for p in driver.execute_script(_LAYOUT_PROBLEMS_JS)]
    problems += [
        f"{where}: console {e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"
    ]
    return problems


def browse(site: Path, screenshots: Path | None = None) -> list[str]:
    """Open every page of ``site`` in headless Chromium over HTTP; report what a reader would hit.

    Checked per page: every ``<img>`` decoded, every in-page ``#fragment`` link has a target, every
    MathML fraction stacked (the browser laid the maths out), no SEVERE console message, nothing
    fetched from outside the local server; and at each of :data:`WIDTHS` (desktop, phone) nothing
    clipped or wider than its column unless it scrolls in its own box, and no sideways scrolling of
    the page. A full-page screenshot of each page goes to ``screenshots/<page>.png`` (desktop) and
    ``screenshots/<page>.phone.png`` when that folder is given.
    """
    problems: list[str] = []
    with _serving(site) as base, _chromium() as driver:
        for device, (width, height) in WIDTHS.items():
            # A phone's viewport, not a narrow window: the page's viewport meta tag is honoured.
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": device == "phone"}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            for page in sorted(site.glob("*.html")):
                driver.get(f"{base}/{page.name}")
                where = page.name if device == "desktop" else f"{page.name} ({device}, {width} px)"
                problems += _page_problems(driver, where, device)
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    name = page.stem if device == "desktop" else f"{page.stem}.{device}"
                    (screenshots / f"{name}.png").write_bytes(_full_page_png(driver))
    return problems
