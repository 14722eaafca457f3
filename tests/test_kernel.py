"""Tests for acceptlab.linux.kernel, over real loopback sockets on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from acceptlab import kernel
from helpers import wait_until
from acceptlab.linux.kernel import (
    QueueSampler,
    Unsupported,
    accept_queue,
    listen_queues,
    voluntary_switches,
)

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="the accept queue is only visible on Linux")


@contextlib.contextmanager
def listener(backlog: int = 8, port: int = 0, reuseport: bool = False) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(backlog)
        yield sock


@contextlib.contextmanager
def clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connected clients; nobody needs to accept them for connect() to return."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=2))
            for _ in range(count)
        ]
        yield socks


def accept_all(sock: socket.socket, count: int) -> None:
    sock.settimeout(2)
    for _ in range(count):
        conn, _ = sock.accept()
        conn.close()


def eventually(condition, timeout: float = 1.0) -> bool:
    """The handshake completes in the kernel asynchronously, so poll briefly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def sampled(sampler: QueueSampler, queue_len: int) -> bool:
    """Has ``sampler`` recorded a queue of ``queue_len`` yet?"""
    frame = sampler.to_frame()
    return bool(len(frame)) and bool((frame["queue_len"] == queue_len).any())


# -- accept_queue --------------------------------------------------------------

@pytest.mark.system
@linux_only
def test_accept_queue_counts_connections_nobody_accepted() -> None:
    with listener(backlog=8) as server:
        port = server.getsockname()[1]
        depth = accept_queue(server)
        assert (depth.queue_len, depth.backlog) == (0, 8)
        with clients(port, 3):
            assert eventually(lambda: accept_queue(server).queue_len == 3)
            assert accept_queue(server).backlog == 8
            accept_all(server, 3)
            assert accept_queue(server).queue_len == 0


@pytest.mark.system
@linux_only
def test_accept_queue_rejects_a_socket_that_is_not_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="not listening"):
            accept_queue(sock)


@pytest.mark.system
@linux_only
def test_accept_queue_on_a_closed_socket_raises_oserror() -> None:
    with listener() as server:
        pass
    with pytest.raises(OSError):
        accept_queue(server)


@pytest.mark.system
def test_off_linux_everything_is_unsupported_with_a_reason(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")  # pretend; restored after the test
    with listener() as server:
        with pytest.raises(Unsupported, match="Linux-only; this is darwin"):
            accept_queue(server)
        with pytest.raises(Unsupported, match="darwin"):
            listen_queues(server.getsockname()[1])
        with pytest.raises(Unsupported):
            QueueSampler(sockets=[server]).start()
        with pytest.raises(Unsupported):
            QueueSampler(port=server.getsockname()[1]).start()


# -- listen_queues ---------------------------------------------------------------

@pytest.mark.system
@linux_only
def test_listen_queues_sees_the_same_queue_as_tcp_info() -> None:
    with listener(backlog=8) as server:
        port = server.getsockname()[1]
        rows = listen_queues(port)
        assert len(rows) == 1
        row = rows[0]
        assert row.local == f"127.0.0.1:{port}"
        assert (row.queue_len, row.backlog) == (0, None)
        with clients(port, 3):
            assert eventually(lambda: [r.queue_len for r in listen_queues(port)] == [3])
            assert accept_queue(server).queue_len == 3
            accept_all(server, 3)
            assert [r.queue_len for r in listen_queues(port)] == [0]


@pytest.mark.system
@linux_only
def test_listen_queues_shows_one_row_per_reuseport_socket() -> None:
    with listener(reuseport=True) as first:
        port = first.getsockname()[1]
        with listener(port=port, reuseport=True):
            rows = listen_queues(port)
    assert len(rows) == 2
    assert len({row.inode for row in rows}) == 2


@pytest.mark.system
@linux_only
def test_listen_queues_of_an_unused_port_is_empty() -> None:
    with listener() as server:
        port = server.getsockname()[1]
    assert listen_queues(port) == []


# -- QueueSampler ------------------------------------------------------------------

@pytest.mark.system
@linux_only
def test_sampler_sees_the_queue_grow_and_drain() -> None:
    with listener(backlog=8) as server:
        port = server.getsockname()[1]
        with QueueSampler(sockets=[server], interval=0.002) as sampler:
            with clients(port, 3):
                assert eventually(lambda: accept_queue(server).queue_len == 3)
                assert eventually(lambda: sampled(sampler, 3), timeout=5), "never saw 3 queued"
                accept_all(server, 3)
                rows = len(sampler.to_frame())
                # three samples after the accepts, every one of an empty queue
                assert eventually(lambda: len(sampler.to_frame()) >= rows + 3, timeout=5)
            sampler.stop()  # how long it takes: python -m bench.run_all --only timings
    frame = sampler.to_frame()
    assert list(frame.columns) == ["t_ns", "socket", "queue_len", "backlog"]
    assert str(frame["t_ns"].dtype) == "int64"
    assert str(frame["queue_len"].dtype) == "int64"
    assert str(frame["backlog"].dtype) == "Int64"
    assert pd.api.types.is_string_dtype(frame["socket"])
    assert len(frame) > 0
    assert set(frame["socket"]) == {"shared"}
    assert frame["queue_len"].max() == 3
    assert (frame["queue_len"].tail(3) == 0).all()
    assert (frame["backlog"] == 8).all()
    assert frame["t_ns"].is_monotonic_increasing
    assert not sampler.truncated


@pytest.mark.system
@linux_only
def test_sampler_by_port_reads_proc_and_skips_sockets_it_holds() -> None:
    with listener(reuseport=True) as first:
        port = first.getsockname()[1]
        with listener(port=port, reuseport=True):
            with QueueSampler(sockets=[first], port=port, interval=0.002) as sampler:
                assert eventually(lambda: len(sampler.to_frame()) >= 4)
    frame = sampler.to_frame()
    names = set(frame["socket"])
    assert "shared" in names
    others = names - {"shared"}
    assert len(others) == 1 and next(iter(others)).startswith("inode:")
    from_proc = frame[frame["socket"] != "shared"]
    assert from_proc["backlog"].isna().all()


@pytest.mark.system
@linux_only
def test_sampler_ends_quietly_when_the_socket_is_closed() -> None:
    with listener() as server:
        sampler = QueueSampler(sockets=[server], interval=0.002).start()
        assert eventually(lambda: len(sampler.to_frame()) > 0)
    assert eventually(lambda: sampler.stop_reason == "socket closed")
    rows = len(sampler.to_frame())
    time.sleep(0.02)
    assert len(sampler.to_frame()) == rows
    sampler.stop()
    sampler.stop()  # idempotent


@pytest.mark.system
@linux_only
def test_sampler_caps_rows_and_time() -> None:
    with listener() as server:
        with QueueSampler(sockets=[server], interval=0.001, max_rows=5) as capped:
            assert eventually(lambda: capped.stop_reason == "max_rows")
        assert len(capped.to_frame()) == 5 and capped.truncated
        with QueueSampler(sockets=[server], interval=0.001, max_seconds=0.05) as timed:
            assert eventually(lambda: timed.stop_reason == "max_seconds")
        assert not timed.truncated


def test_sampler_needs_something_to_watch() -> None:
    with pytest.raises(ValueError):
        QueueSampler()


def test_empty_sampler_frame_has_the_columns_and_dtypes() -> None:
    frame = QueueSampler(port=1).to_frame()
    assert list(frame.columns) == ["t_ns", "socket", "queue_len", "backlog"]
    assert str(frame["backlog"].dtype) == "Int64"
    assert len(frame) == 0


# -- voluntary_switches --------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="RUSAGE_THREAD is Linux-only")
def test_voluntary_switches_count_sleeps() -> None:
    before = voluntary_switches()
    assert isinstance(before, int)
    for _ in range(3):
        time.sleep(0.01)
    assert voluntary_switches() - before >= 1


def test_voluntary_switches_is_none_without_rusage_thread(monkeypatch) -> None:
    monkeypatch.delattr(kernel.resource, "RUSAGE_THREAD")  # as on macOS
    assert voluntary_switches() is None


# -- the flock facts the model's lock-fifo rule rests on (docs/sources.md, "flock-tree") -----

def _sleeps(pid: int) -> int:
    """How many times process ``pid`` has gone to sleep (its voluntary context switches)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in /proc/{pid}/status")


@pytest.mark.skipif(not LINUX, reason="reads /proc/PID/status; the lock tree is Linux's (5.0+)")
def test_a_lock_taken_out_of_turn_wakes_every_waiter_and_keeps_their_order(tmp_path) -> None:
    """Three processes wait for an ``flock`` in line; the holder unlocks and locks again before
    the first can run (it runs SCHED_FIFO on their one CPU), five times.  Each time, the first
    waiter wakes, finds the lock taken and blocks again, which wakes the others: every waiter
    sleeps once more per barge.  Then they get the lock in the order they came."""
    if not hasattr(os, "sched_setscheduler"):
        pytest.skip("needs sched_setscheduler")
    barges, path = 5, tmp_path / "lock"
    path.write_bytes(b"")
    order = tmp_path / "order"
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    cpu = {sorted(os.sched_getaffinity(0))[0]}
    waiters: list[int] = []
    try:
        for index in range(3):
            pid = os.fork()
            if pid == 0:  # a waiter: wait for the lock, write its number, let go
                try:
                    os.sched_setaffinity(0, cpu)
                    mine = os.open(path, os.O_RDWR)
                    fcntl.flock(mine, fcntl.LOCK_EX)
                    with open(order, "a") as file:
                        file.write(str(index))
                    fcntl.flock(mine, fcntl.LOCK_UN)
                finally:
                    os._exit(0)
            waiters.append(pid)
            assert wait_until(lambda: _in_flock(pid), timeout=5) is not None  # in line, in order
        original = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpu)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            os.sched_setaffinity(0, original)
            pytest.skip("SCHED_FIFO needs CAP_SYS_NICE: the barge cannot be forced")
        try:
            for _ in range(barges):
                before = [_sleeps(pid) for pid in waiters]
                fcntl.flock(holder, fcntl.LOCK_UN)  # wakes the first waiter, which cannot run yet
                fcntl.flock(holder, fcntl.LOCK_EX)  # ... so the holder takes it again
                slept_again = wait_until(
                    lambda: all(_sleeps(p) > b and _state(p) == "S" for p, b in zip(waiters, before)),
                    timeout=5, step=0.005)  # sleeping lets them run
                assert slept_again is not None, (
                    f"not every waiter slept again after a barge: "
                    f"{[_sleeps(p) - b for p, b in zip(waiters, before)]} more sleeps")
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.sched_setaffinity(0, original)
        fcntl.flock(holder, fcntl.LOCK_UN)
        for pid in waiters:
            os.waitpid(pid, 0)
        waiters.clear()
        assert order.read_text() == "012"
    finally:
        os.close(holder)
        for pid in waiters:  # only on a failure: end our own children
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _in_flock(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as wchan:
        where = wchan.read()  # locks_lock_inode_wait on 6.x; "0" where the kernel hides it
    return ("lock" in where or where in ("", "0")) and _state(pid) == "S"


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]
