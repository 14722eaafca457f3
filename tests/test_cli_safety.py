"""Safe defaults: loopback unless told otherwise, nothing from the network executed, clear errors.

A teaching kit is run by people learning, on laptops on shared networks.  So:

* every server listens on loopback and an ephemeral port by default; the one
  documented exception is ``acceptlab serve``, which uses the book's port 1060
  (still on loopback);
* a non-loopback address needs ``--allow-remote``, and then prints a warning;
* nothing that arrives from the network is evaluated or unpickled: checked
  statically (no ``eval``/``exec``/``pickle``/``marshal`` on any path in the
  package) and live (payloads that would leave a marker file if they were);
* a taken port, a missing platform feature or a bad argument is one clear
  line on stderr and a non-zero exit, never a traceback.  (For mistakes that
  argparse itself catches, such as ``--workers abc``, argparse prints its
  usage block first, as every argparse tool does; the error is still its last
  line, and there is no traceback.)

No test here binds a non-loopback address: the warning is checked with an
address from TEST-NET-1 (192.0.2.0/24, RFC 5737), which no machine has, so
the bind fails after the warning.  No host name is resolved (no DNS traffic).
"""

from __future__ import annotations

import ast
import ipaddress
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import acceptlab
from acceptlab.cli import BOOK_PORT, build_parser
from acceptlab.server.conversation import recv_until
from acceptlab.server.pool import WorkerPool
from acceptlab.specs import PoolSpec
from helpers import port_is_free

ACCEPTLAB = [sys.executable, "-m", "acceptlab"]
PACKAGE = Path(acceptlab.__file__).parent
QUICK = ["--kind", "thread", "--workers", "1"]  # the cheapest pool, for commands that start one


def run_cli(*argv: str, timeout: float = 30, prefix: list[str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run the command in its own session; kill its whole group if it outlives ``timeout``."""
    proc = subprocess.Popen([*(prefix or ACCEPTLAB), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"acceptlab {' '.join(argv)} was still running after {timeout} s "
                    f"(it should have refused to start): {err[-500:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_clear_line(result: subprocess.CompletedProcess, *words: str) -> None:
    """Non-zero exit, no traceback, and stderr is exactly one line naming the problem."""
    err = result.stderr.strip()
    assert result.returncode != 0, f"exit code 0 for a mistake; stdout: {result.stdout[-300:]}"
    assert "Traceback" not in err, err[-2000:]
    assert len(err.splitlines()) == 1, err[-2000:]
    for word in words:
        assert word in err, err


# -- defaults ------------------------------------------------------------------------------

@pytest.mark.system
def test_pools_default_to_loopback_and_an_ephemeral_port(start_pool):
    assert (PoolSpec().host, PoolSpec().port) == ("127.0.0.1", 0)
    pool = start_pool(workers=1, kind="thread")
    host, port = pool.listening_socket.getsockname()[:2]
    assert host == "127.0.0.1" and port != 0 and port != BOOK_PORT


def test_the_commands_default_to_loopback_and_only_serve_uses_the_books_port():
    parser = build_parser()
    serve = parser.parse_args(["serve"])
    assert (serve.host, serve.port, serve.allow_remote) == ("127.0.0.1", BOOK_PORT, False)
    load = parser.parse_args(["load"])  # a client: it aims at serve's port, on this machine
    assert (load.host, load.port) == ("127.0.0.1", BOOK_PORT)
    for command in ("run", "compare"):  # these start their own pool: no address to choose
        args = vars(parser.parse_args([command]))
        assert "host" not in args and "port" not in args, (command, args)


@pytest.mark.system
def test_run_serves_on_an_ephemeral_loopback_port():
    from acceptlab.lab.experiment import run_experiment

    run = run_experiment(workers=1, kind="thread", connections=3)
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else (1024, 65535)
    assert low <= run.meta["port"] <= high and run.meta["port"] != BOOK_PORT


def test_no_wildcard_or_foreign_address_is_written_anywhere_in_the_package():
    """Every address literal in the source is a loopback one (no 0.0.0.0, no ::, no LAN)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    address = ipaddress.ip_address(node.value)
                except ValueError:
                    continue
                if not address.is_loopback:
                    found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not found, found


# -- non-loopback needs --allow-remote -------------------------------------------------------

@pytest.mark.system
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_serving_beyond_loopback_is_refused_without_allow_remote(host):
    result = run_cli("serve", "--host", host, "--port", "0", *QUICK)
    assert result.returncode == 2
    assert_one_clear_line(result, host, "--allow-remote")


@pytest.mark.system
def test_allow_remote_warns_first_and_a_bind_failure_is_one_line():
    """With the flag, a warning names the risk; then the bind fails (TEST-NET): one more line."""
    result = run_cli("serve", "--host", "192.0.2.1", "--allow-remote", "--port", "0", *QUICK)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode != 0
    assert len(lines) == 2, lines
    assert lines[0].startswith("warning: listening on 192.0.2.1")
    assert lines[1].startswith("acceptlab: ") and "192.0.2.1" in lines[1]


@pytest.mark.system
def test_loopback_ipv6_serves_without_a_warning():
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*ACCEPTLAB, "serve", "--host", "::1", "--port", str(port), *QUICK],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert server.stdout.readline() == f"listening on [::1]:{port}\n"  # as URLs write it
        with socket.create_connection(("::1", port), timeout=5) as sock:
            sock.sendall(b"Simple is better than?")
            assert recv_until(sock, b".") == b"Complex."
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=10)
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "warning" not in err and server.returncode == 0, err


@pytest.mark.system
@pytest.mark.parametrize("host", ["10.0.0.1", "example.com"])
def test_the_load_command_only_fires_at_this_machine(host):
    result = run_cli("load", "--host", host, "-c", "1")
    assert result.returncode == 2
    assert_one_clear_line(result, host)


# -- one clear line, never a traceback -------------------------------------------------------

@pytest.mark.system
def test_a_taken_port_is_one_line_naming_it():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), *QUICK)
    assert result.returncode == 2
    assert_one_clear_line(result, str(port), "in use")


BAD_ARGUMENTS = {
    # name: (argv, words the one line must contain)
    "serve --port 99999": (["serve", "--port", "99999", *QUICK], ["99999"]),
    "serve --port -1": (["serve", "--port", "-1", *QUICK], ["-1"]),
    "load --port 99999": (["load", "--port", "99999", "-c", "1"], ["99999"]),
    "run --idle-timeout -1": (["run", "-c", "1", "--idle-timeout", "-1", *QUICK], ["idle"]),
    "run --idle-timeout 0": (["run", "-c", "1", "--idle-timeout", "0", *QUICK], ["idle"]),
    "run --max-request 0": (["run", "-c", "1", "--max-request", "0", *QUICK], ["max"]),
    "run --rate -5": (["run", "-c", "2", "--rate", "-5", *QUICK], ["rate"]),
    "run --workers 0": (["run", "-c", "1", "--workers", "0", "--kind", "thread"], ["workers"]),
    "run -c -5": (["run", "-c", "-5", *QUICK], ["connections"]),
    "run --duration 0": (["run", "-c", "1", "--duration", "0", *QUICK], ["duration"]),
    "run --work nap:3": (["run", "-c", "1", "--work", "nap:3", *QUICK], ["nap:3"]),
    "run shared-epoll with processes": (["run", "-c", "1", "--strategy", "shared-epoll",
                                         "--kind", "process"], ["shared-epoll"]),
    "run --gap -1": (["run", "-c", "3", "--gap", "-1", *QUICK], ["gap"]),
    "run --workers 100000": (["run", "-c", "1", "--workers", "100000", "--kind", "thread"],
                             ["workers"]),
    "compare, nothing runnable": (["compare", "--strategies", "shared-epoll", "--kinds",
                                   "process", "--out", "/tmp/acceptlab-test-compare-none"],
                                  ["nothing to compare"]),
}


@pytest.mark.system
@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_a_bad_argument_is_one_clear_line_and_a_non_zero_exit(name):
    argv, words = BAD_ARGUMENTS[name]
    assert_one_clear_line(run_cli(*argv), *words)


@pytest.mark.system
@pytest.mark.parametrize("argv", [["run", "--workers", "abc"], ["serve", "--kind", "fibre"],
                                  ["run", "--strategy", "spinlock"], ["frobnicate"]])
def test_mistakes_argparse_catches_end_with_one_error_line_and_exit_2(argv):
    result = run_cli(*argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("acceptlab") and "error:" in last, result.stderr


MISSING_FEATURE = """
import sys, {module}
delattr({module}, {name!r})          # as on a platform that lacks it
from acceptlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("module, name, strategy", [
    ("select", "EPOLLEXCLUSIVE", "epoll-exclusive"),
    ("select", "epoll", "epoll"),
    ("socket", "SO_REUSEPORT", "reuseport"),
])
@pytest.mark.system
def test_a_missing_platform_feature_is_one_line_naming_it(module, name, strategy):
    prefix = [sys.executable, "-c", MISSING_FEATURE.format(module=module, name=name)]
    result = run_cli("run", "-c", "1", "--strategy", strategy, *QUICK, prefix=prefix)
    assert result.returncode == 2
    assert_one_clear_line(result, strategy)


# -- nothing from the network is evaluated or unpickled ---------------------------------------

BUILTINS_THAT_RUN_CODE = {"eval", "exec", "compile", "__import__"}  # called by bare name
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
                     "yaml", "jsonpickle"}
# The one dynamic import: acceptlab/__init__.py's lazy attribute lookup, whose module
# names come from its own table (_WHERE), never from outside.
DYNAMIC_IMPORTS_ALLOWED_IN = {"__init__.py"}


def test_the_package_has_no_eval_exec_or_unpickling_anywhere():
    """Statically: no code path in the package can execute or unpickle bytes it is given.

    Flags: the builtins ``eval``/``exec``/``compile``/``__import__``; any import
    of a serialiser that can run code (pickle, marshal, shelve, yaml, ...); and
    ``importlib.import_module`` outside the package's lazy-import table.
    (``re.compile`` and ``json.loads`` are fine: they cannot run code.)
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                bad = {n.split(".")[0] for n in names} & FORBIDDEN_MODULES
                if bad:
                    found.append(f"{path.name}:{node.lineno}: imports {sorted(bad)}")
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in BUILTINS_THAT_RUN_CODE:
                    found.append(f"{path.name}:{node.lineno}: calls {func.id}()")
                name = func.attr if isinstance(func, ast.Attribute) else \
                    func.id if isinstance(func, ast.Name) else None
                if name == "import_module" and path.name not in DYNAMIC_IMPORTS_ALLOWED_IN:
                    found.append(f"{path.name}:{node.lineno}: calls import_module()")
    assert not found, found


class _LeavesAMark:
    """Unpickling this would create a file: the proof that someone unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.system
@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("protocol", ["zen", "lancelot", "http"])
def test_payloads_that_would_run_code_are_just_wrong_questions(tmp_path, kind, protocol):
    """Send a pickle and Python source that would each leave a marker file; nothing appears."""
    marks = [tmp_path / "unpickled", tmp_path / "evaluated"]
    payloads = [
        pickle.dumps(_LeavesAMark(str(marks[0]))),
        f"__import__('os').mkdir({str(marks[1])!r})".encode(),
    ]
    end = {"zen": b"?", "lancelot": b"?", "http": b"\r\n\r\n"}[protocol]
    with WorkerPool(workers=1, kind=kind, protocol=protocol) as pool:
        for payload in payloads:
            for message in (payload + end, b"GET /" + payload.hex().encode() + b" HTTP/1.0" + end):
                with socket.create_connection(pool.address, timeout=5) as sock:
                    sock.sendall(message)
                    sock.shutdown(socket.SHUT_WR)
                    reply = recv_until(sock, None)
                assert reply.startswith((b"Error:", b"HTTP/1.0")), reply[:200]
                assert not any(mark.exists() for mark in marks)
        port = pool.address[1]
    assert not any(mark.exists() for mark in marks)
    assert port_is_free(port)


# -- output directories are checked before anything runs --------------------------------------

def _refused_before_any_load(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2
    assert_one_clear_line(result, *words)
    assert "connections" not in result.stderr and not result.stdout, "a load ran first"


@pytest.mark.system
def test_a_file_in_the_way_of_out_is_one_line_before_any_load(tmp_path):
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("not a directory")
    for out in (in_the_way, in_the_way / "run"):
        result = run_cli("run", "-c", "100000", "--gap", "0.001", *QUICK, "--out", str(out))
        _refused_before_any_load(result, str(out))
    assert in_the_way.read_text() == "not a directory"


@pytest.mark.system
def test_an_unwritable_out_is_one_line_before_any_load():
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs sysfs (/sys), a place even root cannot create a directory in")
    out = "/sys/acceptlab-test-out"
    result = run_cli("run", "-c", "100000", "--gap", "0.001", *QUICK, "--out", out)
    _refused_before_any_load(result, out, "cannot write")
    assert not Path(out).exists()


@pytest.mark.system
def test_an_existing_run_is_never_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    first = run_cli("run", "-c", "5", *QUICK, "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = (out / "meta.json").read_text()
    again = run_cli("run", "-c", "7", *QUICK, "--out", str(out))
    _refused_before_any_load(again, str(out), "--force")
    assert (out / "meta.json").read_text() == before
    forced = run_cli("run", "-c", "7", *QUICK, "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert '"connections": 7' in (out / "meta.json").read_text()


@pytest.mark.system
def test_without_out_each_run_gets_a_fresh_directory_and_says_which(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default out/run is relative to where the command runs
    first = run_cli("run", "-c", "3", *QUICK)
    second = run_cli("run", "-c", "3", *QUICK)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "-> out/run/" in first.stdout and "-> out/run-2/" in second.stdout, second.stdout
    assert (tmp_path / "out" / "run" / "meta.json").exists()
    assert (tmp_path / "out" / "run-2" / "meta.json").exists()


@pytest.mark.system
def test_compare_refuses_an_out_that_holds_a_comparison(tmp_path):
    (tmp_path / "summary.csv").write_text("run\n")
    result = run_cli("compare", "--strategies", "blocking", "--kinds", "thread", "-c", "5",
                     "--out", str(tmp_path))
    _refused_before_any_load(result, "--force")
