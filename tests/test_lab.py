"""`make lab` in a real JupyterLab and a real headless Chromium: tutorial.py opens as a notebook and runs.

Each test runs the repository's own `make lab` recipe, with the committed notebooks/lab-overrides.json,
on copies of the Makefile, the notebook files and tests/reference in a temporary folder (so that
JupyterLab's autosave never writes into the repository), on a free localhost port with a known token.
JupyterLab's user folders (settings, workspaces, runtime, kernels) point into that folder too, so
nothing in ~/.jupyter changes what these tests see. Missing Chromium is a failure, not a skip, as in
test_browser.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import pytest

from gradcam_tutorial.publishing import publish

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RUN_TIMEOUT = 300  # seconds for Run All Cells; the tutorial needs well under a minute
NUMBERED = re.compile(r"^\[\d+\]:$")

# The notebook open at `path`, read from JupyterLab itself (started with --expose-app-in-browser):
# the widget and its kernel from the app, the cells from the notebook model, the prompts and rendered
# outputs from the page. Null while the document is not open yet.
_STATE_JS = """
const path = arguments[0];
const app = window.jupyterapp;
if (!app) return null;
const widget = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
if (!widget) return null;
const state = {
  notebook: widget.node.classList.contains('jp-NotebookPanel'),
  editor: widget.node.querySelector('.jp-FileEditor') !== null,
  kernel: null, ready: false, model: null, cells: [],
};
if (!state.notebook || !widget.content.model) return state;
state.kernel = widget.sessionContext.session?.kernel?.status ?? null;
state.ready = widget.sessionContext.isReady;
state.model = widget.content.model.toJSON();
for (const cell of widget.node.querySelectorAll('.jp-Notebook .jp-Cell')) {
  const code = cell.classList.contains('jp-CodeCell');
  state.cells.push({
    code,
    prompt: code ? cell.querySelector('.jp-InputArea-prompt').textContent.trim() : null,
    stderr: Array.from(cell.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'), o => o.textContent),
    images: cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="image/png"] img').length,
  });
}
return state;
"""

_SHOW_CELL_JS = """
const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context.path === arguments[0]);
const cell = widget.content.widgets[arguments[1]];
widget.content.activeCellIndex = arguments[1];
cell.node.scrollIntoView({block: 'start'});
"""


@dataclass
class Run:
    """What the page showed once Run All had finished (or stopped at an error)."""

    model: dict
    cells: list[dict]
    seconds: float

    @property
    def code(self) -> list[tuple[int, dict, dict]]:
        """(index, model cell, page cell) of every code cell, index as JupyterLab counts (from 1)."""
        return [
            (i, m, c)
            for i, (m, c) in enumerate(zip(self.model["cells"], self.cells, strict=True), 1)
            if m["cell_type"] == "code"
        ]

    def problems(self) -> list[str]:
        """Every error output, every traceback on the page, every code cell that did not run."""
        found = []
        for i, cell, shown in self.code:
            for out in cell.get("outputs", []):
                if out["output_type"] == "error":
                    found.append(f"cell {i}: error output {out['ename']}: {out['evalue']}")
            for text in shown["stderr"]:
                if "Traceback" in text:
                    found.append(f"cell {i}: the page shows a traceback: {text.strip()[-200:]!r}")
            if cell.get("execution_count") is None or not NUMBERED.match(shown["prompt"]):
                found.append(
                    f"cell {i}: did not run (prompt {shown['prompt']!r}, execution_count {cell.get('execution_count')})"
                )
        return found


@pytest.fixture(autouse=True)
def chromium() -> None:
    if reason := publish.browser_missing():
        pytest.fail(f"the JupyterLab tests need headless Chromium: {reason}")
    if shutil.which("make") is None:
        pytest.fail("the JupyterLab tests run `make lab`: the make command is missing")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut JupyterLab down with its kernels: the REST shutdown, then signals to whatever is left."""
    import psutil

    try:
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    with contextlib.suppress(OSError):
        request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    # The kernels run in sessions of their own: make sure none outlives the server.
    for pid in family:
        with contextlib.suppress(psutil.Error):
            child = psutil.Process(pid)
            child.kill()
            child.wait(timeout=10)


@contextlib.contextmanager
def make_lab(folder: Path, overrides: str | None = None) -> Iterator[tuple[str, str]]:
    """`make lab` on copies of the Makefile, tutorial.py, jupytext.toml, lab-overrides.json and
    tests/reference in ``folder``; yields the base URL and the token once it answers, stops it after."""
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    for name in ("tutorial.py", "jupytext.toml", "lab-overrides.json"):
        if not (folder / "notebooks" / name).exists():
            shutil.copy(NOTEBOOKS / name, folder / "notebooks" / name)
    # The tutorial's last cell checks its numbers against tests/reference/tutorial.json, found above it.
    shutil.copytree(ROOT / "tests" / "reference", folder / "tests" / "reference")
    if overrides is not None:
        (folder / "notebooks" / "lab-overrides.json").write_text(overrides)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "home"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        env[var] = str(folder / "jupyter" / sub)
    env.pop("JUPYTER_CONFIG_PATH", None)
    venv = Path(sys.prefix)  # the environment running the tests is the one `make lab` would use
    lab_args = (
        f"--ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0"
        f" --IdentityProvider.token={token} --expose-app-in-browser"
    )
    log_path = folder / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "-C", str(folder), "-o", f"{venv}/.installed", f"VENV={venv}", "lab", f"LAB_ARGS={lab_args}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc, base, token)


@contextlib.contextmanager
def chrome() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(publish.CHROMIUM)
        for flag in (*publish.CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(publish.CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(60)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()


def _wait(driver, what: str, timeout: float, until):
    """Poll the notebook's state until ``until(state)`` holds; fail with the last state otherwise."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = driver.execute_script(_STATE_JS, "tutorial.py")
        if state is not None and until(state):
            return state
        time.sleep(0.5)
    brief = state and {k: v for k, v in state.items() if k not in ("model", "cells")}
    prompts = state and [c["prompt"] for c in state["cells"] if c["code"]]
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last state {brief}, prompts {prompts}")


def open_tutorial(driver, base: str, token: str) -> dict:
    """Open /lab/tree/tutorial.py as a reader would, wait until its document is there."""
    driver.get(f"{base}/lab/tree/tutorial.py?token={token}")
    return _wait(
        driver,
        "tutorial.py to open",
        90,
        lambda s: s["editor"] or (s["notebook"] and s["model"] is not None and len(s["cells"]) > 1),
    )


def run_all(driver, expected_cells: int, screenshot: Path) -> Run:
    """Run > Run All Cells from the menu bar, wait for the kernel to finish; screenshot the end."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    state = _wait(
        driver,
        "the kernel to start",
        90,
        lambda s: s["ready"] and s["kernel"] == "idle" and len(s["cells"]) == expected_cells,
    )
    assert not any(c["code"] and NUMBERED.match(c["prompt"]) for c in state["cells"]), "cells ran before Run All"
    start = time.monotonic()
    driver.find_element(By.XPATH, "//li[contains(@class, 'lm-MenuBar-item')][normalize-space(.)='Run']").click()
    item = WebDriverWait(driver, 10).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, ".lm-Menu-item[data-command='runmenu:run-all']"))
    )
    assert item.text.strip().startswith("Run All Cells"), item.text
    item.click()

    def finished(s: dict) -> bool:
        prompts = [c["prompt"] for c in s["cells"] if c["code"]]
        errored = any(o["output_type"] == "error" for c in s["model"]["cells"] for o in c.get("outputs", []))
        return s["kernel"] == "idle" and "[*]:" not in prompts and (errored or all(NUMBERED.match(p) for p in prompts))

    state = _wait(driver, "Run All Cells to finish", RUN_TIMEOUT, finished)
    run = Run(model=state["model"], cells=state["cells"], seconds=time.monotonic() - start)
    problems = run.problems()
    # Show the first failing cell, or the last code cell when all is well.
    failing = next((i for i, _, _ in run.code if any(p.startswith(f"cell {i}:") for p in problems)), None)
    driver.execute_script(_SHOW_CELL_JS, "tutorial.py", (failing or run.code[-1][0]) - 1)
    time.sleep(1)
    driver.save_screenshot(str(screenshot))
    return run


_EXPLORER_JS = """
const found = document.querySelectorAll('.gcx');
const within = (selector) => Boolean(found[0]?.closest(selector));
return {count: found.length, ready: found[0]?.dataset.ready === 'true',
  output: within('.jp-OutputArea-output'), html: within('.jp-RenderedHTMLCommon')};
"""


def pick_a_class_and_print_it(driver, run: Run) -> tuple[int, str]:
    """Click the third class in the explorer's list, then run the cell that prints `view.selected`:
    what it prints is what the kernel heard of the click."""
    from selenium.webdriver.common.by import By

    def source(cell: dict) -> str:
        return "".join(cell["source"])

    cells = run.model["cells"]
    shown = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and "explorer_widget(" in source(c))
    printing = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and "view.selected" in source(c))
    driver.execute_script(_SHOW_CELL_JS, "tutorial.py", shown)
    item = driver.find_elements(By.CSS_SELECTOR, ".gcx #gcx-ranking li")[2]
    item.click()
    picked = int(item.get_attribute("data-index"))
    driver.execute_script(_SHOW_CELL_JS, "tutorial.py", printing)
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-cell')")

    def rerun(state: dict) -> bool:
        cell = state["model"]["cells"][printing]
        return state["kernel"] == "idle" and cell["execution_count"] == run.code[-1][1]["execution_count"] + 1

    state = _wait(driver, "the printing cell to run again", 60, rerun)
    outputs = state["model"]["cells"][printing]["outputs"]
    return picked, "".join("".join(o.get("text", "")) for o in outputs)


@pytest.mark.slow
def test_make_lab_opens_the_tutorial_as_a_notebook_and_runs_it_without_errors(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    cells = len(jupytext.read(NOTEBOOKS / "tutorial.py").cells)
    with make_lab(tmp_path / "lab") as (base, token), chrome() as driver:
        state = open_tutorial(driver, base, token)
        assert state["notebook"] and not state["editor"], "tutorial.py opened as text, not as a notebook"
        run = run_all(driver, cells, tmp_path / "lab.png")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")) == cells
        assert driver.find_elements(By.CSS_SELECTOR, ".jp-FileEditor") == []
        figure = next((i for i, c in enumerate(run.cells) if c["images"]), None)
        if figure is not None:
            driver.execute_script(_SHOW_CELL_JS, "tutorial.py", figure)
            time.sleep(1)
            driver.save_screenshot(str(tmp_path / "lab-figure.png"))
        # the explorer is drawn, once, by the widget's view: not by JupyterLab's HTML renderer, which
        # shows the output's text/html fallback where the widget cannot render
        explorer = driver.execute_script(_EXPLORER_JS)
        picked, printed = pick_a_class_and_print_it(driver, run) if explorer["ready"] else (None, "")
    print(f"Run All Cells took {run.seconds:.1f} s; screenshots in {tmp_path}")
    problems = run.problems()
    assert problems == [], "\n".join(problems)
    counts = [cell["execution_count"] for _, cell, _ in run.code]
    assert counts == list(range(1, len(counts) + 1)), counts  # every code cell, in order, the last one too
    assert sum(c["images"] for c in run.cells) >= 3, "the tutorial's figures were not drawn"
    assert explorer == {"count": 1, "ready": True, "output": True, "html": False}, explorer
    assert printed.startswith(f"the explorer shows class {picked}: "), (picked, printed)
    assert (tmp_path / "lab.png").stat().st_size > 20_000


@pytest.mark.slow
def test_the_run_check_catches_a_failing_cell(tmp_path: Path) -> None:
    """The tutorial's opening cells with a failing cell after its first code cell; only the check
    is under test, so the rest of the tutorial is left out."""
    notebook = jupytext.read(NOTEBOOKS / "tutorial.py")
    first_code = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code")
    notebook.cells = [
        *notebook.cells[: first_code + 1],
        nbformat.v4.new_code_cell('raise RuntimeError("boom")'),
        nbformat.v4.new_code_cell('print("after")'),
    ]
    (tmp_path / "lab" / "notebooks").mkdir(parents=True)
    jupytext.write(notebook, tmp_path / "lab" / "notebooks" / "tutorial.py", fmt="py:percent")
    with make_lab(tmp_path / "lab") as (base, token), chrome() as driver:
        assert open_tutorial(driver, base, token)["notebook"]
        run = run_all(driver, len(notebook.cells), tmp_path / "lab-boom.png")
    problems = run.problems()
    boom = first_code + 2  # JupyterLab counts cells from 1
    assert f"cell {boom}: error output RuntimeError: boom" in problems
    assert any(p.startswith(f"cell {boom}: the page shows a traceback") and "boom" in p for p in problems)
    assert f"cell {run.code[-1][0]}: did not run (prompt '[ ]:', execution_count None)" in problems


@pytest.mark.slow
def test_without_the_overrides_tutorial_py_opens_as_text(tmp_path: Path) -> None:
    # The notebook view above comes from notebooks/lab-overrides.json, not from a default.
    assert (
        json.loads((NOTEBOOKS / "lab-overrides.json").read_text())["@jupyterlab/docmanager-extension:plugin"][
            "defaultViewers"
        ]["python"]
        == "Jupytext Notebook"
    )
    with make_lab(tmp_path / "lab", overrides="{}") as (base, token), chrome() as driver:
        state = open_tutorial(driver, base, token)
    assert state["editor"] and not state["notebook"]
