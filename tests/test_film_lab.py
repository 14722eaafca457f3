"""The film in JupyterLab as a learner meets it: default settings, Run All, one click on play.

Issue 28: after Run All, lesson 02's film was 0 px high until clicked, and that first click
played nothing (the picture appeared and pushed the buttons away).  The cause: matplotlib's
player inserts an ``<img>`` with no picture and its script gives it one a moment later; by
then Run All had scrolled on, JupyterLab's default "contentVisibility" windowing had let
Chromium skip the cell, and Chromium never laid the picture out again.  Lesson 05's film
happened to be in view at that moment.  The kit's player puts the first frame in the markup.

This test rebuilds the losing situation on purpose: a notebook whose film cell is followed
by enough prose and slow cells that Run All scrolls past it while its output arrives.  In
JupyterLab with default settings (a fresh settings folder), it checks that the picture has
its height before anything is clicked, and that ONE real mouse click on play moves the film.
With the previous player the same notebook showed a 0 px picture in some runs and not in
others (it depends on when the picture arrives); the kit's player does not depend on timing.

Needs JupyterLab (``.[dev]``), Playwright's Python package (``.[dev]``; it drives the
machine's own Chromium, so it downloads no browser) and Chromium; skips loudly without them.
Everything stays on 127.0.0.1; the server and its kernel are stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from helpers import process_gone, wait_until

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "data" / "blocking-process-light"
CONNECTIONS = 3  # three frames each
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kernel_idle(url: str, token: str) -> bool:
    """Has the lab a session whose kernel is idle (started, and waiting for code)?"""
    with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as answer:
        sessions = json.load(answer)
    return any(s["kernel"]["execution_state"] == "idle" for s in sessions)


def _notebook(path: Path) -> None:
    """A film cell, then prose and slow cells: Run All scrolls past the film as it renders."""
    prose = "The kernel keeps the sleepers in a queue. " * 40
    cells = [nbformat.v4.new_code_cell(
        "from IPython.display import HTML\n"
        "from acceptlab.lab.experiment import Run\n"
        "from acceptlab.views.film import offline_html, replay\n"
        f"run = Run.load({str(RUN)!r})")]
    cells += [nbformat.v4.new_markdown_cell(f"## Before {i}\n\n{prose}") for i in range(3)]
    cells += [nbformat.v4.new_code_cell(
        f"HTML(offline_html(replay(run, max_connections={CONNECTIONS})))")]
    for i in range(8):
        cells += [nbformat.v4.new_markdown_cell(f"## After {i}\n\n{prose}"),
                  nbformat.v4.new_code_cell("import time; time.sleep(0.5)")]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)


@pytest.fixture()
def lab(tmp_path: Path):
    """JupyterLab on 127.0.0.1 with default settings, rooted at ``tmp_path``: (url, token)."""
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: pip install '.[dev]'")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.open_browser=False", *(["--allow-root"] if os.getuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}",
                                        timeout=2):
                return True
        except OSError:
            return False

    try:
        if wait_until(up, timeout=90, step=0.5) is None:
            pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.send_signal(signal.SIGTERM)  # jupyter_server shuts its kernels down on SIGTERM
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
    assert process_gone(server.pid)


def test_the_film_shows_at_once_and_plays_on_the_first_click(lab, chromium: str,
                                                             tmp_path: Path) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="PLAYWRIGHT IS NOT INSTALLED: the JupyterLab test DID NOT "
                                      "RUN; pip install '.[dev]'")
    url, token = lab
    _notebook(tmp_path / "film.ipynb")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/lab/tree/film.ipynb?token={token}&reset")
            # Run All only once the notebook's kernel has started and is idle (the server's
            # own account: the page's indicator says "idle" before a kernel exists).
            assert wait_until(lambda: _kernel_idle(url, token), timeout=120, step=0.5), \
                "the notebook's kernel did not start"
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=60_000)
            page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
            page.click("li.lm-Menu-item:has-text('Run All Cells')")
            page.wait_for_function(  # every code cell has run: no "[*]" and no "[ ]" left
                "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];"
                " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
                timeout=180_000, polling=500)
            film = page.locator(".acceptlab-film")
            assert film.count() == 1, "the film's output is not on the page"
            film.evaluate("node => node.closest('.jp-Cell').scrollIntoView()")
            page.wait_for_timeout(1000)
            picture = film.locator("img.acceptlab-film-frame")
            box = picture.bounding_box()
            assert box is not None and box["height"] > 100, (
                f"after Run All the film's picture is {box and box['height']} px high: "
                "the learner sees only the buttons")
            counter = film.locator(".acceptlab-film-counter")
            assert counter.inner_text().startswith("step 1 of")
            film.locator("button[data-action=play]").click()  # one real mouse click
            page.wait_for_function(
                "node => !node.textContent.startsWith('step 1 of')", arg=counter.element_handle(),
                timeout=15_000)
            assert picture.bounding_box()["height"] == pytest.approx(box["height"], abs=1), \
                "the picture changed size when played: the buttons moved under the pointer"
        except Exception:  # what the learner would have seen, for a person to look at
            (ROOT / "build").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "build" / "film-lab-failure.png"))
            raise
        finally:
            browser.close()
