"""inspect on real processes: the kit's own pools for every strategy, and a process we may not read.

Each pool is started with a known strategy; the inspection, made from /proc alone, must report
the layout that strategy builds (who holds which listener, how each worker waits) and match the
strategy back.  The waits are read at one instant: a worker could be caught between two waits,
so each check retries the inspection a few times (stated below) before failing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from acceptlab.real import topology as topo
from acceptlab.server.pool import WorkerPool
from acceptlab.linux.support import Unavailable, check_strategy

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc"),
              pytest.mark.system]

WAITS = {"blocking": "accept", "locked": "accept", "timeout": "poll", "poll": "poll",
         "epoll": "epoll", "epoll-exclusive": "epoll", "shared-epoll": "epoll",
         "reuseport": "accept"}
SCHEMA_KEYS = {"pid", "asked_pid", "found_from", "processes", "listeners", "tcp_migrate_req",
               "strategy", "prediction", "lock", "unreadable"}
THREAD_KEYS = {"tid", "waits_in", "on_fd", "listener_inode", "exclusive", "syscall", "fds",
               "listener_fd", "timeout_ms", "lock", "evidence"}


def _settled(pool: WorkerPool, strategy: str, tries: int = 20) -> topo.Topology:
    """Inspect until every worker waits as the strategy says (at most ``tries`` x 50 ms)."""
    for _ in range(tries):
        found = topo.topology(os.getpid())
        if found.strategy == strategy:
            return found
        time.sleep(0.05)
    return found


@pytest.mark.system
@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("strategy", list(WAITS))
def test_inspection_matches_the_pool_strategy(start_pool, strategy, kind):
    try:
        check_strategy(strategy, kind)
    except Unavailable as exc:
        pytest.skip(f"not on this machine: {exc}")
    pool = start_pool(workers=3, kind=kind, strategy=strategy)
    found = _settled(pool, strategy)
    assert found.strategy == strategy, topo.format_topology(found)
    assert not found.unreadable or found.unreadable == [
        "net.ipv4.tcp_migrate_req: absent (Linux < 5.14)"]
    port = pool.address[1]
    mine = [listener for listener in found.listeners if listener.port == port]
    expected_workers = sorted(pool.pids) if kind == "process" else [os.getpid()]
    assert found.workers == expected_workers
    if strategy == "reuseport":
        assert len(mine) >= 3  # one listener per worker (+ the pool's own)
    else:
        assert len(mine) == 1 and set(expected_workers) <= set(mine[0].held_by)
    waiting = [thread for pid in found.workers for thread in found.process(pid).threads
               if thread.listener_inode is not None]
    on_listener = 1 if strategy == "locked" else 3  # locked: one waiter, the rest in flock
    assert len(waiting) == on_listener
    assert {thread.waits_in for thread in waiting} == {WAITS[strategy]}
    assert all(thread.listener_fd in thread.fds and thread.evidence for thread in waiting)
    if strategy == "locked":  # the kit's locked strategy: flock on a shared file
        assert found.lock is not None and found.lock.kind == "flock", topo.format_topology(found)
    if WAITS[strategy] == "epoll":
        assert {thread.exclusive for thread in waiting} == {strategy == "epoll-exclusive"}
    assert {thread.listener_inode for thread in waiting} <= {listener.inode for listener in mine}
    assert found.prediction


@pytest.mark.system
def test_json_schema_is_the_documented_one(start_pool):
    pool = start_pool(workers=2, kind="process", strategy="blocking")
    found = _settled(pool, "blocking")
    document = json.loads(json.dumps(found.to_json()))
    assert set(document) == SCHEMA_KEYS
    assert document["pid"] == os.getpid()
    for process in document["processes"]:
        assert set(process) == {"pid", "ppid", "cmd", "threads"}
        for thread in process["threads"]:
            assert set(thread) == THREAD_KEYS
            assert thread["waits_in"] in ("accept", "epoll", "poll", "select", "other", "running")
            assert isinstance(thread["evidence"], str)
    for listener in document["listeners"]:
        assert set(listener) == {"inode", "address", "port", "held_by", "queue", "backlog",
                                 "defer_accept"}
        assert listener["backlog"] == 128 and listener["defer_accept"] == 0
    assert document["lock"] is None and document["asked_pid"] is None


def test_a_missing_process_is_one_line_from_the_cli():
    from acceptlab.cli import main

    with pytest.raises(ProcessLookupError):
        topo.topology(2 ** 22 + 12345)
    assert main(["inspect", str(2 ** 22 + 12345)]) == 2


@pytest.mark.system
def test_a_process_we_may_not_read_gives_a_partial_answer(start_pool):
    """An unprivileged inspector looks at a root-owned pool: what it cannot read is listed."""
    if os.geteuid() != 0:
        target, runner = 1, []  # not root: pid 1 belongs to someone else
    elif shutil.which("setpriv"):
        target, runner = None, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        pytest.skip("running as root without setpriv: cannot drop privileges to test this")
    start_pool(workers=2, kind="process", strategy="blocking")  # the pool to be inspected
    pid = target or os.getpid()
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(topo.__file__))}
    done = subprocess.run([*runner, sys.executable, "-m", "acceptlab", "inspect", str(pid),
                           "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert set(document) == SCHEMA_KEYS and document["pid"] == pid
    assert any(item.startswith(f"/proc/{pid}/fd") for item in document["unreadable"])
    assert any("/syscall" in item for item in document["unreadable"])
    assert document["processes"] and document["processes"][0]["cmd"]  # what is public still is


@pytest.mark.system
def test_a_thread_pool_is_found_beside_an_unrelated_child(start_pool):
    """A child of the inspected process that holds no listener is not a worker, even when a
    locked pool of threads has only one thread on the listener (the others wait in flock)."""
    import subprocess

    helper = subprocess.Popen(["sleep", "30"])  # our own child, ended by its pid below
    try:
        pool = start_pool(workers=3, kind="thread", strategy="locked")
        found = _settled(pool, "locked")
        assert found.workers == [os.getpid()], topo.format_topology(found)
        assert found.strategy == "locked"
    finally:
        helper.kill()
        helper.wait()
