"""`make lab` in a classroom: it starts as root (containers), takes extra options, and offers RISE.

The Makefile's own recipe is run (on a scratch folder, so nothing is installed and the real
notebooks are untouched) with ``LAB_ARGS`` choosing the port, a token and no browser.  The
server must answer on 127.0.0.1, list the ``jupyterlab-rise`` extension (RISE: "Render as
slideshow", to present a notebook live), and it is stopped again by its process group.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from makefile import BIN, make_command
START_TIMEOUT = 90.0  # seconds for JupyterLab to answer on a busy two-core machine
ROOT_REFUSAL = "Running as root is not recommended"

pytestmark = [pytest.mark.system,
              pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


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


def test_make_lab_serves_with_rise(tools: None, tmp_path: Path) -> None:
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    lab_args = (f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0 "
                f"--IdentityProvider.token={token}")
    log_path = tmp_path / "lab.log"
    with log_path.open("w") as log:
        lab = subprocess.Popen(make_command(tmp_path, "lab", lab_args), stdout=log,
                               stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        status = None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                status, _ = _get(f"{base}/api/status?token={token}")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        log_text = log_path.read_text(errors="replace")
        assert ROOT_REFUSAL not in log_text, log_text[-2000:]
        assert status == 200, (f"JupyterLab did not answer on {base} within {START_TIMEOUT:.0f} s "
                               f"(exit {lab.poll()}):\n{log_text[-2000:]}")
        status, body = _get(f"{base}/lab/api/extensions?token={token}")
        assert status == 200, status
        payload = json.loads(body)
        extensions = payload[0] if payload and isinstance(payload[0], list) else payload
        names = {extension.get("name") for extension in extensions}
        assert "jupyterlab-rise" in names, f"RISE is not among the lab's extensions: {names}"
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGTERM)  # make and the jupyter it started: our group
            try:
                lab.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(lab.pid, signal.SIGKILL)
                lab.wait(timeout=5)
