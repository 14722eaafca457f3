"""observe where a worker cannot hold a connection before its data, or where nothing can be
attributed: the kit's own small servers (tests/topologies/accept_loops.py), no real server.

The defer-accept program's listener has TCP_DEFER_ACCEPT of 30 s: the kernel hands a
connection to accept() only once data arrives.  observe must see that, send each request's
first byte before it looks, attribute every connection, and keep every connection far from
the defer timeout (the README's promise: no connection waits for it).
"""

from __future__ import annotations

import os
import sys

import pytest
from test_classify import Topology

from acceptlab.linux.procfs import process_ids
from acceptlab.real.attribution import CannotAttribute, probe_deferral
from acceptlab.real.observe import observe
from acceptlab.server.pool import WorkerPool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

DEFER_SECONDS = 30  # accept_loops.DEFER_SECONDS


@pytest.mark.system
def test_a_deferring_listener_is_observed_after_the_first_byte():
    with Topology("defer-accept") as server:
        run = observe(server.pid, connections=100, gap=0.001, baseline=False)
    covered = run.meta["coverage"]
    assert run.meta["attribution"] == "first-byte"
    assert run.meta["defer_accept"] >= DEFER_SECONDS
    assert covered["ok"] == 100 and covered["coverage"] >= 0.99, covered
    assert covered["named"] == 100 and covered["disagree"] == 0, covered
    assert covered["agree"] == covered["attributed"]
    # The promise: no connection waits for the defer timeout.  A third of it is the margin.
    longest = (run.client["t_done_ns"] - run.client["t_start_ns"]).max() / 1e9
    assert longest < DEFER_SECONDS / 3, longest


@pytest.mark.system
def test_where_the_option_cannot_be_read_a_probe_finds_the_deferral(monkeypatch):
    """Without the right to duplicate the server's descriptor (pidfd_getfd), the inspection
    cannot read TCP_DEFER_ACCEPT; observe's probe connection tells instead."""
    from acceptlab.linux import peek

    def refused(pid, fd, level, option):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(peek, "socket_option", refused)
    with Topology("defer-accept") as server:
        run = observe(server.pid, connections=30, gap=0.001, baseline=False)
    assert run.meta["defer_accept"] is None
    assert any("TCP_DEFER_ACCEPT" in item for item in run.meta["inspection"]["unreadable"])
    assert run.meta["attribution"] == "first-byte"
    assert run.meta["coverage"]["coverage"] >= 0.99


@pytest.mark.system
def test_holding_the_whole_request_back_stops_early_and_says_why():
    """Forced before-request on a deferring listener: nobody ever holds the connection.  The
    run stops after the first few connections (not after the 400 asked for) with the reason."""
    with Topology("defer-accept") as server:
        with pytest.raises(CannotAttribute, match="SYN_RECV") as stopped:
            observe(server.pid, connections=400, gap=0.001, baseline=False,
                    attribution="before-request")
    assert "stopped after 5 connections" in str(stopped.value)


@pytest.mark.system
def test_the_probe_tells_a_deferring_listener_from_a_plain_one():
    with Topology("defer-accept") as server:
        assert probe_deferral(("127.0.0.1", server.port))
    with WorkerPool(workers=2, kind="process", strategy="blocking", protocol="http") as pool:
        assert not probe_deferral(pool.address)


@pytest.mark.system
def test_observing_a_worker_pid_observes_every_worker(caplog):
    import logging

    with Topology("flock-accept") as server:
        workers = sorted(pid for pid in process_ids() if _parent(pid) == server.pid)
        with caplog.at_level(logging.INFO, logger="acceptlab.real.observe"):
            run = observe(workers[-1], connections=60, gap=0.001, baseline=False)
    assert run.meta["worker_pids"] == workers
    assert run.meta["inspection"]["asked_pid"] == workers[-1]
    assert run.meta["inspection"]["pid"] == server.pid
    assert "common parent" in caplog.text
    assert run.meta["coverage"]["coverage"] >= 0.99
    assert run.meta["strategy"] == "locked"


@pytest.mark.system
def test_a_forced_look_after_the_reply_on_a_closing_server_stops_and_names_the_close():
    """The kit's http server closes once it has answered: a forced after-reply look finds
    nothing held, so the run stops after the first few connections with the reason."""
    with WorkerPool(workers=2, kind="process", strategy="blocking", protocol="http") as pool:
        with pytest.raises(CannotAttribute, match="closes each connection"):
            observe(os.getpid(), port=pool.address[1], connections=50, baseline=False,
                    attribution="after-reply")


def test_named_counts_every_reply_that_names_a_pid_attributed_or_not():
    from acceptlab.client.load import ConnectionRecord
    from acceptlab.real.observe import _coverage, _Observed

    def item(holder, named):
        return _Observed(ConnectionRecord(0, ok=True), holder=holder, named=named)

    covered = _coverage([item(10, 10), item(None, 11), item(None, None), item(12, 13)], [10, 12])
    assert covered["named"] == 3  # the unattributed reply that named 11 counts too
    assert (covered["attributed"], covered["agree"], covered["disagree"]) == (2, 1, 1)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return int(file.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None
