"""The acceptlab command, run as a learner runs it: a subprocess."""

import json
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading

import pytest

from acceptlab.server.conversation import ask, recv_until
from acceptlab.server.protocol import LANCELOT
from helpers import port_is_free

ACCEPTLAB = [sys.executable, "-m", "acceptlab"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(*options: str) -> tuple[subprocess.Popen, int]:
    """Start `acceptlab serve` and wait for its 'listening on' line."""
    port = free_port()
    server = subprocess.Popen([*ACCEPTLAB, "serve", "--port", str(port), *options],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    assert line == f"listening on 127.0.0.1:{port}\n", line + server.stderr.read()
    return server, port


def stop_serve(server: subprocess.Popen, signum: int = signal.SIGINT) -> str:
    server.send_signal(signum)
    out, err = server.communicate(timeout=10)
    assert server.returncode == 0, err
    return out


@pytest.mark.system
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_talks_zen_like_the_book_and_prints_counts_when_stopped(signum):
    server, port = start_serve("--workers", "2")
    try:
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                # The book's client sends aphorisms with no newline and reads up to a period.
                sock.sendall(b"Beautiful is better than?")
                assert recv_until(sock, b".") == b"Ugly."
                sock.sendall(b"Simple is better than?")
                assert recv_until(sock, b".") == b"Complex."
    finally:
        out = stop_serve(server, signum)
    assert "accepts" in out
    assert port_is_free(port)


@pytest.mark.system
def test_serve_lancelot_with_threads():
    server, port = start_serve("--protocol", "lancelot", "--kind", "thread")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert ask(sock, LANCELOT) == [b"My name is Sir Lancelot of Camelot.",
                                           b"To seek the Holy Grail.", b"Blue."]
    finally:
        stop_serve(server)


@pytest.mark.system
def test_serve_on_a_taken_port_is_one_line_and_exit_code_2():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run([*ACCEPTLAB, "serve", "--port", str(port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"acceptlab: [Errno 98] port {port} on 127.0.0.1 is already in use" \
        or result.stderr.strip().endswith(f"port {port} on 127.0.0.1 is already in use")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.system
def test_run_json_prints_one_summary_line_and_writes_the_files(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([*ACCEPTLAB, "run", "--workers", "4", "--connections", "100",
                             "--gap", "0.001", "--out", str(out), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0], parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert summary["accepted"] == 100 and summary["client_ok"] == 100
    assert summary["client_errors"] == 0 and sum(summary["per_worker"]) == 100
    for key in ("wakeups_per_accept", "eagain_per_accept", "busiest_share", "mean_rank"):
        assert key in summary
    assert {p.name for p in out.iterdir()} >= {"events.csv", "client.csv", "meta.json"}


@pytest.mark.system
def test_load_fires_at_any_server_and_reports_errors_by_cause():
    # A plain stdlib server that is not the kit: the client must work against it too.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.close()
        result = subprocess.run([*ACCEPTLAB, "load", "--port", str(port), "-c", "5", "--json"],
                                capture_output=True, text=True, timeout=60)
    summary = json.loads(result.stdout)
    assert summary["ok"] == 0 and summary["errors"] == {"refused": 5}
    assert result.returncode == 1


class BookStyleZen(socketserver.BaseRequestHandler):
    """A zen server as the book's servers behave on the wire, written here from the bytes alone:
    read up to each '?', answer from the table (or the book's error), until the client closes."""

    ANSWERS = {b"Beautiful is better than?": b"Ugly.",
               b"Explicit is better than?": b"Implicit.",
               b"Simple is better than?": b"Complex."}

    def handle(self) -> None:
        buffer = b""
        while data := self.request.recv(4096):
            buffer += data
            while b"?" in buffer:
                question, buffer = buffer.split(b"?", 1)
                self.request.sendall(self.ANSWERS.get(question + b"?",
                                                      b"Error: unknown aphorism."))


@pytest.mark.system
def test_the_kits_client_works_against_a_server_that_is_not_the_kit():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), BookStyleZen) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            result = subprocess.run([*ACCEPTLAB, "load", "--port", str(server.server_address[1]),
                                     "-c", "50", "--concurrency", "4", "--json"],
                                    capture_output=True, text=True, timeout=60)
        finally:
            server.shutdown()
    summary = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert summary["ok"] == 50 and summary["errors"] == {}


@pytest.mark.system
def test_doctor_lists_the_features_and_strategies():
    result = subprocess.run([*ACCEPTLAB, "doctor"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("start_method", "EPOLLEXCLUSIVE", "SO_REUSEPORT", "TCP_INFO", "reuseport"):
        assert word in result.stdout


@pytest.mark.system
def test_bad_arguments_are_one_line_not_a_traceback():
    result = subprocess.run([*ACCEPTLAB, "run", "--work", "nap:3", "-c", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "acceptlab: work='nap:3': use none, sleep:<ms> or spin:<ms>"


# -- what a newcomer reads: help, version, usage, numbers ---------------------------------------

def _parsers():
    """The top-level parser and every sub-command's, by name."""
    import argparse

    from acceptlab.cli import build_parser

    top = build_parser()
    found = {"acceptlab": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_every_option_of_every_command_has_help_text():
    missing = [f"{name} {'/'.join(action.option_strings)}"
               for name, parser in _parsers().items() for action in parser._actions
               if action.option_strings and not (action.help or "").strip()]
    assert len(_parsers()) >= 6  # acceptlab + serve, load, run, compare, doctor
    assert not missing, missing


@pytest.mark.system
def test_top_level_help_is_plain_text_and_version_is_printed():
    result = subprocess.run([*ACCEPTLAB, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "``" not in result.stdout and ":func:" not in result.stdout, result.stdout
    for command in ("serve", "load", "run", "compare", "doctor"):
        assert command in result.stdout
    from acceptlab import __version__

    version = subprocess.run([*ACCEPTLAB, "--version"], capture_output=True, text=True,
                             timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == f"acceptlab {__version__}"


@pytest.mark.system
@pytest.mark.parametrize("command", ["serve", "load", "run", "compare"])
def test_a_subcommands_bad_option_prints_that_subcommands_usage(command):
    result = subprocess.run([*ACCEPTLAB, command, "--wokers", "2"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"usage: acceptlab {command} "), result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"acceptlab {command}: error: unrecognized arguments: --wokers 2"


SHARE = re.compile(r"^\d\.\d\d$")


@pytest.mark.system
def test_run_prints_client_errors_by_kind_and_latency_beside_the_table(tmp_path):
    """A run whose every connection fails says so in plain output (it used to show 0 errors)."""
    result = subprocess.run([*ACCEPTLAB, "run", "-c", "20", "--max-request", "5", "--kind",
                             "thread", "--workers", "3", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "client: 20 connections, 0 ok, errors: bad-reply 20" in result.stdout, result.stdout
    assert "latency (ms): p50 —  p90 —  p99 —  max —" in result.stdout  # none succeeded
    table = [line.split() for line in result.stdout.splitlines()
             if re.match(r"^\d+\s+\d+\s+", line)]
    assert len(table) == 3 and all(SHARE.match(row[2]) for row in table), result.stdout
    assert "nan" not in result.stdout.lower() and "<NA>" not in result.stdout


@pytest.mark.system
def test_run_prints_latency_percentiles_when_connections_succeed(tmp_path):
    result = subprocess.run([*ACCEPTLAB, "run", "-c", "30", "--kind", "thread", "--workers", "2",
                             "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "client: 30 connections, 30 ok, errors: none" in result.stdout, result.stdout
    latency = re.search(r"latency \(ms\): p50 (\S+)  p90 (\S+)  p99 (\S+)  max (\S+)",
                        result.stdout)
    assert latency, result.stdout
    p50, p90, p99, top = (float(value) for value in latency.groups())
    assert 0 < p50 <= p90 <= p99 <= top


@pytest.mark.system
def test_load_plain_output_names_the_address_errors_and_latency():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    result = subprocess.run([*ACCEPTLAB, "load", "--port", str(port), "-c", "3"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stdout
    assert "client: 3 connections, 0 ok, errors: refused 3" in result.stdout
    assert "latency (ms): p50 —  p90 —  p99 —  max —" in result.stdout
    assert "None" not in result.stdout


@pytest.mark.system
def test_serve_with_nothing_served_shows_dashes_not_nan():
    server, port = start_serve("--workers", "2", "--kind", "thread")
    out = stop_serve(server)
    rows = [line.split() for line in out.splitlines() if re.match(r"^\d+\s", line)]
    assert len(rows) == 2 and all(row[2] == "—" for row in rows), out  # share of nothing
    assert "NaN" not in out and "<NA>" not in out


def _pool_can_join() -> bool:
    import dataclasses

    from acceptlab.specs import PoolSpec

    return "join_port" in {field.name for field in dataclasses.fields(PoolSpec)}


@pytest.mark.system
def test_a_second_reuseport_server_is_refused_unless_it_asks_to_join():
    if not _pool_can_join():
        pytest.skip("needs WorkerPool(join_port=...) from the core branch (contract 1): without it "
                    "a reuseport pool joins a taken port silently")
    first, port = start_serve("--strategy", "reuseport", "--kind", "thread", "--workers", "2")
    try:
        refused = subprocess.run([*ACCEPTLAB, "serve", "--strategy", "reuseport", "--kind",
                                  "thread", "--workers", "2", "--port", str(port)],
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 2, refused.stdout
        assert len(refused.stderr.strip().splitlines()) == 1 and str(port) in refused.stderr
        assert "Traceback" not in refused.stderr
        joined = subprocess.Popen([*ACCEPTLAB, "serve", "--strategy", "reuseport", "--kind",
                                   "thread", "--workers", "2", "--port", str(port), "--join"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert joined.stdout.readline() == f"listening on 127.0.0.1:{port}\n"
        finally:
            stop_serve(joined)
    finally:
        stop_serve(first)
