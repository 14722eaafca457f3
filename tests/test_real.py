"""Real servers on demand: each starts, answers with its pid, is inspected as its layout says,
and leaves nothing behind (no process of its group, a free port), also when the Python process
that started it is killed outright.  A server that is not installed here is skipped, loudly."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import Tries, best_of, port_is_free, wait_until

from acceptlab.real import servers as real
from acceptlab.client.load import fire

pytestmark = [pytest.mark.serial, pytest.mark.system,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux servers")]

# What inspect must match for each server's layout (the list).
EXPECTED = {"gunicorn-sync": "poll", "gunicorn-gthread": "epoll", "uvicorn": "epoll",
            "uwsgi": "epoll", "uwsgi-thunder-lock": "locked",
            "nginx": "epoll-exclusive", "nginx-accept-mutex": "locked",
            "nginx-reuseport": "reuseport", "node-rr": "handoff", "node-none": "epoll"}
# The lock each locked layout is (issue 24): a PI futex for uWSGI, a tried one for nginx.
LOCKS = {"uwsgi-thunder-lock": "pi-futex", "nginx-accept-mutex": "shared-memory"}


def _need(name: str) -> None:
    reason = real.missing_reason(name)
    if reason:
        pytest.skip(f"server missing here, test not run: {reason}")


def _alive(pids) -> list[int]:
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}")
            and "Z" not in open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]]


@pytest.mark.system
@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_server_starts_answers_is_inspected_and_leaves_nothing(name):
    from acceptlab.real.topology import settled_topology

    _need(name)
    with real.real_server(name, workers=3) as server:
        group = server.group()
        found = settled_topology(server.pid)  # one read is one instant: two that agree
        assert found.strategy == EXPECTED[name], found.prediction
        assert len(found.workers) == 3
        assert (found.lock.kind if found.lock else None) == LOCKS.get(name), found.prediction
        for worker in found.workers:  # any worker pid finds the whole server (issue 24)
            whole = settled_topology(worker)
            assert whole.pid == server.pid and whole.asked_pid == worker, whole.found_from
            assert whole.workers == found.workers and whole.strategy == found.strategy
            assert [item.held_by for item in whole.listeners] == \
                [item.held_by for item in found.listeners]  # every holder listed
        client = fire(server.address, protocol="http", connections=30)
        assert client["ok"].all(), client["error"].value_counts()
        port = server.address[1]
        assert server.version.split()[0] in name
    # stop(): SIGTERM, 1 s of grace, SIGKILL, 1 s more: gone within 2 s; 3x that
    assert wait_until(lambda: not _alive(group), 3 * 2.0) is not None, _alive(group)
    # The port is free once the last process holding the listener has exited; a failure names
    # every socket still using it locally (the run that failed once in the full suite, with
    # every process gone, gave no clue).
    assert wait_until(lambda: port_is_free(port), 2) is not None, _sockets_on(port)


def _sockets_on(port: int) -> list[str]:
    from acceptlab.linux.procfs import tcp_table

    return [f"state {row.state:#x} {row.local}:{row.port} -> {row.remote}:{row.remote_port} "
            f"uid {row.uid} inode {row.inode}" for row in tcp_table() if row.port == port]


@pytest.mark.system
def test_killing_the_python_that_started_it_stops_the_server():
    """The guard process stops the server's group when its parent dies without stopping it."""
    name = "gunicorn-sync"
    _need(name)
    script = textwrap.dedent(f"""
        import sys, time
        from acceptlab.real.servers import real_server
        server = real_server({name!r}, workers=2)
        print(server.pid, server.address[1], server.directory, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(real.__file__).parents[2])}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        master, port, directory = parent.stdout.readline().split()
        master, port = int(master), int(port)
        assert os.path.isdir(directory)
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == master]
        assert master in group and len(group) >= 3  # the master and its two workers
        assert not port_is_free(port)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    took = wait_until(lambda: not _alive(group), 8)
    assert took is not None, f"still alive 8 s after the parent died: {_alive(group)}"
    assert port_is_free(port)
    assert wait_until(lambda: not os.path.exists(directory), 5) is not None, "directory left"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_unknown_and_missing_servers_are_one_line():
    from acceptlab.cli import main

    with pytest.raises(ValueError, match="unknown server"):
        real.real_server("apache")
    with pytest.raises(SystemExit) as exit_:
        main(["real", "apache"])
    assert exit_.value.code == 2
    spec = real.ServerSpec("ghost", "no-such-program-here", {}, "apt-get install ghost", "none")
    real.SERVERS["ghost"] = spec
    try:
        assert real.missing_reason("ghost") == (
            "ghost: no-such-program-here is not installed (apt-get install ghost)")
        with pytest.raises(real.ServerMissing, match="not installed"):
            real.real_server("ghost")
    finally:
        del real.SERVERS["ghost"]


# ----------------------------------------------------------------- the published shapes, here
# Each check is the best of three tries of 200 sequential connections 1 ms apart, 4 workers;
# the margins are far from what this 2-core VM measured (in brackets), not at its edge.

def _best_of_three(name: str, measure, good) -> Tries:
    """Up to three observed runs of server ``name`` (one server for all), until ``good``."""
    from acceptlab.real.observe import observe

    _need(name)

    def one_run():
        run = observe(server.pid, connections=200, gap=0.001, baseline=True)
        assert run.meta["coverage"]["coverage"] >= 0.99
        return measure(run)

    with real.real_server(name, workers=4) as server:
        return best_of(3, one_run, good)


@pytest.mark.system
def test_gunicorn_sync_herd_more_than_one_wakeup_per_connection():
    """Four workers in select() on one socket: every idle worker wakes (measured 4.6-5.3)."""
    tries = _best_of_three("gunicorn-sync",
                           lambda run: run.meta["baseline"]["switches_per_connection"],
                           good=lambda switches: switches > 1.5)
    assert tries.ok, f"switches per connection: {tries.values}"


@pytest.mark.system
def test_node_round_robin_takes_strict_turns_even_back_to_back():
    """SCHED_RR: the primary hands out in turn (measured round-robin score 1.0)."""
    from acceptlab import analysis

    tries = _best_of_three("node-rr", lambda run: analysis.round_robin_score(
        analysis.accepted(run.events)["worker"].tolist(), 4), good=lambda score: score >= 0.9)
    assert tries.ok, f"round-robin scores: {tries.values}"


@pytest.mark.system
def test_nginx_accept_mutex_one_worker_takes_most_under_light_load():
    """The mutex holder keeps the listener while idle (measured: one worker took 200 of 200)."""
    from acceptlab import analysis

    tries = _best_of_three("nginx-accept-mutex", lambda run: analysis.summary(
        run.events, run.client, 4)["busiest_share"], good=lambda share: share >= 0.8)
    assert tries.ok, f"the busiest worker's share: {tries.values}"


@pytest.mark.system
def test_uwsgi_thunder_lock_takes_strict_turns():
    """A PI futex hands the lock to its longest waiter: turns (measured round-robin score 1.0,
    25/25/25/25 of 100, 1.99 wakeups per connection unobserved)."""
    from acceptlab import analysis

    tries = _best_of_three("uwsgi-thunder-lock", lambda run: analysis.round_robin_score(
        analysis.accepted(run.events)["worker"].tolist(), 4), good=lambda score: score >= 0.9)
    assert tries.ok, f"round-robin scores: {tries.values}"


@pytest.mark.system
def test_uwsgi_default_herd_more_than_one_wakeup_per_connection():
    """Every uWSGI worker sits in epoll_wait on the shared socket: every idle one wakes
    (measured 4.0 unobserved wakeups per connection with 4 workers)."""
    tries = _best_of_three("uwsgi", lambda run: run.meta["baseline"]["switches_per_connection"],
                           good=lambda switches: switches > 1.5)
    assert tries.ok, f"switches per connection: {tries.values}"


@pytest.mark.system
def test_nginx_exclusive_hands_out_in_runs():
    """EPOLLEXCLUSIVE wakes one worker; nginx >= 1.21.6 moves it to the back every 16 accepts
    (ngx_reorder_accept_events), so the accept sequence comes in long runs (measured 16)."""
    from acceptlab import analysis

    def median_run(run) -> float:
        order = analysis.accepted(run.events)["worker"].tolist()
        runs, length = [], 1
        for before, after in zip(order, order[1:]):
            if before == after:
                length += 1
            else:
                runs.append(length)
                length = 1
        runs.append(length)
        return sorted(runs)[len(runs) // 2]

    tries = _best_of_three("nginx", median_run, good=lambda length: length >= 8)
    assert tries.ok, f"median run lengths: {tries.values}"


@pytest.mark.system
def test_a_notebook_kernel_restart_leaves_no_server(tmp_path):
    """A server started in a Jupyter kernel is gone within seconds of the kernel's restart
    (the kernel dies without stopping it; the guard does), as with JupyterLab's button."""
    pytest.importorskip("jupyter_client", reason="needs jupyter_client to drive a real kernel")
    import json

    from test_lifecycle import KERNEL_NAME, Kernel

    name = "gunicorn-sync"
    _need(name)
    spec = tmp_path / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "acceptlab tests (this venv)", "language": "python"}))
    kernel = Kernel(tmp_path / "kernels", cwd=tmp_path)
    try:
        kernel.start()
        printed = kernel.run(f"""
            import json, os
            from acceptlab.real.servers import real_server
            server = real_server({name!r}, workers=2)
            print(json.dumps({{"group": server.group(), "port": server.address[1]}}))
        """)
        started = json.loads(printed.strip().splitlines()[-1])
        assert len(started["group"]) >= 3 and not port_is_free(started["port"])
        kernel.restart()
        took = wait_until(lambda: not _alive(started["group"]), 8)
        assert took is not None, f"alive 8 s after the restart: {_alive(started['group'])}"
        assert port_is_free(started["port"])
    finally:
        kernel.close()


@pytest.mark.system
def test_real_from_the_command_line_stops_on_ctrl_c():
    name = "nginx" if not real.missing_reason("nginx") else "gunicorn-sync"
    _need(name)
    env = {**os.environ, "PYTHONPATH": str(Path(real.__file__).parents[2])}
    command = subprocess.Popen([sys.executable, "-m", "acceptlab", "real", name, "-n", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = command.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first + command.stderr.read()
        master = int(first.split("master pid ")[1].split(";")[0])
        port = int(first.split("127.0.0.1:")[1].split("/")[0])
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == master]
        assert len(group) >= 3 and not port_is_free(port)
    finally:
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=20)
    assert command.returncode == 0, err
    assert "Traceback" not in err
    assert wait_until(lambda: not _alive(group), 5) is not None
    assert port_is_free(port)


@pytest.mark.system
@pytest.mark.parametrize("name", ["gunicorn-sync", "nginx", "node-rr"])
def test_a_taken_port_is_one_line_and_leaves_nothing(name):
    import socket

    _need(name)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        before = set(os.listdir("/tmp"))
        with pytest.raises(real.PortTaken, match=f"port {port} is taken"):
            real.real_server(name, workers=1, port=port, timeout=10)
    assert not [entry for entry in set(os.listdir("/tmp")) - before
                if entry.startswith(f"acceptlab-{name}-")]  # its directory went too
