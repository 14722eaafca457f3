"""The servers under test, as child processes we start and stop by PID; ports on 127.0.0.1.

Every server here is a child that prints one JSON line, ``{"port": P, "pids":
[...]}``, once it listens, and stops on SIGTERM.  :class:`ChildServer` holds
that handshake once: a child that dies, or prints anything else first, is
stopped and reported, never left behind.  Its stderr goes to a temporary file
(a pipe nobody reads could fill and stall a busy server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import acceptlab

from . import PYTHON, ROOT


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None,
                  timeout: float = 5.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening: {err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
            time.sleep(0.02)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM,
                 timeout: float = 5.0) -> None:
    """Signal OUR child by its PID, wait, SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class ServerProcess:
    """What every server under test shares: started and stopped by a ``with`` block, one URL."""

    port: int

    def start(self) -> "ServerProcess":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class ChildServer(ServerProcess):
    """A server run by this Python as our child (``args``: e.g. ``["-m", "bench.kit_server"]``).

    ``src`` puts that directory first on the child's PYTHONPATH (a patched copy
    of the kit); otherwise the child imports the same acceptlab as this process.
    ``prefix`` runs the Python under another program (``valgrind ...``), which
    must run it in the same process (its PID is then the child's).
    """

    def __init__(self, args: list[str], label: str, src: str | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        self.cmd = [*prefix, PYTHON, *args]
        self.label = label
        self.src = src or str(Path(acceptlab.__file__).resolve().parents[1])
        self.process: subprocess.Popen | None = None
        self._stderr = None
        self.port = 0
        self.pids: list[int] = []

    def start(self) -> "ChildServer":
        path = os.pathsep.join(p for p in (self.src, os.environ.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile(prefix="acceptlab-bench-stderr-")
        # cwd=ROOT: ``python -m`` puts it on the child's path, so ``bench`` imports as a package
        self.process = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self._stderr, cwd=ROOT,
                                        env=dict(os.environ, PYTHONPATH=path))
        try:
            line = self.process.stdout.readline()
            try:
                info = json.loads(line) if line else None
            except ValueError:
                info = None
            if not isinstance(info, dict) or "port" not in info or "pids" not in info:
                what = f"printed {line.decode(errors='replace').strip()[:200]!r}" if line \
                    else "exited"
                raise RuntimeError(f"{self.label} did not start: it {what} instead of its "
                                   f"port and PIDs; stderr: {self._stop_and_read_stderr()}")
            self.port, self.pids = info["port"], info["pids"]
        except BaseException:
            self.stop()
            raise
        return self

    def _stop_and_read_stderr(self) -> str:
        """Stop the child (so nothing more is written), then what it said on stderr."""
        stop_process(self.process)
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-500:]

    def worker_pids(self) -> list[int]:
        """The processes whose CPU time counts as the server's."""
        return self.pids

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()


class KitServer(ChildServer):
    """``bench/kit_server.py``: a WorkerPool as ``acceptlab serve`` builds it, in a child process.

    The event logs go to a temporary directory (or ``log_dir``, kept for the caller).
    """

    def __init__(self, workers: int = 2, kind: str = "process", strategy: str = "blocking",
                 protocol: str = "http", record: bool = True, log_dir: str | None = None,
                 src: str | None = None, label: str | None = None) -> None:
        self.workers, self.kind, self.record = workers, kind, record
        self.own_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="acceptlab-bench-")
        args = ["-m", "bench.kit_server", "--workers", str(workers), "--kind", kind,
                "--strategy", strategy, "--protocol", protocol, "--log-dir", self.log_dir]
        log = "log on" if record else "log off"
        super().__init__(args + ([] if record else ["--no-record"]),
                         label or f"kit ({workers} {kind}es, {log})", src)

    def worker_pids(self) -> list[int]:
        """Worker processes (process kind), or the one server process (thread kind)."""
        return self.pids if self.kind == "process" else [self.process.pid]

    def stop(self) -> None:
        super().stop()
        if self.own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)


class MinimalServer(ChildServer):
    """``bench/minimal_server.py``: the floor for a Python blocking-accept server."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(["-m", "bench.minimal_server", str(workers)],
                         f"minimal Python ({workers} processes)")
