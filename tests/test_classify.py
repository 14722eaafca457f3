"""inspect names each accept topology from the evidence, with the right prediction.

Each topology is built by a small program of the kit's own (tests/topologies/accept_loops.py):
no real server is needed.  The program prints ``ready PORT PID`` and then waits; the
inspection reads its layout from /proc (and the process's memory) and must name the strategy,
the lock's kind and the prediction that follow.  One read is one instant (a worker may be
caught between two waits), so each check inspects until the expected name appears, at most
``TRIES`` times 50 ms apart, and reports the last inspection if it never does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acceptlab.real import locking
from acceptlab.real import topology as topo

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
              pytest.mark.system]

PROGRAM = Path(__file__).parent / "topologies" / "accept_loops.py"
TRIES = 60
WORKERS = 3

# topology -> (strategy, lock kind, the sentence the prediction starts with)
EXPECTED = {
    "pi-mutex-epoll": ("locked", "pi-futex", locking.LOCK_PREDICTIONS["pi-futex"]),
    "flock-accept": ("locked", "flock", locking.LOCK_PREDICTIONS["flock"]),
    "fcntl-accept": ("locked", "fcntl", locking.LOCK_PREDICTIONS["fcntl"]),
    "sysvsem-accept": ("locked", "sysv-sem", locking.LOCK_PREDICTIONS["sysv-sem"]),
    "defer-accept": ("blocking", None, topo.PREDICTIONS["blocking"]),
    "master-polls-pipe": ("blocking", None, topo.PREDICTIONS["blocking"]),
    "reuseport": ("reuseport", None, topo.PREDICTIONS["reuseport"]),
    "epoll-exclusive": ("epoll-exclusive", None, topo.PREDICTIONS["epoll-exclusive"]),
    "thread-pool": ("handoff", None, locking.POOL_PREDICTION),
}


class Topology:
    """One running topology program: its port and root pid; stopped by its pid."""

    def __init__(self, name: str, workers: int = WORKERS) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(topo.__file__).parents[2])}
        self.process = subprocess.Popen([sys.executable, str(PROGRAM), name, "--workers",
                                         str(workers)], stdout=subprocess.PIPE, text=True,
                                        env=env)
        line = self.process.stdout.readline().split()
        if len(line) != 3 or line[0] != "ready":
            self.stop()
            raise RuntimeError(f"{name} did not start: {line}")
        self.port, self.pid = int(line[1]), int(line[2])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def settled(pid: int, strategy: str, lock: str | None = None,
            workers: int | None = None) -> topo.Topology:
    """Inspect until the expected strategy (and lock kind, and number of workers) appear; the
    last read otherwise.  (The listeners and the threads are read a moment apart: a worker
    that starts listening in between is seen waiting on a socket the listener list lacks.)"""
    for _ in range(TRIES):
        found = topo.topology(pid)
        if (found.strategy == strategy
                and (lock is None or (found.lock and found.lock.kind == lock))
                and (workers is None or len(found.workers) == workers)):
            return found
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_topology_gets_its_name_and_prediction(name):
    strategy, kind, sentence = EXPECTED[name]
    expected_workers = 1 if name == "thread-pool" else WORKERS
    with Topology(name) as server:
        found = settled(server.pid, strategy, kind, expected_workers)
        shown = topo.format_topology(found)
        assert found.strategy == strategy, shown
        assert found.prediction.startswith(sentence), shown
        if kind is None:
            assert found.lock is None, shown
        else:
            assert found.lock is not None and found.lock.kind == kind, shown
            holder_pid, holder_tid = found.lock.holder
            assert holder_pid in found.workers and len(found.lock.waiters) >= 1, shown
            assert {pid for pid, _ in found.lock.waiters} <= set(found.workers), shown
            if kind in ("pi-futex", "flock", "fcntl"):  # the lock itself names its holder
                assert found.lock.owner == (holder_tid if kind == "pi-futex" else holder_pid), shown
        assert len(found.workers) == expected_workers, shown
        mine = [listener for listener in found.listeners if listener.port == server.port]
        assert len(mine) == (WORKERS if name == "reuseport" else 1), shown
        for process in found.processes:
            for thread in process.threads:  # every claim of a listener comes with its evidence
                if thread.listener_inode is not None:
                    assert thread.listener_fd in thread.fds and thread.evidence, shown
        document = found.to_json()
        assert document["strategy"] == strategy
        assert (document["lock"] or {}).get("kind") == kind


def test_the_deferring_listener_says_so():
    with Topology("defer-accept") as server:
        found = settled(server.pid, "blocking")
        (listener,) = [item for item in found.listeners if item.port == server.port]
        # the kernel reports the option rounded up to whole retransmissions: >= what was set
        assert listener.defer_accept is not None and listener.defer_accept >= 30
        assert "TCP_DEFER_ACCEPT" in topo.format_topology(found)


def test_a_master_polling_a_pipe_is_not_waiting_for_the_listener():
    with Topology("master-polls-pipe") as server:
        found = settled(server.pid, "blocking")
        (master,) = [thread for thread in found.process(server.pid).threads]
        shown = topo.format_topology(found)
        assert master.waits_in == "poll" and master.listener_inode is None, shown
        assert master.fds is not None and master.fds, shown  # the pipe, read from its memory
        assert not set(master.fds) & set(found.process(server.pid).listener_fds), shown
        assert f"/proc/{server.pid}/mem" in master.evidence, shown
        assert master.to_json()["listener_fd"] is None


def test_any_worker_pid_finds_the_whole_server():
    with Topology("flock-accept") as server:
        first = settled(server.pid, "locked", "flock")
        for worker in first.workers:
            found = topo.topology(worker)
            assert found.pid == server.pid and found.asked_pid == worker
            assert found.found_from and "common parent" in found.found_from
            assert sorted(found.listeners[0].held_by) == sorted([server.pid, *first.workers])
            assert f"process {worker}: " in topo.format_topology(found)
        assert first.asked_pid is None and first.found_from is None  # the root: nothing to say


def test_a_poll_set_that_cannot_be_read_is_unknown_not_the_listener(monkeypatch):
    """Where /proc/PID/mem cannot be read, the set is unknown and no listener is claimed."""
    from acceptlab.linux import peek

    def refused(pid, address, size):
        raise PermissionError(13, "Permission denied", f"/proc/{pid}/mem")

    with Topology("master-polls-pipe") as server:
        settled(server.pid, "blocking")
        monkeypatch.setattr(peek, "read_memory", refused)
        found = topo.topology(server.pid)
    (master,) = found.process(server.pid).threads
    assert master.waits_in == "poll" and master.fds is None and master.listener_inode is None
    assert "unknown" in master.evidence and "Permission denied" in master.evidence
    assert "set unknown" in topo.format_topology(found)
    assert any("/mem" in item for item in found.unreadable)
