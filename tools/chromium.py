"""Headless Chromium, the one way the kit drives it: for the handout's PDF and the browser tests.

    from chromium import find_chromium, run_chromium
    run_chromium(find_chromium(), "--print-to-pdf=out.pdf", "file:///.../page.html")

Each call is a self-contained browser: a throwaway profile, no background network services
(updates, sync, accounts), no proxy, and every host name but 127.0.0.1 left unresolved, so a
page can load only files and loopback.  Chromium is ``chromium`` on the PATH (Debian's package)
or ``$ACCEPTLAB_CHROMIUM``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSER_TIMEOUT = 60  # seconds one Chromium run may take

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--hide-scrollbars",
]

__all__ = ["BROWSER_TIMEOUT", "CHROMIUM_FLAGS", "ChromiumFailed", "find_chromium", "run_chromium"]


class ChromiumFailed(RuntimeError):
    """Chromium exited with an error; the message ends with what it wrote to stderr."""


def find_chromium() -> str | None:
    """The Chromium binary to drive (``$ACCEPTLAB_CHROMIUM``, else ``chromium``), or None."""
    binary = os.environ.get("ACCEPTLAB_CHROMIUM") or shutil.which("chromium")
    return binary if binary and Path(binary).exists() else None


def run_chromium(binary: str, *args: str, profile: Path | None = None,
                 timeout: float = BROWSER_TIMEOUT) -> subprocess.CompletedProcess:
    """Run one headless Chromium with ``args``; return the finished process (stdout as text).

    Args:
        binary: the Chromium executable (``find_chromium()``).
        *args: what to do: ``--dump-dom URL``, ``--screenshot=FILE URL``, ...
        profile: a fresh, empty folder for the browser's profile; None makes and removes one.
        timeout: seconds the browser may take.

    Raises:
        ChromiumFailed: the browser exited with an error.
    """
    with tempfile.TemporaryDirectory(prefix="acceptlab-chromium-") as scratch:
        data = profile if profile is not None else Path(scratch)
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={data}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ChromiumFailed(f"chromium {' '.join(args)} exited with {done.returncode}:\n"
                             f"{done.stderr[-2000:]}")
    return done
