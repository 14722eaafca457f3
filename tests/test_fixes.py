"""The ecosystem's fixes, each held to what it reliably does on real sockets.

Each test names the fix's promise and the margin it allows.  Where the
outcome depends on the scheduler, a test takes the best of three tries (the
promise must show at least once on a busy machine); where the design decides
(the acceptor deals in turn; a lock admits only the least busy process), one
try must show it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from acceptlab import WorkerPool, analysis, fire
from acceptlab.linux.support import Unavailable, check_strategy
from helpers import best_of, in_conversation, wait_until


def _need(strategy: str, kind: str = "process") -> None:
    try:
        check_strategy(strategy, kind)
    except Unavailable as exc:
        pytest.skip(f"not on this machine: {exc}")


def _order(pool: WorkerPool) -> list[int]:
    return analysis.accepted(pool.events())["worker"].astype(int).tolist()


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_handoff_deals_strict_turns_even_back_to_back(kind):
    """Node's SCHED_RR: the acceptor decides, so no pause between connections is needed."""
    _need("handoff", kind)
    with WorkerPool(workers=4, kind=kind, strategy="handoff") as pool:
        client = fire(pool.address, connections=80)  # gap=0: back to back
    assert client["ok"].all()
    assert _order(pool) == [k % 4 for k in range(80)]


@pytest.mark.system
@pytest.mark.serial
def test_handoff_least_busy_prefers_an_idle_process():
    """With long conversations the least-busy dealer never stacks two on one process while one is idle."""
    _need("handoff-least-busy", "hybrid")
    with WorkerPool(workers=2, kind="hybrid", threads=3, strategy="handoff-least-busy",
                    work="sleep:200") as pool:
        client = fire(pool.address, connections=4, concurrency=4)
    assert client["ok"].all()
    assert analysis.open_per_process(pool.events(), threads=3) == [2, 2]


@pytest.mark.system
@pytest.mark.serial
def test_exact_balance_admits_only_the_least_busy_process():
    """Envoy's exact balance: four long connections over two processes of three threads: 2 and 2.

    Plain blocking accept queues the threads in the order they started, so
    the first three connections go to process 0's three threads (3 and 1):
    printed for comparison, not asserted (it depends on start order).
    """
    _need("exact", "hybrid")
    counts = {}
    for strategy in ("blocking", "exact"):
        with WorkerPool(workers=2, kind="hybrid", threads=3, strategy=strategy, work="sleep:200") as pool:
            client = fire(pool.address, connections=4, concurrency=4)
        assert client["ok"].all()
        counts[strategy] = analysis.open_per_process(pool.events(), threads=3)
    print("open connections per process:", counts)
    assert max(counts["exact"]) - min(counts["exact"]) <= 1, counts


@pytest.mark.system
@pytest.mark.serial
def test_busy_sleep_sends_work_to_the_idle_process():
    """Puma's busy sleep: with two clients and two processes, a request rarely shares a process.

    Margin: at most 5 % of connections land on a busy process while another
    is idle, in the best of three tries (blocking was measured at 9-45 %).
    """
    _need("busy-sleep", "hybrid")

    def attempt():
        with WorkerPool(workers=2, kind="hybrid", threads=3, strategy="busy-sleep",
                        work="sleep:15") as pool:
            client = fire(pool.address, connections=80, concurrency=2)
        share = analysis.busy_while_idle(pool.events(), threads=3)
        return client["ok"].all() and share <= 0.05, round(share, 3)

    tries = best_of(3, attempt, good=lambda result: result[0])
    assert tries.ok, f"doubled-up shares in three tries: {[share for _, share in tries.values]}"


@pytest.mark.system
@pytest.mark.serial
def test_reorder_hands_the_load_on_every_16_accepts():
    """nginx's reordering: EPOLLEXCLUSIVE's one busy worker steps back after 16 connections.

    Prediction: the first 64 sequential connections come in four blocks of 16,
    each block a different worker.  Best of three tries (a busy machine can
    make a worker miss its turn).
    """
    _need("reorder")

    def attempt():
        with WorkerPool(workers=4, kind="process", strategy="reorder") as pool:
            fire(pool.address, connections=64, gap=0.001)
        order = _order(pool)
        blocks = [order[k:k + 16] for k in range(0, 64, 16)]
        ok = all(len(set(block)) == 1 for block in blocks) and len({b[0] for b in blocks}) == 4
        return ok, [sorted(set(block)) for block in blocks]

    tries = best_of(3, attempt, good=lambda result: result[0])
    assert tries.ok, f"blocks seen: {[blocks for _, blocks in tries.values]}"


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs to choose between")
@pytest.mark.parametrize("strategy", ["reuseport-cpu", "reuseport-incoming-cpu"])
def test_reuseport_by_cpu_keeps_a_connection_on_the_clients_cpu(strategy):
    """On loopback a SYN is handled on the client's CPU; pin the client and see where it lands.

    ``reuseport-cpu``: socket ``cpu % workers``, so all to worker ``cpu``.
    ``reuseport-incoming-cpu``: worker ``slot`` is tagged CPU ``slot % cpus``.
    """
    _need(strategy)
    cpus = os.cpu_count()
    saved = os.sched_getaffinity(0)
    try:
        for cpu in (0, 1):
            with WorkerPool(workers=4, kind="process", strategy=strategy) as pool:
                os.sched_setaffinity(0, {cpu})  # this thread, and the client thread it starts
                try:
                    client = fire(pool.address, connections=40)
                finally:
                    os.sched_setaffinity(0, saved)
            assert client["ok"].all()
            workers = set(_order(pool))
            expected = {cpu} if strategy == "reuseport-cpu" else {w for w in range(4)
                                                                     if w % cpus == cpu}
            assert workers <= expected, f"client on CPU {cpu}: accepted by {workers}"
    finally:
        os.sched_setaffinity(0, saved)


@pytest.mark.system
@pytest.mark.serial
def test_hybrid_kind_is_processes_of_threads():
    """kind='hybrid': P processes x T threads; slot p*T+t is thread t of process p."""
    with WorkerPool(workers=2, kind="hybrid", threads=3, strategy="blocking") as pool:
        client = fire(pool.address, connections=30, gap=0.001)
        pids = pool.pids
    events = pool.events()
    assert client["ok"].all()
    assert sorted(events["worker"].unique()) == list(range(6))
    by_slot = events.groupby("worker")["pid"].first()
    for slot, pid in by_slot.items():
        assert pid == pids[slot // 3], (slot, pid, pids)
    assert events.groupby("worker")["tid"].nunique().max() == 1
    assert events["tid"].nunique() == 6


@pytest.mark.system
@pytest.mark.serial
def test_hybrid_graceful_restart_finishes_the_conversation_in_hand():
    """Retiring a hybrid process lets its busy thread finish; no client fails.

    Three clients and four blocking threads waiting in turn: at least one of the three
    lands on process 0 (slots 0 and 1), whose 300 ms conversation is in hand when the
    restart comes.
    """
    with WorkerPool(workers=2, kind="hybrid", threads=2, strategy="blocking",
                    work="sleep:100") as pool:
        import threading

        results = {}
        thread = threading.Thread(target=lambda: results.update(
            client=fire(pool.address, connections=6, concurrency=3)))
        thread.start()
        assert wait_until(lambda: in_conversation(pool, workers=(0, 1)), timeout=10) is not None
        pool.restart(0, graceful=True)
        thread.join(10)
    assert results["client"]["ok"].all(), results["client"][["error"]].value_counts()
    assert len(pool.replacements) == 1
    assert pool.replacements[0].exit == "restarted gracefully"


def test_cpu_program_is_the_selftests_two_instructions_around_the_kits_modulo():
    """The selftest returns the CPU (``A = cpu; return A``); the ``A %= N`` between is the kit's."""
    from acceptlab.linux.bpf import cpu_program

    code = cpu_program(4)
    assert len(code) == 3 * 8
    steps = [np.frombuffer(code[k:k + 8], dtype="<u2,u1,u1,<u4")[0] for k in range(0, 24, 8)]
    assert [int(step[0]) for step in steps] == [0x20, 0x94, 0x16]
    assert int(steps[1][3]) == 4


def _accepts(rows: list[tuple[int, int, int | None]]):
    """A minimal event log: (worker, t_accept_ms, t_done_ms or None) per accepted connection."""
    import pandas as pd

    ms = 1_000_000
    return pd.DataFrame({
        "worker": [w for w, _, _ in rows],
        "outcome": ["accepted"] * len(rows),
        "t_accept_ns": [a * ms for _, a, _ in rows],
        "t_done_ns": pd.array([None if d is None else d * ms for _, _, d in rows], dtype="Int64"),
    })


def test_open_per_process_counts_what_each_process_holds_after_the_last_accept():
    # 2 processes x 3 threads: slots 0-2 are process 0, 3-5 process 1
    events = _accepts([(0, 0, 50), (1, 1, 50), (2, 2, 3), (3, 4, 50)])
    assert analysis.open_per_process(events, threads=3) == [2, 1]  # slot 2 finished at 3 ms
    assert analysis.open_per_process(events, threads=1) == [1, 1, 0, 1]


def test_busy_while_idle_counts_accepts_into_a_busy_process_while_another_is_idle():
    # process 0 = slots 0, 1; process 1 = slots 2, 3
    events = _accepts([(0, 0, 10),   # nothing open anywhere: fine
                       (1, 2, 10),   # process 0 busy (slot 0), process 1 idle: doubled up
                       (2, 3, 10),   # process 1 was idle: fine
                       (3, 4, 10)])  # both busy: no idle process to prefer
    assert analysis.busy_while_idle(events, threads=2) == 0.25
