"""A real JupyterHub on loopback, students with their own servers, and lessons run remotely.

Used by ``tests/test_hub.py`` (a class of four runs lessons 02 and 05 at once) and by
``bench/bench_class.py`` (1 to 16 students run 02, 05 and 06).  Everything a browser would
do goes through the hub's proxy, as in a classroom:

    with Hub(tmp_path, users=["s1", "s2"]) as hub:      # hub + configurable-http-proxy
        student = hub.start_server("s1")                 # POST /hub/api/users/s1/server
        result = run_lesson(student, Path("notebooks/02_many_workers_one_socket.ipynb"))
        print(result.seconds, result.error, result.probe["runs"])

* **The hub**: ``jupyterhub`` (PyPI) with the dummy authenticator and
  ``SimpleLocalProcessSpawner``: every student's Jupyter server runs as the user who
  started the hub, in a home folder of its own under the hub's temporary directory
  (``home/NAME``, holding a copy of the lessons and a link to ``data/``).  One system
  user for everyone is the *hardest* case for isolation: the same ``/tmp``, the same
  tracefs, the same right to signal each other's processes.  The hub listens on
  127.0.0.1 only; its proxy is ``configurable-http-proxy`` from npm, installed once into
  ``build/.npm-hub`` (:func:`find_proxy`, :func:`install_node_tools`).
* **A lesson in a student's server**: a session is created through the student's
  Jupyter server's REST API (``POST /user/NAME/api/sessions``, which starts a kernel
  whose working directory is the notebook's folder), and each code cell is sent over the
  kernel's websocket (``/api/kernels/ID/channels``), the way JupyterLab sends it.
  ``jupyter_client``'s ``Session`` builds the messages and ``nbformat`` turns the replies
  into notebook outputs; ``websocket-client`` speaks the websocket.  (jupyter_server's
  own remote-kernel client, the "gateway" client, is one process-wide singleton that
  sends no credentials on its websocket and starts kernels without a path, so it cannot
  serve several students from one process.)
* **What a lesson made**: after the notebook, one more cell (:data:`PROBE`) runs in the
  same kernel and reports every run the lesson made *live* (recorded runs loaded from
  ``data/`` are older than the lesson and left out): its port, its workers' pids, the
  tids it traced, whether its events reconcile with its own clients
  (``analysis.reconcile``: an accepted connection from someone else's client would be a
  stray), and the figures the class benchmark compares.

Only processes this module started are stopped, by pid: the hub (which stops its proxy
and the students' servers, which stop their kernels, whose workers notice and exit).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import PYTHON, ROOT

# From npm, into a folder of the repository's own (never globally), one command for both so
# that npm keeps both: the hub's proxy, and the browser driver of the demo-link test.
NODE_PACKAGES = {"configurable-http-proxy": "5.3.0", "playwright-core": "1.65.2"}
NPM_CACHE = ROOT / "build" / ".npm-hub"
CELL_TIMEOUT = 600.0  # seconds one cell may take before the lesson counts as failed (a hang guard)
START_TIMEOUT = 180.0  # seconds a student's server may take to start on a crowded machine

__all__ = ["Hub", "Student", "RemoteKernel", "LessonResult", "HubUnavailable", "find_proxy",
           "find_playwright", "install_node_tools", "run_lesson", "lessons", "PROBE"]


class HubUnavailable(RuntimeError):
    """Something the hub needs is missing here (jupyterhub, node, configurable-http-proxy)."""


# -- the proxy, from npm ---------------------------------------------------------------------------

def find_proxy(cache: Path = NPM_CACHE) -> str | None:
    """``configurable-http-proxy``: ``$ACCEPTLAB_CHP``, npm's copy in ``cache``, or the PATH."""
    for candidate in (os.environ.get("ACCEPTLAB_CHP"),
                      str(cache / "node_modules" / ".bin" / "configurable-http-proxy"),
                      shutil.which("configurable-http-proxy")):
        if candidate and Path(candidate).exists() and shutil.which("node"):
            return candidate
    return None


def find_playwright(cache: Path = NPM_CACHE) -> Path | None:
    """The npm package ``playwright-core`` in ``cache`` (for driving Chromium from node)."""
    package = cache / "node_modules" / "playwright-core"
    return package if (package / "package.json").exists() and shutil.which("node") else None


def install_node_tools(cache: Path = NPM_CACHE) -> str:
    """Install :data:`NODE_PACKAGES` with npm into ``cache`` unless there; return the proxy."""
    if find_proxy(cache) and find_playwright(cache):
        return find_proxy(cache)  # type: ignore[return-value]
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        found = find_proxy(cache)
        if found:
            return found
        raise HubUnavailable("npm and node are needed for the hub's proxy, configurable-http-"
                             "proxy (Debian: apt-get install npm), or set ACCEPTLAB_CHP")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save",
                           "--no-package-lock", "--loglevel=error", "--prefix", str(cache),
                           *(f"{name}@{version}" for name, version in NODE_PACKAGES.items())],
                          capture_output=True, text=True, timeout=600)
    found = find_proxy(cache)
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise HubUnavailable(f"npm could not install {', '.join(NODE_PACKAGES)}: {last}")
    return found


def lessons(*numbers: str, folder: Path = ROOT / "notebooks") -> list[Path]:
    """The lessons ``NN_*.ipynb`` of ``folder`` for each number ("02", "05"), by glob."""
    found = []
    for number in numbers:
        matches = sorted(folder.glob(f"{number}_*.ipynb"))
        if len(matches) != 1:
            raise FileNotFoundError(f"expected one notebooks/{number}_*.ipynb, found {matches}")
        found += matches
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- HTTP with a token ---------------------------------------------------------------------------

def _request(method: str, url: str, token: str, body: dict | None = None,
             timeout: float = 60.0) -> tuple[int, dict | list | None]:
    """One JSON request; returns (status, decoded body or None).  No proxy from the environment."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as reply:
            text = reply.read().decode()
            return reply.status, (json.loads(text) if text.strip() else None)
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"message": text[:300]}


# -- the hub ------------------------------------------------------------------------------------

CONFIG = """\
# Written by bench/hub.py: a throwaway JupyterHub on 127.0.0.1 for a simulated class.
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = {directory!r} + "/proxy.pid"
c.JupyterHub.pid_file = {directory!r} + "/hub.pid"
c.JupyterHub.db_url = "sqlite:///" + {directory!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {directory!r} + "/cookie_secret"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {directory!r} + "/home/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {args!r}
c.Spawner.start_timeout = {start_timeout}
c.Spawner.http_timeout = {start_timeout}
c.Spawner.environment = {environment!r}
c.JupyterHub.services = [{{"name": "classroom", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "classroom",
    "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", "access:servers"],
    "services": ["classroom"],
}}]
"""


@dataclass
class Student:
    """A user of the hub whose server is running: ``base`` is its URL through the proxy."""

    name: str
    base: str  # http://127.0.0.1:PORT/user/NAME/
    token: str  # the student's own API token
    server_pid: int | None  # the Jupyter server's pid, from the hub's server state
    home: Path

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        """A request to the student's own Jupyter server, with the student's token."""
        return _request(method, self.base + path.lstrip("/"), self.token, body)


class Hub:
    """A JupyterHub in ``directory`` on loopback, its proxy, and the users' servers.

    Args:
        directory: an empty folder of its own (config, database, the users' homes).
        users: the user names that may log in.
        proxy: the configurable-http-proxy command (found with :func:`find_proxy`).
        notebooks: the lessons' folder, copied into each home as ``notebooks/``.
        data: the reference runs, linked into each home as ``data``.
    """

    def __init__(self, directory: Path, *, users: list[str], proxy: str | None = None,
                 notebooks: Path = ROOT / "notebooks", data: Path = ROOT / "data") -> None:
        self.directory = Path(directory)
        self.users = list(users)
        self.proxy = proxy or find_proxy()
        if self.proxy is None:
            raise HubUnavailable("configurable-http-proxy is not installed "
                                 "(install_node_tools() puts it in build/.npm-hub with npm)")
        self.notebooks, self.data = notebooks, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "hub.log"

    # -- starting and stopping ------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> "Hub":
        """Write the config, start the hub, wait until its API answers."""
        if importlib.util.find_spec("jupyterhub") is None:
            raise HubUnavailable("jupyterhub is not installed (pip install 'acceptlab[hub]')")
        self.directory.mkdir(parents=True, exist_ok=True)
        as_root = os.geteuid() == 0
        environment = {"PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
                       "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        config = CONFIG.format(port=self.port, hub_port=free_port(), api_port=free_port(),
                               proxy=self.proxy, directory=str(self.directory), python=PYTHON,
                               args=["--allow-root"] if as_root else [],
                               start_timeout=int(START_TIMEOUT), environment=environment,
                               token=self.token)
        (self.directory / "jupyterhub_config.py").write_text(config)
        for user in self.users:
            self._make_home(user)
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "jupyterhub", "-f", str(self.directory / "jupyterhub_config.py")],
            cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # a Ctrl-C in the terminal is ours to handle, not the hub's
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubUnavailable(f"the hub exited with {self.process.returncode}: "
                                     f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = self.api("GET", "/")  # the version: needs no scope
                if status == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise HubUnavailable(f"the hub did not answer within {timeout:.0f} s: {self.log_tail()}")

    def _make_home(self, user: str) -> Path:
        home = self.directory / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.notebooks, home / "notebooks", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        with contextlib.suppress(FileExistsError):
            (home / "data").symlink_to(self.data, target_is_directory=True)
        return home

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every user's server through the API, then the hub (SIGTERM, by pid)."""
        if self.process is None or self.process.poll() is not None:
            return
        for user in self.users:
            with contextlib.suppress(OSError):
                self.stop_server(user, timeout=timeout)
        self.process.send_signal(signal.SIGTERM)  # the hub stops its proxy on the way out
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> "Hub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the REST API ---------------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        return _request(method, f"{self.url}hub/api/{path.lstrip('/')}", self.token, body)

    def start_server(self, user: str, timeout: float = START_TIMEOUT) -> Student:
        """Start ``user``'s server (creating the user first), wait until ready; return a Student."""
        status, body = self.api("POST", f"/users/{user}")
        if status not in (201, 409):  # 409: the user exists already
            raise RuntimeError(f"creating user {user}: {status} {body}")
        status, body = self.api("POST", f"/users/{user}/server")
        if status not in (201, 202, 400):  # 400: already running
            raise RuntimeError(f"starting {user}'s server: {status} {body}")
        deadline = time.monotonic() + timeout
        model: dict = {}
        while time.monotonic() < deadline:
            status, model = self.api("GET", f"/users/{user}")
            server = (model or {}).get("servers", {}).get("", {})
            if server.get("ready"):
                break
            if status == 200 and not server.get("pending") and not server:
                raise RuntimeError(f"{user}'s server stopped while starting:\n{self.log_tail()}")
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{user}'s server was not ready within {timeout:.0f} s:\n"
                               f"{self.log_tail()}")
        status, token = self.api("POST", f"/users/{user}/tokens",
                                 {"note": "classroom student", "expires_in": 3600})
        if status not in (200, 201):
            raise RuntimeError(f"a token for {user}: {status} {token}")
        pid = server.get("state", {}).get("pid")
        return Student(user, f"{self.url}user/{user}/", token["token"], pid,
                       self.directory / "home" / user)

    def stop_server(self, user: str, timeout: float = 60.0) -> None:
        """Stop ``user``'s server through the API and wait until the hub says it is gone."""
        status, _ = self.api("DELETE", f"/users/{user}/server")
        if status == 404:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, model = self.api("GET", f"/users/{user}")
            if status != 200 or not (model or {}).get("servers"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"{user}'s server did not stop within {timeout:.0f} s")


# -- a kernel in a student's server, over its websocket ------------------------------------------

class RemoteKernel:
    """A kernel started through a student's Jupyter server, driven over its websocket.

    Args:
        student: whose server.
        notebook: the notebook's path relative to the student's home (the kernel's
            working directory becomes its folder).
    """

    def __init__(self, student: Student, notebook: str) -> None:
        from jupyter_client.session import Session

        self.student = student
        status, session = student.api("POST", "/api/sessions", {
            "path": notebook, "name": Path(notebook).name, "type": "notebook",
            "kernel": {"name": "python3"}})
        if status != 201:
            raise RuntimeError(f"{student.name}: could not start a kernel: {status} {session}")
        self.session_id, self.kernel_id = session["id"], session["kernel"]["id"]
        self.session = Session(username=student.name)
        self.url = student.base.replace("http://", "ws://", 1) + \
            f"api/kernels/{self.kernel_id}/channels?session_id={self.session.session}"
        self.socket = self._connect()
        self._wait_ready()

    def _connect(self):
        import websocket  # websocket-client

        return websocket.create_connection(
            self.url, header=[f"Authorization: token {self.student.token}"],
            timeout=START_TIMEOUT)

    def _send(self, msg_type: str, content: dict, channel: str = "shell") -> str:
        from jupyter_client.jsonutil import json_default

        message = self.session.msg(msg_type, content)
        message["channel"] = channel
        self.socket.send(json.dumps(message, default=json_default))
        return message["header"]["msg_id"]

    def _receive(self, deadline: float) -> dict:
        import websocket

        self.socket.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            return json.loads(self.socket.recv())
        except websocket.WebSocketTimeoutException:
            raise TimeoutError("no message from the kernel in time") from None

    def _wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Ask for kernel_info until the kernel answers (it may still be starting).

        A server that is still bringing the kernel up may close the channels'
        websocket once; it is opened again, as a front end reconnects.
        """
        import websocket

        deadline = time.monotonic() + timeout
        while True:
            try:
                asked = self._send("kernel_info_request", {})
                answer_by = min(time.monotonic() + 5, deadline)
                with contextlib.suppress(TimeoutError):
                    while True:
                        message = self._receive(answer_by)
                        if message.get("parent_header", {}).get("msg_id") == asked and \
                                message["header"]["msg_type"] == "kernel_info_reply":
                            return
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                time.sleep(0.5)
                self.socket = self._connect()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.student.name}'s kernel did not answer in {timeout} s")

    def execute(self, code: str, timeout: float = CELL_TIMEOUT) -> tuple[list, str]:
        """Run ``code``; return (its outputs as nbformat outputs, the reply's status).

        Waits for both the shell's ``execute_reply`` and iopub's ``idle`` of this request,
        as a front end does; raises TimeoutError after ``timeout`` seconds.
        """
        from nbformat.v4 import output_from_msg

        asked = self._send("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        deadline = time.monotonic() + timeout
        outputs: list = []
        status, idle = None, False
        while status is None or not idle:
            message = self._receive(deadline)
            if message.get("parent_header", {}).get("msg_id") != asked:
                continue
            kind = message["header"]["msg_type"]
            if message.get("channel") == "shell" and kind == "execute_reply":
                status = message["content"]["status"]
            elif kind == "status":
                idle = message["content"]["execution_state"] == "idle"
            elif kind == "clear_output":
                outputs.clear()
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(output_from_msg(message))
        return outputs, status

    def close(self) -> None:
        """Close the websocket and delete the session (which shuts the kernel down)."""
        with contextlib.suppress(Exception):
            self.socket.close()
        self.student.api("DELETE", f"/api/sessions/{self.session_id}")


# -- a lesson, remotely ---------------------------------------------------------------------------

def _probe(t0: float) -> None:  # pragma: no cover - runs inside a student's kernel
    """Print, as JSON, every run this lesson made live (not the recorded ones from data/)."""
    import json as _json
    import os as _os

    from acceptlab import analysis as _analysis
    from acceptlab.lab.experiment import Run as _Run

    found, seen = [], set()

    def describe(name, run):
        accepted = _analysis.accepted(run.events)
        workers = run.workers
        order = accepted["worker"].tolist()
        counts = accepted["worker"].value_counts()
        cost = _analysis.cost_per_accept(run.events)
        check = _analysis.reconcile(run.client, run.events)
        meta = run.meta
        return {
            "name": name, "label": run.label, "strategy": meta.get("strategy"),
            "kind": meta.get("kind"), "workers": workers, "gap": meta.get("gap"),
            "connections": meta.get("connections"), "concurrency": meta.get("concurrency"),
            "port": meta.get("port"), "started": meta.get("started"),
            "seconds": meta.get("seconds"), "machine_busy": meta.get("machine_busy"),
            "trace_tids": meta.get("trace_tids") or [],
            "worker_pids": sorted(int(p) for p in run.events["pid"].dropna().unique()),
            "accepted": int(len(accepted)), "client_ok": int(run.client["ok"].sum()),
            "stray_events": int(check.events_unmatched),
            "unmatched_clients": int(check.client_ok_unmatched),
            "rr_score": _analysis.round_robin_score(order, workers) if order else None,
            "busiest_share": float(counts.max() / counts.sum()) if len(counts) else None,
            "wakeups_per_accept": cost["wakeups_per_accept"],
        }

    def visit(name, value, depth=0):
        if isinstance(value, _Run):
            if id(value) not in seen and float(value.meta.get("started") or 0) >= t0:
                seen.add(id(value))
                found.append(describe(name, value))
        elif isinstance(value, dict) and depth < 2:
            for key, item in list(value.items()):
                visit(f"{name}[{key!r}]", item, depth + 1)
        elif isinstance(value, (list, tuple)) and depth < 2:
            for index, item in enumerate(value):
                visit(f"{name}[{index}]", item, depth + 1)

    for name, value in list(globals().items()):
        if not name.startswith("_"):
            visit(name, value)
    print("ACCEPTLAB-PROBE " + _json.dumps({"kernel_pid": _os.getpid(), "cwd": _os.getcwd(),
                                             "runs": found}, default=str))


PROBE = textwrap.dedent(inspect.getsource(_probe))
"""The probe's source: run after a lesson, in the lesson's kernel, as ``_probe(t0)``."""


@dataclass
class LessonResult:
    """What running one lesson in one student's server gave."""

    student: str
    lesson: str
    seconds: float  # from asking for a kernel to the last cell's reply
    error: str | None = None  # the first cell that failed, and why
    error_outputs: list[str] = field(default_factory=list)
    images: int = 0  # image/png outputs (figures drawn)
    probe: dict = field(default_factory=dict)  # what the probe reported
    kernel_pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.error_outputs


def _code_cells(path: Path) -> list[str]:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def run_lesson(student: Student, lesson: Path, *,
               cell_timeout: float = CELL_TIMEOUT) -> LessonResult:
    """Run ``lesson`` (the copy in the student's home) cell by cell in a fresh kernel of theirs."""
    relative = f"notebooks/{lesson.name}"
    started = time.monotonic()
    t0 = time.time()
    result = LessonResult(student.name, lesson.stem, 0.0)
    kernel = None
    try:
        kernel = RemoteKernel(student, relative)
        for number, source in enumerate(_code_cells(student.home / relative), 1):
            outputs, status = kernel.execute(source, cell_timeout)
            for output in outputs:
                if output.output_type == "error":
                    result.error_outputs.append(f"cell {number}: {output.ename}: {output.evalue}")
                elif "image/png" in output.get("data", {}):
                    result.images += 1
            if status != "ok":
                why = "; ".join(line for line in result.error_outputs if line.startswith(f"cell {number}:"))
                result.error = f"cell {number} ended with status {status}" + (f" ({why})" if why else "")
                break
        result.seconds = time.monotonic() - started
        if result.error is None:
            outputs, _ = kernel.execute(f"{PROBE}\n_probe({t0!r})\ndel _probe", cell_timeout)
            text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
            for line in text.splitlines():
                if line.startswith("ACCEPTLAB-PROBE "):
                    result.probe = json.loads(line.split(" ", 1)[1])
                    result.kernel_pid = result.probe.get("kernel_pid")
            if not result.probe:
                result.error = f"the probe printed nothing usable: {outputs!r}"[:500]
    except (TimeoutError, OSError, RuntimeError) as exc:
        result.seconds = time.monotonic() - started
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if kernel is not None:
            kernel.close()
    return result
