"""WorkerPool over real loopback sockets: kinds, start methods, supervisor, stop, orphans."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from acceptlab.server.pool import PortInUse, WorkerPool
from helpers import (STOP_DEADLINE, port_is_free, process_gone, stop_and_time, wait_until,
                     zen_round_trip)

pytestmark = pytest.mark.serial

START_METHODS = multiprocessing.get_all_start_methods()
KINDS = [("thread", None)] + [("process", method) for method in START_METHODS]


@pytest.mark.system
@pytest.mark.parametrize("kind, method", KINDS)
def test_pool_serves_stops_when_asked_and_frees_the_port(kind, method, caplog):
    pool = WorkerPool(workers=3, kind=kind, start_method=method).start()
    try:
        for _ in range(12):
            assert zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]
        assert pool.alive() == [True, True, True]
        assert [s.state for s in pool.status()] == ["serving"] * 3
    finally:
        took = stop_and_time(pool, caplog)
    # README: stop() "stops every worker within a second"; deadline 3x that (STOP_DEADLINE)
    assert took < STOP_DEADLINE, f"stop() took {took:.2f} s"
    assert not any(pool.alive())
    assert port_is_free(pool.address[1])
    events = pool.events()
    assert (events["outcome"] == "accepted").sum() == 12
    assert set(events["worker"]) <= {0, 1, 2}


@pytest.mark.system
def test_pool_is_a_context_manager_and_a_taken_port_is_named():
    with WorkerPool(workers=1, kind="thread") as pool:
        port = pool.address[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            WorkerPool(workers=1, kind="thread", port=port).start()
    assert port_is_free(port)


@pytest.mark.system
@pytest.mark.parametrize("method", START_METHODS)
def test_supervisor_replaces_a_killed_process_in_the_same_slot(method):
    with WorkerPool(workers=3, kind="process", start_method=method, interval=0.05) as pool:
        old = pool.idents[1]
        assert pool.pids == pool.idents  # a process worker: its pid is its ident
        pool.kill(1)
        assert wait_until(lambda: pool.replacements, timeout=5) is not None
        assert wait_until(lambda: all(pool.alive()), timeout=5) is not None
        replacement = pool.replacements[0]
        assert (replacement.slot, replacement.generation, replacement.pid) == (1, 0, old)
        assert replacement.exit == "exit code -9 (SIGKILL)"
        assert pool.idents[1] == replacement.new_pid != old
        for _ in range(9):
            zen_round_trip(pool.address)
    events = pool.events()
    assert set(events.loc[events["worker"] == 1, "generation"]) <= {0, 1}


@pytest.mark.system
def test_supervisor_replaces_a_crashed_thread():
    with WorkerPool(workers=2, kind="thread", interval=0.05) as pool:
        assert pool.pids == [os.getpid()] * 2  # threads run in the pool's own process
        assert len(set(pool.idents)) == 2 and os.getpid() not in pool.idents
        pool.kill(0)  # a thread cannot be killed: it crashes at its next connection
        failures = 0
        for _ in range(6):
            try:
                zen_round_trip(pool.address)
            except ConnectionError:
                failures += 1  # the connection the crashing thread held
        assert failures == 1
        assert wait_until(lambda: pool.replacements, timeout=5) is not None
        assert pool.replacements[0].exit == "crashed: InjectedCrash"
        assert wait_until(lambda: all(pool.alive()), timeout=5) is not None
        zen_round_trip(pool.address)


def test_unsupported_combination_is_refused_before_anything_starts():
    from acceptlab.linux.support import Unavailable

    with pytest.raises(Unavailable, match="shared-epoll.*kind='thread'"):
        WorkerPool(kind="process", strategy="shared-epoll")


PARENT = textwrap.dedent("""
    import sys, time
    from acceptlab.server.pool import WorkerPool
    if __name__ == "__main__":
        pool = WorkerPool(workers=3, kind="process", start_method=sys.argv[1]).start()
        print(pool.address[1], *pool.idents, flush=True)
        time.sleep(60)
""")


@pytest.mark.system
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", START_METHODS)
def test_sigkill_of_the_parent_leaves_no_orphan_and_frees_the_port(tmp_path, method):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                              text=True)
    try:
        port, *pids = map(int, parent.stdout.readline().split())
        assert len(pids) == 3 and not any(process_gone(pid) for pid in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
    # README: "each worker process notices within 0.2 s and exits by itself": 10x that
    took = wait_until(lambda: all(process_gone(pid) for pid in pids), timeout=10 * 0.2)
    assert took is not None, f"workers still alive 2 s after their parent's SIGKILL: {pids}"
    assert port_is_free(port)


@pytest.mark.system
def test_stop_is_idempotent_and_events_survive_it(start_pool):
    pool = start_pool(workers=2, kind="process")
    zen_round_trip(pool.address)
    pool.stop()
    pool.stop()
    assert (pool.events()["outcome"] == "accepted").sum() == 1


@pytest.mark.system
def test_a_new_pool_deletes_the_logs_of_pools_whose_process_was_killed():
    """A killed kernel cannot clean up its temporary event logs; the next pool does, and only those."""
    import tempfile
    from pathlib import Path

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    root = Path(tempfile.gettempdir())
    abandoned = Path(tempfile.mkdtemp(prefix=f"acceptlab-pool-{dead.pid}-", dir=root))
    (abandoned / "worker000-gen0000.events").write_bytes(b"\0" * 96)
    ours = Path(tempfile.mkdtemp(prefix=f"acceptlab-pool-{os.getpid()}-", dir=root))
    unrelated = Path(tempfile.mkdtemp(prefix="acceptlab-pool-notapid-", dir=root))
    try:
        with WorkerPool(workers=1, kind="thread") as pool:
            assert Path(pool.log_dir).name.startswith(f"acceptlab-pool-{os.getpid()}-")
        assert not abandoned.exists()
        assert ours.exists() and unrelated.exists()
    finally:
        for path in (abandoned, ours, unrelated):
            if path.exists():
                path.joinpath("worker000-gen0000.events").unlink(missing_ok=True)
                path.rmdir()


@pytest.mark.system
def test_spawn_from_code_typed_into_python_says_why_its_workers_die():
    """`python -` has no file for spawn to re-import: the error says so instead of just 'exit 1'."""
    code = ("from acceptlab import WorkerPool\n"
            "if __name__ == '__main__':\n"
            "    WorkerPool(workers=1, start_method='spawn').start()\n")
    done = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "WorkerBootError" in last and "died while starting" in last, last
    assert "re-import __main__" in last, last
