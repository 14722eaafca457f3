"""`make lab` started for a test: the Makefile's own recipe on a copy of the course, and stopped again.

    lab = LabServer.start(course_copy, scratch)   # make -f <repo>/Makefile -C course_copy lab ...
    lab.contents("docs/sources.md")               # (status, model) from the contents API
    leftovers = lab.stop()                        # [] when no kernel and no worker outlived it

The recipe runs with ``LAB_ARGS`` choosing a free loopback port, a token and no browser, in its
own session and process group.  JupyterLab's own folders (config, runtime, workspaces, user
settings, data) are fresh folders under ``scratch``, so neither the user's settings nor their
kernels change what the test sees, and nothing is written to their home.

What outlives the lab is found from what ran under it: a watcher samples ``/proc`` every
``SAMPLE_SECONDS`` and records every descendant of ``make`` (the server, each kernel, each
kernel's workers) and every session they belong to (jupyter_client starts each kernel in a
session of its own, which its workers inherit).  After the stop, any process still alive in
one of those sessions, or any recorded process still alive (same PID, same start time), is a
leftover: :meth:`LabServer.stop` lists them, then ends them by PID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from makefile import ROOT, make_command

START_TIMEOUT = 90.0  # seconds for JupyterLab to answer on a busy two-core machine
STOP_TIMEOUT = 30.0  # seconds for the server to shut its kernels down and exit after SIGTERM
SAMPLE_SECONDS = 0.25
PRINTED_URL = re.compile(r"(http://127\.0\.0\.1:\d+/\S*)\?token=\.\.\.")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What a fresh clone does not have: the virtual environment, git's store, what builds and runs wrote.
NOT_IN_A_CLONE = shutil.ignore_patterns(".venv", ".git", "build", "out", "__pycache__",
                                        ".pytest_cache", ".hypothesis", "*.egg-info",
                                        ".ipynb_checkpoints")


def copy_course(destination: Path) -> Path:
    """A copy of the repository as a clone has it, so that a lab may run and save its lessons."""
    shutil.copytree(ROOT, destination, ignore=NOT_IN_A_CLONE, symlinks=True)
    return destination


# -- /proc ---------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent PID, session id, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent's wait is missing
    return int(fields[1]), int(fields[3]), int(fields[19])


def _processes() -> dict[int, tuple[int, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


class _Watcher(threading.Thread):
    """Records every descendant of ``root`` and their sessions until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True, name="lab-process-watcher")
        self.root = root
        self.seen: dict[int, int] = {}  # pid -> start time
        self.sessions: set[int] = {root}
        self.commands: dict[int, str] = {}
        self._halt = threading.Event()

    def sample(self) -> None:
        table = _processes()
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in table.items():
            children.setdefault(parent, []).append(pid)
        todo = list(children.get(self.root, []))
        while todo:
            pid = todo.pop()
            _, session, started = table[pid]
            if pid not in self.seen:
                self.commands[pid] = _command_line(pid)
            self.seen[pid] = started
            self.sessions.add(session)
            todo.extend(children.get(pid, []))

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_SECONDS):
            self.sample()

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def alive(self) -> list[int]:
        """Recorded processes, and processes of the recorded sessions, that are still running."""
        me = os.getpid()
        table = _processes()
        return sorted(pid for pid, (_, session, started) in table.items()
                      if pid != me and (session in self.sessions
                                        or self.seen.get(pid) == started))


# -- the server ----------------------------------------------------------------------------------

@dataclass
class LabServer:
    """One running `make lab`; ``base`` is ``http://127.0.0.1:PORT``."""

    process: subprocess.Popen
    base: str
    token: str
    folder: Path
    log_path: Path
    printed_url: str = ""  # the address the server printed, token in place (what a learner opens)
    watcher: _Watcher | None = None
    stopped: bool = field(default=False)

    @classmethod
    def start(cls, folder: Path, scratch: Path, *, extra_args: str = "") -> "LabServer":
        """Run ``make lab`` on ``folder`` (a copy of the course) and wait until it answers.

        Raises:
            AssertionError: the server did not answer within START_TIMEOUT (its log attached).
        """
        port, token = free_port(), secrets.token_hex(16)
        env = {**os.environ}
        for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                          ("JUPYTER_DATA_DIR", "data"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                          ("JUPYTERLAB_SETTINGS_DIR", "user-settings"), ("IPYTHONDIR", "ipython")):
            (scratch / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(scratch / sub)
        lab_args = (f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0 "
                    f"--IdentityProvider.token={token} {extra_args}").strip()
        log_path = scratch / "lab.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(make_command(folder, "lab", lab_args), stdout=log,
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)
        lab = cls(process, f"http://127.0.0.1:{port}", token, folder, log_path)
        lab.watcher = _Watcher(process.pid)
        lab.watcher.start()
        deadline = time.monotonic() + START_TIMEOUT
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _ = lab.get("/api/status")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        if status != 200:
            lab.stop()
            raise AssertionError(f"`make lab` did not answer on {lab.base} within "
                                 f"{START_TIMEOUT:.0f} s (exit {process.poll()}):\n{lab.log()[-2000:]}")
        printed = PRINTED_URL.search(lab.log())
        if printed:
            lab.printed_url = f"{printed.group(1)}?token={token}"
        return lab

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` from the server with the token; (status, body)."""
        request = urllib.request.Request(self.base + path,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=15) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    def contents(self, path: str, *, content: bool = False) -> tuple[int, dict]:
        """The contents API's model of ``path`` (relative to the server's root)."""
        quoted = urllib.parse.quote(path)
        status, body = self.get(f"/api/contents/{quoted}?content={int(content)}")
        return status, (json.loads(body) if status == 200 else {})

    def stop(self) -> list[str]:
        """Stop the server (SIGTERM to make's process group: the server shuts its kernels down).

        Returns the processes that outlived it ("PID command"), after ending them by PID.
        """
        if self.stopped:
            return []
        self.stopped = True
        assert self.watcher is not None
        self.watcher.sample()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # make and the server it started
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        deadline = time.monotonic() + STOP_TIMEOUT  # the server may still be shutting kernels
        while self.watcher.alive() and time.monotonic() < deadline:
            time.sleep(0.25)
        self.watcher.halt()
        leftovers = self.watcher.alive()
        described = [f"{pid} {self.watcher.commands.get(pid) or _command_line(pid)}"
                     for pid in leftovers]
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return described
