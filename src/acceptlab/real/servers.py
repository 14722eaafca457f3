"""Real servers on demand: gunicorn, uvicorn, uWSGI, nginx and Node's cluster, on a free
loopback port.

Why: the questions users ask ("why does one gunicorn worker take most of the
load?") are about servers the kit did not write.  To look at them with the same
lens (:mod:`acceptlab.real.topology`, :mod:`acceptlab.real.observe`) a lesson or a test
needs one running, configured one way, for a few seconds, and then gone.

:func:`real_server` is that context manager::

    with real_server("gunicorn-sync", workers=4) as server:
        print(server.address, server.pid, server.workers)
        ...                                  # inspect it, fire at it
    # every process it started is gone and the port is free again

Each server runs a one-line app written for the kit (the reply is ``pid N``:
:mod:`acceptlab.real.apps.pidapp` for gunicorn, uvicorn and uWSGI, ``servers/cluster.js``
for Node, a ``return 200`` in ``servers/nginx.conf.template`` for nginx).

Resource handling: the server starts in a new session (its own process
group) and stopping it signals that group, SIGTERM then SIGKILL, and waits
until every process of it has gone.  A small guard process watches the
Python process that started the server; if that one dies without stopping it
(a notebook kernel restarted or killed), the guard stops the group.

A server that is not installed raises :class:`ServerMissing` with a one-line
reason; the lessons then read its reference run from ``data/real-NAME/``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Callable

from ..linux import procfs
from ..basics import show_address
from ..linux.support import Unavailable

__all__ = ["SERVERS", "PYTHON_PACKAGES", "ServerSpec", "RealServer", "ServerMissing", "PortTaken",
           "real_server", "missing_reason", "reference_run_path", "recorded_command"]


class ServerMissing(Unavailable):
    """The server is not installed here (the message says how to install it)."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one configuration of a real server.

    ``program`` says what must be installed (``gunicorn``/``uvicorn``/``uwsgi``: a
    Python package, :data:`PYTHON_PACKAGES`; ``nginx``/``node``: a command);
    ``options`` the configuration
    (recorded in a run's ``meta.json``); ``install`` the one-line fix.
    """

    name: str
    program: str
    options: dict
    install: str
    description: str


_PIP = "pip install 'acceptlab[servers]'"
_SLOW_FILE = "slow_ms"  # in the server's directory: the app reads each request's wait from it
_APT_NGINX = "apt-get install nginx-light"
_APT_NODE = "apt-get install nodejs"
PYTHON_PACKAGES = {"gunicorn": "gunicorn", "uvicorn": "uvicorn", "uwsgi": "pyuwsgi"}
"""The servers that are Python packages: program -> the module to import (uWSGI is the
``pyuwsgi`` wheel: uWSGI built as a Python extension, no compiler needed)."""
SERVERS: dict[str, ServerSpec] = {spec.name: spec for spec in (
    ServerSpec("gunicorn-sync", "gunicorn", {"worker_class": "sync"}, _PIP,
               "gunicorn, sync workers: each waits in select() on the shared socket"),
    ServerSpec("gunicorn-gthread", "gunicorn", {"worker_class": "gthread", "threads": 4}, _PIP,
               "gunicorn, gthread workers: a selector on the shared socket, a thread pool"),
    ServerSpec("uvicorn", "uvicorn", {"workers_flag": True}, _PIP,
               "uvicorn --workers: asyncio event loops on one inherited socket"),
    ServerSpec("uwsgi", "uwsgi", {"thunder_lock": False}, _PIP,
               "uWSGI's preforking default: every worker in epoll_wait() on the shared socket, "
               "which has TCP_DEFER_ACCEPT"),
    ServerSpec("uwsgi-thunder-lock", "uwsgi", {"thunder_lock": True}, _PIP,
               "uWSGI --thunder-lock: one worker waits for the socket, the others queue on a "
               "process-shared PI futex (its robust pthread lock)"),
    ServerSpec("nginx", "nginx", {"accept_mutex": "off", "reuseport": False}, _APT_NGINX,
               "nginx's default: accept_mutex off, EPOLLEXCLUSIVE"),
    ServerSpec("nginx-accept-mutex", "nginx", {"accept_mutex": "on", "reuseport": False},
               _APT_NGINX, "nginx with accept_mutex on: one worker at a time listens"),
    ServerSpec("nginx-reuseport", "nginx", {"accept_mutex": "off", "reuseport": True},
               _APT_NGINX, "nginx with listen ... reuseport: a socket per worker"),
    ServerSpec("node-rr", "node", {"schedulingPolicy": "SCHED_RR"}, _APT_NODE,
               "Node's cluster, SCHED_RR: the primary accepts and hands out in turn"),
    ServerSpec("node-none", "node", {"schedulingPolicy": "SCHED_NONE"}, _APT_NODE,
               "Node's cluster, SCHED_NONE: every worker accepts on the shared socket"),
)}


def missing_reason(name: str) -> str | None:
    """Why server ``name`` cannot start here (one line), or None if it can."""
    spec = _spec(name)
    if not sys.platform.startswith("linux"):
        return f"{name}: the real servers run on Linux only (this is {sys.platform})"
    if spec.program in PYTHON_PACKAGES:
        found = importlib.util.find_spec(PYTHON_PACKAGES[spec.program]) is not None
    else:
        found = _command(spec.program) is not None
    return None if found else f"{name}: {spec.program} is not installed ({spec.install})"


def reference_run_path(name: str, load: str, *, data: str | os.PathLike | None = None) -> Path:
    """Where the reference run of server ``name`` under ``load`` lives: ``data/real-NAME-LOAD``."""
    root = Path(data) if data is not None else Path(__file__).resolve().parents[2] / "data"
    return root / f"real-{name}-{load}"


def _spec(name: str) -> ServerSpec:
    try:
        return SERVERS[name]
    except KeyError:
        raise ValueError(f"unknown server {name!r}; choose one of {', '.join(SERVERS)}") from None


def _command(program: str) -> str | None:
    """The path of ``program`` (node is ``nodejs`` on some systems; nginx lives in sbin)."""
    names = ("node", "nodejs") if program == "node" else (program,)
    for candidate in names:
        path = shutil.which(candidate) or shutil.which(candidate, path="/usr/sbin:/sbin")
        if path:
            return path
    return None


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class RealServer:
    """A real server the kit started: where it listens, its master's pid, and how to stop it."""

    name: str
    address: tuple[str, int]
    expected_workers: int
    process: subprocess.Popen
    directory: Path
    version: str
    config: dict
    _guard: subprocess.Popen | None = field(default=None, repr=False)
    _log: object = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The master (the process to inspect)."""
        return self.process.pid

    @property
    def workers(self) -> list[int]:
        """The worker processes' pids, as :mod:`acceptlab.real.topology` finds them."""
        from .topology import topology

        return topology(self.pid).workers

    def meta(self) -> dict:
        """What a run's ``meta.json`` records about this server."""
        return {"server": self.name, "server_version": self.version,
                "server_config": dict(self.config), "server_pid": self.pid,
                "address": show_address(*self.address)}

    @property
    def slow_ms(self) -> float:
        """Milliseconds every reply waits now (0: none)."""
        return float(self.config.get("slow_ms", 0))

    def set_slow(self, milliseconds: float, *, settle: float = 0.1) -> None:
        """Make every reply wait ``milliseconds`` from now on (0: none), without a restart.

        The app re-reads the setting at most every 50 ms, hence ``settle``.
        nginx's reply is nginx's own and cannot be slowed (``ValueError``).

        Args:
            milliseconds: the wait per request.
            settle: seconds to wait until every worker has seen it.
        """
        if milliseconds and SERVERS[self.name].program == "nginx":
            raise ValueError(f"{self.name}: nginx's one-line reply cannot be slowed down here")
        staged = self.directory / (_SLOW_FILE + ".new")
        staged.write_text(f"{milliseconds:g}")
        staged.replace(self.directory / _SLOW_FILE)  # atomic: a reader sees old or new
        self.config["slow_ms"] = milliseconds
        time.sleep(settle)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the server wrote (stdout and stderr together)."""
        try:
            text = (self.directory / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def group(self) -> list[int]:
        """Every live process of the server's process group (the master's session).

        A zombie (exited, waiting for its new parent, init, to collect it) no
        longer runs or holds a socket, so it is not counted.
        """
        members = []
        for pid in procfs.process_ids():
            try:
                if os.getpgid(pid) == self.process.pid and procfs.process_state(pid) != "Z":
                    members.append(pid)
            except OSError:
                continue
        return members

    def stop(self, *, timeout: float = 1.0) -> None:
        """Stop the server and every process of its group; wait until all are gone.

        SIGTERM first (each server stops its workers itself), SIGKILL to
        whatever is left after ``timeout`` seconds (a lesson's server has no
        requests worth a longer grace).  Safe to call twice.

        Args:
            timeout: seconds of grace after SIGTERM, and again after SIGKILL.
        """
        if self._guard is not None:  # we stop it ourselves: the guard may go
            _release_guard(self._guard)
            self._guard = None
        if self.process.returncode is None or self.group():
            _signal_group(self.process.pid, signal.SIGTERM)
            if not _wait_gone(self, timeout):
                _signal_group(self.process.pid, signal.SIGKILL)
                _wait_gone(self, timeout)
        if self.process.returncode is None:
            self.process.wait(timeout)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        _remove_folder(self.directory, lambda: bool(self.group()), _FOLDER_GRACE)

    def __enter__(self) -> "RealServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_FOLDER_GRACE = 5.0  # seconds a killed server's last processes may take to go, on a crowded machine


def _remove_folder(directory: Path, alive: Callable[[], bool], timeout: float) -> None:
    """Remove the server's folder, and again while it reappears or its processes are still
    going (up to ``timeout`` seconds): a server killed a moment ago on a crowded machine may
    still write in it (nginx's temporary folders, gunicorn's files in its working folder)."""
    deadline = time.monotonic() + timeout
    shutil.rmtree(directory, ignore_errors=True)
    while (directory.exists() or alive()) and time.monotonic() < deadline:
        time.sleep(0.05)
        shutil.rmtree(directory, ignore_errors=True)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _wait_gone(server: RealServer, timeout: float) -> bool:
    """Reap the master and wait until the group is empty; True if it emptied in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.process.poll()
        if not server.group():
            return True
        time.sleep(0.02)
    return False


# The guard: a separate process that reads a pipe from us.  "stop" on the pipe: we stop the
# server ourselves, it just exits.  End of file without it: we died, so it stops the group
# and removes the server's directory.
_GUARD = """
import os, shutil, signal, sys, time
group, directory = int(sys.argv[1]), sys.argv[2]
if sys.stdin.readline().strip() != "stop":
    for signum, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0)):
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    shutil.rmtree(directory, ignore_errors=True)
"""


def _start_guard(group: int, directory: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _GUARD, str(group), str(directory)],
                            stdin=subprocess.PIPE, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _release_guard(guard: subprocess.Popen) -> None:
    try:
        guard.stdin.write(b"stop\n")  # type: ignore[union-attr]
        guard.stdin.close()  # type: ignore[union-attr]
    except OSError:
        pass
    try:
        guard.wait(5)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment, with this copy of the kit importable by the server's Python."""
    package_root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, **extra,
            "PYTHONPATH": package_root + (os.pathsep + path if path else "")}


def _version(program: str) -> str:
    if program in PYTHON_PACKAGES:
        return f"{program} {metadata.version(PYTHON_PACKAGES[program])}"
    command = _command(program)
    flag = "-v" if program == "nginx" else "--version"
    done = subprocess.run([command, flag], capture_output=True, text=True, timeout=10)
    text = (done.stdout + done.stderr).strip()
    return f"{program} {text.rpartition('/')[2] if program == 'nginx' else text.lstrip('v')}"


def _command_line(spec: ServerSpec, host: str, port: int, workers: int,
                  directory: Path) -> tuple[list[str], dict[str, str], dict]:
    """The command, environment and recorded configuration for one start."""
    slow = {"ACCEPTLAB_SLOW_FILE": str(directory / _SLOW_FILE)}
    bind = show_address(host, port)
    if spec.program == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers),
                   "--worker-class", spec.options["worker_class"], "--graceful-timeout", "2",
                   "--log-level", "warning"]
        if "threads" in spec.options:
            command += ["--threads", str(spec.options["threads"])]
        command.append("acceptlab.real.apps.pidapp:wsgi")
        return command, _python_env(slow), {**spec.options, "workers": workers}
    if spec.program == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
                   "--workers", str(workers), "--log-level", "warning", "--no-access-log",
                   "--timeout-graceful-shutdown", "2", "acceptlab.real.apps.pidapp:asgi"]
        return command, _python_env(slow), {"workers": workers}
    if spec.program == "uwsgi":
        # --http-socket: uWSGI's workers speak HTTP on the shared socket themselves (no router
        # process); --die-on-term: SIGTERM stops it (uWSGI 2.0 reloads on SIGTERM otherwise).
        script = Path(sys.executable).with_name("uwsgi")  # pyuwsgi's console script, if here
        launcher = [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-c",
                                                                     _PYUWSGI_MAIN]
        command = [*launcher, "--http-socket", bind,
                   "--processes", str(workers), "--master", "--die-on-term", "--need-app",
                   "--disable-logging", "--module", "acceptlab.real.apps.pidapp:wsgi"]
        if spec.options["thunder_lock"]:
            command.append("--thunder-lock")
        return command, _python_env(slow), {**spec.options, "workers": workers}
    if spec.program == "nginx":
        template = resources.files("acceptlab.real.apps").joinpath("nginx.conf.template")
        config = string.Template(template.read_text()).substitute(
            workers=workers, directory=directory, accept_mutex=spec.options["accept_mutex"],
            listen=bind, reuseport=" reuseport" if spec.options["reuseport"] else "",
            # as root, workers would become "nobody"; keep them the starter's, readable by them
            user="user root root;" if os.geteuid() == 0 else "")
        (directory / "nginx.conf").write_text(config)
        command = [_command("nginx"), "-p", str(directory), "-c", str(directory / "nginx.conf"),
                   "-e", str(directory / "error.log")]
        return command, dict(os.environ), {**spec.options, "workers": workers,
                                            "worker_connections": 1024}
    script = resources.files("acceptlab.real.apps").joinpath("cluster.js")
    policy = "rr" if spec.options["schedulingPolicy"] == "SCHED_RR" else "none"
    env = {**os.environ, **slow, "ACCEPTLAB_POLICY": policy, "ACCEPTLAB_WORKERS": str(workers),
           "ACCEPTLAB_HOST": host, "ACCEPTLAB_PORT": str(port)}
    return [_command("node"), str(script)], env, {**spec.options, "workers": workers}


# uWSGI from the pyuwsgi wheel: what its `uwsgi` console script runs, with this Python.
_PYUWSGI_MAIN = "import sys; from pyuwsgi import run; sys.argv[0] = 'uwsgi'; sys.exit(run())"


def _http_ok(address: tuple[str, int]) -> bool:
    from ..client.load import one_connection
    from ..server.protocol import HTTP

    return one_connection(address, HTTP, timeout=1.0).ok


def _wait_ready(server: RealServer, timeout: float,
                ready: Callable[[RealServer], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start (code {server.process.returncode}): "
                               f"{server.log_tail(1) or 'no output'}")
        if ready(server):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} was not ready within {timeout:g} s: "
                       f"{server.log_tail(1) or 'no output'}")


def _all_workers_up(server: RealServer) -> bool:
    """Answers HTTP, and as many workers as asked for are there and waiting for connections."""
    from .topology import settled_topology

    if not _http_ok(server.address):
        return False
    try:
        found = settled_topology(server.pid, tries=4)
    except ProcessLookupError:
        return False
    return len(found.workers) == server.expected_workers and found.strategy is not None


def real_server(name: str, *, workers: int = 4, host: str = "127.0.0.1", port: int = 0,
                slow_ms: float = 0.0, timeout: float = 20.0) -> RealServer:
    """Start real server ``name`` and return it once it answers; use it in a ``with`` block.

    Args:
        name: one of :data:`SERVERS` (``gunicorn-sync``, ``gunicorn-gthread``,
            ``uvicorn``, ``uwsgi``, ``uwsgi-thunder-lock``, ``nginx``,
            ``nginx-accept-mutex``, ``nginx-reuseport``, ``node-rr``, ``node-none``).
        workers: worker processes to start.
        host: a loopback address (the kit loads only this machine).
        port: 0 picks a free one.
        slow_ms: every reply waits this long first (not for nginx); change it
            later with :meth:`RealServer.set_slow`.
        timeout: seconds to wait until it answers HTTP with all its workers up.

    Raises:
        ServerMissing: it is not installed (one line, with the fix).
        RuntimeError: it exited or was not ready in time (its last log line).
    """
    spec = _spec(name)
    reason = missing_reason(name)
    if reason:
        raise ServerMissing(reason)
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"{host} is not a loopback address: real servers listen on "
                         "127.0.0.1 or ::1")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if slow_ms and spec.program == "nginx":
        raise ValueError(f"{name}: nginx's one-line reply cannot be slowed down here")
    host = "127.0.0.1" if host == "localhost" else host
    version = _version(spec.program)
    for attempt in range(3):  # a free port can be taken by someone else before the server binds
        try:
            return _start(spec, host, port or _free_port(host), workers, slow_ms, timeout,
                          version)
        except PortTaken:
            if port or attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The server could not bind its port (someone took it)."""


def _start(spec: ServerSpec, host: str, port: int, workers: int, slow_ms: float,
           timeout: float, version: str) -> RealServer:
    """One attempt: start the server in a session of its own, guard it, wait until it is ready."""
    directory = Path(tempfile.mkdtemp(prefix=f"acceptlab-{spec.name}-"))
    try:
        command, env, config = _command_line(spec, host, port, workers, directory)
        (directory / _SLOW_FILE).write_text(f"{slow_ms:g}")
        log = open(directory / "server.log", "wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   cwd=directory)
    except BaseException:  # nothing started: only the directory to remove
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server = RealServer(spec.name, (host, port), workers, process, directory, version,
                        {**config, "slow_ms": slow_ms, "command": recorded_command(" ".join(command))},
                        None, log)
    try:
        server._guard = _start_guard(process.pid, directory)
        _wait_ready(server, timeout, _all_workers_up)
    except BaseException:
        said = server.log_tail(200).lower()  # EADDRINUSE, in each server's own words
        taken = "in use" in said or "eaddrinuse" in said
        server.stop()
        if taken:
            raise PortTaken(f"{spec.name}: port {port} is taken") from None
        raise
    return server


def recorded_command(command: str) -> str:
    """A command line as a run's meta records it: where this machine keeps its files is no
    part of it.  Each absolute path is cut to the program's name (``/usr/sbin/nginx`` ->
    ``nginx``, a virtual environment's python -> ``python``), or, for the kit's own files
    and temporary folders, to the path from their ``acceptlab`` name on."""
    def short(part: str) -> str:
        if not part.startswith("/"):
            return part
        kit = re.search(r"/(acceptlab[-/].*)$", part)
        return kit.group(1) if kit else part.rsplit("/", 1)[-1]
    return " ".join(short(part) for part in command.split(" "))
