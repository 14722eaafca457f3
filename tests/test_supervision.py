"""The supervisor's harder cases: crash loops, restarts on purpose, a port already taken, readiness.

All over real processes, threads and loopback sockets.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from acceptlab.server.conversation import recv_until
from acceptlab.linux.kernel import listen_queues
from acceptlab.linux.procfs import parent_of
from acceptlab.server.pool import PortInUse, WorkerPool
from acceptlab.server.protocol import ZEN
from helpers import port_is_free, process_gone, wait_until, zen_round_trip

pytestmark = pytest.mark.serial

LINUX = sys.platform.startswith("linux")
# A retired worker leaves like one that stop() asks to: README, "stops every worker within a
# second"; three times that here.  (A broken retirement leaves it waiting for ever.)
LEAVE_DEADLINE = 3 * 1.0

# -- a crash loop ends (issue 11, item 1) -------------------------------------------------------

CRASH_LOOP = textwrap.dedent("""
    # A main module that raises when a spawn child re-imports it, once a flag file exists:
    # the pool starts fine, then every replacement dies before it is ready.
    import json, os, sys, time
    FLAG = sys.argv[1]
    if __name__ == "__mp_main__" and os.path.exists(FLAG):
        raise RuntimeError("this main module refuses to be imported again")
    if __name__ == "__main__":
        from acceptlab.server.pool import WorkerBootError, WorkerPool
        from helpers import zen_round_trip
        pool = WorkerPool(workers=2, kind="process", start_method="spawn", interval=0.05).start()
        open(FLAG, "w").close()
        pool.kill(0)
        counts = []
        for _ in range(4):                 # 2 s, counting replacements every half second
            time.sleep(0.5)
            counts.append(len(pool.replacements))
        status = pool.status()
        try:
            pool.check()
            raised = ""
        except WorkerBootError as error:
            raised = str(error)
        try:
            pool.kill(1)                   # the caller's next call raises the slot's error
            kill_raised = False
        except WorkerBootError:
            kill_raised = True
        served = zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]
        print(json.dumps({"counts": counts, "states": [s.state for s in status],
                          "failures": status[0].boot_failures, "raised": raised,
                          "kill_raised": kill_raised, "alive": pool.alive(),
                          "served": served}), flush=True)
        pool.stop()
""")


@pytest.mark.system
def test_a_replacement_that_cannot_boot_is_retried_three_times_then_left_down(tmp_path):
    """Before: 17 respawns in 2 s, and no end.  Now: 3 boot attempts, then the slot stays down."""
    script = tmp_path / "crash_loop.py"
    script.write_text(CRASH_LOOP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "broken")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The killed worker's replacement plus two retries: three boot attempts, then no more.
    assert result["counts"][-1] == 3, result
    assert result["counts"][-2] == result["counts"][-1], f"still respawning: {result['counts']}"
    assert result["states"] == ["down", "serving"] and result["failures"] == 3
    assert result["alive"] == [False, True] and result["served"]  # slot 1 still serves
    assert result["kill_raised"]
    raised = result["raised"]
    assert raised.startswith("worker 0 died while starting, 3 times in a row (exit code 1)")
    assert "RuntimeError: this main module refuses to be imported again" in raised
    # One line per retry and one for giving up: the log says what happened, once each.
    assert done.stderr.count("retrying") == 2 and done.stderr.count("left down") == 1


@pytest.mark.system
def test_a_pool_whose_workers_cannot_boot_fails_to_start_after_its_attempts(tmp_path):
    code = textwrap.dedent("""
        from acceptlab.server.pool import WorkerPool
        if __name__ == "__main__":
            WorkerPool(workers=1, start_method="spawn", boot_attempts=2).start()
    """)
    done = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                          timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert "WorkerBootError: worker 0 died while starting, 2 times in a row (exit code 1)" in last
    assert "re-import __main__" in last  # the usual cause, named


def test_boot_attempts_must_be_positive():
    with pytest.raises(ValueError, match="boot_attempts"):
        WorkerPool(boot_attempts=0)


# -- no silent joining (issue 11, item 6) ---------------------------------------------------------

@pytest.mark.system
@pytest.mark.skipif(not LINUX, reason="only Linux balances SO_REUSEPORT (the strategy is refused elsewhere)")
def test_a_second_reuseport_pool_on_a_taken_port_is_refused_unless_it_joins_on_purpose():
    with WorkerPool(workers=2, kind="thread", strategy="reuseport") as first:
        port = first.address[1]
        second = WorkerPool(workers=2, kind="thread", strategy="reuseport", port=port)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use.*join"):
            second.start()
        assert len(listen_queues(port)) == 2  # the refused pool left nothing behind
        with WorkerPool(workers=2, kind="thread", strategy="reuseport", port=port,
                        join_port=True) as joined:
            assert len(listen_queues(port)) == 4  # one group of four sockets: on purpose
            for _ in range(8):
                zen_round_trip((first.address[0], port))
            assert joined.address[1] == port
    assert port_is_free(port)


@pytest.mark.system
@pytest.mark.skipif(not LINUX, reason="only Linux balances SO_REUSEPORT (the strategy is refused elsewhere)")
def test_a_reuseport_pool_refuses_a_port_any_other_server_listens_on():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            WorkerPool(workers=1, kind="thread", strategy="reuseport", port=port).start()


# -- restarts on purpose (issue 15's restart(slot, graceful=...)) --------------------------------

def half_a_conversation(address):
    """A client that has asked its first question and got its answer: a connection in flight."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(ZEN.questions[0])
    assert recv_until(sock, ZEN.reply_end) == b"Ugly."
    return sock


def finish(sock) -> list[bytes]:
    with sock:
        replies = []
        for question in ZEN.questions[1:]:
            sock.sendall(question)
            replies.append(recv_until(sock, ZEN.reply_end))
        return replies


def restart_in_background(pool, slot, graceful):
    thread = threading.Thread(target=pool.restart, args=(slot,), kwargs={"graceful": graceful})
    thread.start()
    return thread


@pytest.mark.system
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_graceful_restart_finishes_the_conversation_in_flight(kind):
    with WorkerPool(workers=1, kind=kind, interval=0.05) as pool:
        old = pool.idents[0]
        client = half_a_conversation(pool.address)  # the only worker is talking to us
        restarting = restart_in_background(pool, 0, graceful=True)
        restarting.join(10)
        assert not restarting.is_alive(), "restart() did not return once the new worker was ready"
        assert pool.status()[0].state == "serving" and pool.idents[0] != old
        assert finish(client) == [b"Implicit.", b"Complex."]  # the old worker finished it
        assert zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]
        (replacement,) = pool.replacements
        assert (replacement.slot, replacement.generation, replacement.pid) == (0, 0, old)
        assert replacement.exit == "restarted gracefully"
        if kind == "process":
            assert wait_until(lambda: process_gone(old), timeout=LEAVE_DEADLINE) is not None
        assert wait_until(lambda: old not in {t.native_id for t in threading.enumerate()},
                          timeout=LEAVE_DEADLINE) is not None
    events = pool.events()
    accepted = events[events["outcome"] == "accepted"]
    assert list(accepted["generation"]) == [0, 1]  # ours on the old worker, the next on the new
    assert pd.notna(accepted["t_done_ns"].iloc[0])  # the old worker recorded the end of ours


@pytest.mark.system
def test_a_graceful_restart_of_an_idle_process_ends_its_wait_at_once(start_pool):
    """A process asleep in accept() is retired by a signal: it need not wait for a connection."""
    pool = start_pool(workers=2, kind="process")
    old = pool.idents[1]
    pool.restart(1)
    # not "when a connection comes" (none will): a broken retirement waits for ever
    assert wait_until(lambda: process_gone(old), timeout=LEAVE_DEADLINE) is not None
    for _ in range(4):
        zen_round_trip(pool.address)


@pytest.mark.system
@pytest.mark.skipif(not LINUX, reason="only Linux balances SO_REUSEPORT (the strategy is refused elsewhere)")
def test_a_graceful_restart_of_an_idle_reuseport_thread_closes_its_own_socket_at_once(start_pool):
    """A thread waiting on a socket of its own is woken by shutting that socket: it leaves now."""
    pool = start_pool(workers=2, kind="thread", strategy="reuseport")
    old = pool.idents[1]
    pool.restart(1)
    assert wait_until(lambda: old not in {t.native_id for t in threading.enumerate()},
                      timeout=LEAVE_DEADLINE) is not None
    assert len(listen_queues(pool.address[1])) == 2  # the old socket is gone, the new one bound
    for _ in range(8):
        zen_round_trip(pool.address)


@pytest.mark.system
def test_a_killing_restart_cuts_the_conversation_and_replaces_the_worker(start_pool):
    pool = start_pool(workers=1, kind="process")
    old = pool.idents[0]
    client = half_a_conversation(pool.address)
    pool.restart(0, graceful=False)
    with pytest.raises(ConnectionError):
        finish(client)
    assert process_gone(old)
    (replacement,) = pool.replacements
    assert replacement.exit == "restarted: killed" and replacement.new_pid == pool.idents[0]
    assert zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]


def asleep_in_accept(tid: int) -> bool:
    """Does the kernel show thread ``tid`` of this process asleep in accept()?"""
    return Path(f"/proc/self/task/{tid}/wchan").read_text() == "inet_csk_accept"


@pytest.mark.system
@pytest.mark.skipif(not LINUX, reason="reads the kernel's wchan of a thread from /proc")
def test_a_killing_restart_of_a_thread_crashes_it_at_its_next_connection(start_pool):
    """A thread cannot be killed: as with kill(), it crashes on the next connection it accepts."""
    pool = start_pool(workers=1, kind="thread", interval=0.05)
    old = pool.idents[0]
    # Ready means "about to wait": for a thread that may still want the GIL, so the test
    # waits until the kernel has the old thread asleep in accept(), ahead of the new one.
    assert wait_until(lambda: asleep_in_accept(old), timeout=10) is not None
    pool.restart(0, graceful=False)
    new = pool.idents[0]
    assert pool.status()[0].state == "serving" and new != old
    # Again ready is "about to wait": a new thread on its way to accept() would take the
    # connection from the queue itself, before the woken old one runs (lesson 02's race).
    assert wait_until(lambda: asleep_in_accept(new), timeout=10) is not None
    # The old thread sleeps in accept() ahead of the new one (the kernel's FIFO), so it
    # takes the next connection and crashes with it; the one after is the new thread's.
    with pytest.raises(ConnectionError):
        zen_round_trip(pool.address)
    assert zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]
    assert pool.replacements[0].exit == "restarted: killed"


@pytest.mark.system
@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                    reason="this platform has no fork server")
def test_a_dead_fork_server_is_not_a_dead_worker(start_pool):
    """Under forkserver, multiprocessing hears how a worker ended from the fork server.

    If the fork server dies (a kernel restart SIGTERMs it with the workers), every
    worker looks ended (exit code 255) while it still serves: the supervisor must not
    start a second worker per slot, and stop() must still end the first.
    """
    pool = start_pool(workers=2, kind="process", start_method="forkserver", interval=0.05)
    workers = pool.pids
    server = parent_of(workers[0])
    assert parent_of(workers[1]) == server and parent_of(server) == os.getpid()  # ours
    os.kill(server, signal.SIGKILL)
    assert wait_until(lambda: process_gone(server), timeout=LEAVE_DEADLINE) is not None
    time.sleep(0.5)  # ten looks of the supervisor
    assert pool.replacements == [] and pool.pids == workers and pool.alive() == [True, True]
    assert zen_round_trip(pool.address) == [b"Ugly.", b"Implicit.", b"Complex."]
    pool.stop()
    assert wait_until(lambda: all(process_gone(p) for p in workers),
                      timeout=LEAVE_DEADLINE) is not None, "stop() left the workers running"


# -- readiness is a signal from the worker, not a file ---------------------------------------------

@pytest.mark.system
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_without_an_event_log_a_pool_starts_serves_and_writes_no_file(start_pool, kind):
    pool = start_pool(workers=2, kind=kind, record=False)
    zen_round_trip(pool.address)
    assert [s.state for s in pool.status()] == ["serving", "serving"]
    assert not list(Path(pool.log_dir).glob("*.events"))


def test_a_slots_life_is_a_table_and_an_illegal_move_raises():
    """The supervisor's states move only along TRANSITIONS (h11's _state.py is the model)."""
    from acceptlab.server.supervisor import TRANSITIONS, SlotEvent, SlotState, _Slot

    assert {state for state, _ in TRANSITIONS} | set(TRANSITIONS.values()) == set(SlotState)
    assert {event for _, event in TRANSITIONS} == set(SlotEvent)
    slot = _Slot(worker=None)  # type: ignore[arg-type]
    for event, state in ((SlotEvent.BOOT_FAILED, "retrying"), (SlotEvent.BACKOFF_OVER, "starting"),
                         (SlotEvent.READY, "serving"), (SlotEvent.DIED, "starting")):
        slot.move(event)
        assert slot.state == state
    with pytest.raises(RuntimeError, match="cannot take BACKOFF_OVER"):
        slot.move(SlotEvent.BACKOFF_OVER)
