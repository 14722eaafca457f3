"""`make lab` in a classroom: it starts as root (containers), takes extra options, and offers RISE.

The Makefile's own recipe is run (on a scratch folder, so nothing is installed and the real
notebooks are untouched; tests/labserver.py) with ``LAB_ARGS`` choosing the port, a token and
no browser.  The server must answer on 127.0.0.1, list the ``jupyterlab-rise`` extension (RISE:
"Render as slideshow", to present a notebook live), use the kit's lab settings (no prompt about
Jupyter news), and it is stopped again by its process group, leaving nothing behind.
tests/test_jupyterlab.py drives the whole course through the same recipe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from labserver import LabServer
from makefile import BIN, make_command

ROOT_REFUSAL = "Running as root is not recommended"
NEWS_SETTINGS = "/lab/api/settings/@jupyterlab/apputils-extension:notification"

pytestmark = [pytest.mark.system,
              pytest.mark.timeout(180)]


@pytest.fixture
def tools() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed: `make lab` cannot be exercised")
    if not (BIN / "jupyter-lab").exists():
        pytest.skip(f"JupyterLab is not installed in {BIN} (pip install -e '.[notebooks]')")


def test_make_lab_adds_allow_root_only_for_root(tools: None, tmp_path: Path) -> None:
    shown = subprocess.run(make_command(tmp_path, "-n", "lab", "LAB_ARGS=--no-browser"),
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert "--no-browser" in shown
    assert ("--allow-root" in shown) == (os.getuid() == 0), shown


def test_make_lab_serves_with_rise_and_the_kits_settings(tools: None, tmp_path: Path) -> None:
    folder = tmp_path / "course"
    folder.mkdir()
    lab = LabServer.start(folder, tmp_path)
    try:
        assert ROOT_REFUSAL not in lab.log(), lab.log()[-2000:]
        status, body = lab.get("/lab/api/extensions")
        assert status == 200, status
        payload = json.loads(body)
        extensions = payload[0] if payload and isinstance(payload[0], list) else payload
        names = {extension.get("name") for extension in extensions}
        assert "jupyterlab-rise" in names, f"RISE is not among the lab's extensions: {names}"
        status, body = lab.get(NEWS_SETTINGS)
        assert status == 200, status
        defaults = json.loads(body)["schema"]["properties"]
        assert defaults["fetchNews"]["default"] == "false", (
            "tools/lab-settings/overrides.json no longer answers JupyterLab's news prompt")
        assert defaults["checkForUpdates"]["default"] is False
    finally:
        leftovers = lab.stop()
    assert not leftovers, f"processes outlived `make lab`: {leftovers}"
