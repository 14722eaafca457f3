"""The load generator over real loopback sockets: both engines, the duration, the mismatch.

``fire(processes >= 2)`` with a closed loop runs the epoll engine
(:mod:`acceptlab.client.lean`, one per client process) instead of a thread per
client.  It is the throughput mode (bench/ compares it with wrk), so it must
keep the promises of the other modes: one row per attempt, every connection
number accounted for, errors named by cause, retries, the same table as the
threads for the same server, and bounds on count and time.  Both engines hold
their conversations through the same ClientConversation (tested without
sockets in test_client_conversation.py); these tests hold the engines to it.

Time bounds: the README promises that every load is bounded in count and in time, and
``fire``'s docstring that it returns within a second after its duration (issue 11).  What
shows that a mechanism worked is asserted from the rows themselves (``unfinished`` rows: the
duration cut them; ``timeout`` rows: the timeout did); the only wall-clock bounds left are
deadlines three times the promised bound, far below what a broken mechanism would take (the
30 s timeouts, the 60 s durations, the ten million connections).  How close to the promise
the loads really end is a benchmark: ``python -m bench.run_all --only timings``.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from acceptlab.client.lean import LEAN
from acceptlab.client.load import (CLIENT_COLUMNS, CLIENT_NULLABLE, ProtocolMismatch,
                            describe_errors, fire)
from acceptlab.server.pool import WorkerPool
from helpers import best_of, wait_until

lean_only = pytest.mark.skipif(not LEAN, reason="the epoll engine needs epoll (Linux)")
PROMISE = 1.0  # seconds past the duration (or the stop) within which fire() returns (issue 11)


def deadline(bound: float) -> float:
    """Three times a promised bound: a test's margin for a busy machine (README: every load is
    bounded in count and time); the bench compares the real figure with the bound itself."""
    return 3 * bound


@pytest.fixture(scope="module")
def zen_pool():
    with WorkerPool(workers=2, kind="thread", protocol="zen") as pool:
        yield pool


@pytest.fixture(scope="module")
def http_pool():
    with WorkerPool(workers=2, kind="thread", protocol="http") as pool:
        yield pool


@contextlib.contextmanager
def holding_server(greeting: bytes = b""):
    """A loopback server that accepts every connection, sends ``greeting`` at once (b'': never
    says a word) and holds the connection open until the end; it counts what it accepted.

    ``caught_up()`` waits until the server has accepted every connection the kernel queued
    for it so far: until two of its accept() calls found nothing (a call that times out
    found the queue empty for its whole 20 ms, and the second one began after the check).
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    listener.settimeout(0.02)
    held: list[socket.socket] = []
    idle_accepts = [0]  # accept() calls that found the queue empty
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                idle_accepts[0] += 1
                continue
            held.append(conn)
            if greeting:
                with contextlib.suppress(OSError):
                    conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        def caught_up(timeout: float = 10) -> bool:
            since = idle_accepts[0]
            return wait_until(lambda: idle_accepts[0] >= since + 2, timeout) is not None

        yield SimpleNamespace(address=listener.getsockname(), accepted=lambda: len(held),
                              caught_up=caught_up)
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound then closed: refused until someone takes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_every_connection_once(client, connections: int) -> None:
    assert list(client.columns) == list(CLIENT_COLUMNS)
    assert sorted(client["conn"]) == list(range(connections))
    assert client["ok"].all(), client[~client["ok"]]
    assert client["local_port"].notna().all()
    assert (client["t_start_ns"] <= client["t_connected_ns"]).all()
    assert (client["t_connected_ns"] <= client["t_reply_ns"]).all()
    assert (client["t_reply_ns"] <= client["t_done_ns"]).all()


def timed(**kwargs):
    """fire(**kwargs), and the seconds it took."""
    started = time.monotonic()
    client = fire(**kwargs)
    return client, time.monotonic() - started


# -- the same table from both engines ----------------------------------------------------------

def comparable(client):
    """What must be equal between two loads of the same server: everything but the clock
    readings, the ports and which worker served (the kernel's choice), whose presence must
    be equal though."""
    rows = client.sort_values(["conn", "attempt"]).reset_index(drop=True)
    shape = rows[["conn", "attempt", "ok", "error"]].copy()
    for name in CLIENT_NULLABLE:
        shape[f"has_{name}"] = rows[name].notna()
    return shape


def assert_same_table(lean, threads) -> None:
    assert list(lean.columns) == list(threads.columns) == list(CLIENT_COLUMNS)
    assert list(lean.dtypes) == list(threads.dtypes)
    assert comparable(lean).equals(comparable(threads)), (
        comparable(lean).compare(comparable(threads)))


@pytest.mark.system
@lean_only
@pytest.mark.parametrize("pool_name", ["zen_pool", "http_pool"])
def test_the_epoll_engine_and_the_threads_give_the_same_table(pool_name, request):
    pool = request.getfixturevalue(pool_name)
    common = dict(protocol=pool.protocol, connections=60, concurrency=4)
    lean = fire(pool.address, processes=2, **common)
    threads = fire(pool.address, processes=1, **common)
    assert_every_connection_once(threads, 60)
    assert_same_table(lean, threads)
    if pool.protocol == "http":
        assert set(lean["worker"]) | set(threads["worker"]) <= {0, 1}


@pytest.mark.system
@lean_only
def test_both_engines_give_the_same_table_for_a_refusing_and_a_silent_server():
    refusing = dict(address=("127.0.0.1", closed_port()), connections=6, concurrency=3,
                    retries=2)
    assert_same_table(fire(processes=2, **refusing), fire(processes=1, **refusing))
    with holding_server() as silent:
        quiet = dict(address=silent.address, connections=4, concurrency=2, timeout=0.3)
        lean, threads = fire(processes=2, **quiet), fire(processes=1, **quiet)
    assert_same_table(lean, threads)
    assert (lean["error"] == "timeout").all()


@pytest.mark.system
@lean_only
def test_the_epoll_engine_records_every_connection_once(zen_pool):
    client = fire(zen_pool.address, connections=300, concurrency=8, processes=2)
    assert_every_connection_once(client, 300)
    assert (client["attempt"] == 1).all()


@pytest.mark.system
@lean_only
def test_the_epoll_engine_reads_the_serving_worker_from_http_replies(http_pool):
    client = fire(http_pool.address, protocol="http", connections=100, concurrency=4,
                  processes=2)
    assert_every_connection_once(client, 100)
    assert client["worker"].notna().all() and set(client["worker"]) <= {0, 1}


@pytest.mark.system
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_the_server_log_accepted_exactly_the_clients_connections(start_pool, processes):
    """A pool of its own (its log holds this load only): the ports the client recorded are
    exactly the peers the workers accepted, one for one."""
    pool = start_pool(workers=2, kind="thread", protocol="zen")
    client = fire(pool.address, connections=100, concurrency=8, processes=processes)
    assert_every_connection_once(client, 100)

    def accepted():
        events = pool.events()
        return events.loc[events["outcome"] == "accepted", "peer_port"]

    assert wait_until(lambda: len(accepted()) >= 100, timeout=5) is not None
    ports = accepted()
    assert len(ports) == 100 and ports.is_unique
    assert set(ports) == set(client["local_port"])


# -- failures are rows ---------------------------------------------------------------------------

@pytest.mark.system
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_refused_connections_are_rows_with_their_cause_and_every_retry_is_a_row(processes):
    port = closed_port()
    client = fire(("127.0.0.1", port), connections=10, concurrency=3, processes=processes,
                  retries=2)
    assert len(client) == 10 * 3
    assert (client["error"] == "refused").all() and not client["ok"].any()
    assert sorted(client.groupby("conn")["attempt"].max()) == [3] * 10
    assert describe_errors(client) == {"refused": f"30 (nothing listens on 127.0.0.1:{port})"}


@pytest.mark.system
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_a_server_that_never_answers_times_out_after_timeout_and_one_probe(processes):
    """timeout, then the probe's wait: every row says ``timeout``.  Had the timeout not ended
    them, the 20 s duration would have, and the rows would say ``unfinished``."""
    with holding_server() as silent:
        client = fire(silent.address, connections=4, concurrency=4, processes=processes,
                      timeout=0.3, duration=20)
    assert (client["error"] == "timeout").all() and len(client) == 4, \
        client["error"].value_counts()


def test_a_client_that_cannot_even_make_a_socket_gets_a_failed_row(monkeypatch):
    """Out of file descriptors (EMFILE): the attempt is a row with its cause, not an exception."""
    import errno

    from acceptlab.client import threads

    def no_more_files(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(threads.socket, "socket", no_more_files)
    client = fire(("127.0.0.1", 9), connections=3, retries=1)
    assert len(client) == 6 and not client["ok"].any()
    assert (client["error"] == "OSError").all()


# -- the duration is a promise -------------------------------------------------------------------

@pytest.mark.system
@pytest.mark.serial
@pytest.mark.parametrize("processes", [1, 2])
def test_the_duration_bounds_a_load_whatever_its_count(zen_pool, processes):
    """Starting client processes counts against the duration (about 0.3-1 s each here, more
    on a busy machine), so only the bound is asserted for them, not how much they fired."""
    client, took = timed(address=zen_pool.address, connections=10_000_000, concurrency=2,
                         processes=processes, duration=2.0)
    assert len(client) < 10_000_000 and client["ok"].all()
    # README: every load is bounded in time (duration + 1 s): a deadline of 3x that
    assert took < deadline(2.0 + PROMISE), f"a 2 s load took {took:.2f} s"
    if processes == 1:
        assert len(client) > 0


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only), 8])
def test_the_duration_holds_against_a_server_that_accepts_and_never_answers(processes):
    """8 client processes, a timeout far past the duration: the duration still ends it.

    What is in flight at the end is cut and recorded as ``unfinished``, never
    waited for; a client process still starting when the time is up (spawn
    is slow on a busy machine) hands in nothing, and ``late_processes`` says so.
    """
    duration = 2.0
    with holding_server() as silent:
        client, took = timed(address=silent.address, connections=1000, concurrency=2,
                             processes=processes, duration=duration, timeout=30)
    # The duration cut every connection (a timeout would say "timeout", after 30 s) ...
    assert (client["error"] == "unfinished").all(), client["error"].value_counts()
    # ... and in time.  README: every load is bounded in time (duration + 1 s): 3x that
    assert took < deadline(duration + PROMISE), f"a {duration} s load took {took:.2f} s"
    handed_in = processes - client.attrs["late_processes"]
    # Each process's two clients, cut in their first wait (none, if it started too late).
    assert len(client) <= 2 * handed_in and len(client) % 2 == 0
    if processes == 1:
        assert len(client) == 2
    print(f"\n{processes} client processes: {handed_in} handed in, {took:.2f} s")


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_a_stop_event_ends_the_load_early_and_keeps_its_rows(processes):
    """The CLI sets ``stop`` on Ctrl-C: the load ends GRACE later, rows and all (the 60 s
    duration and the 30 s timeout would end it much later, with other rows)."""
    stop = threading.Event()
    stopped_at: list[float] = []

    def press_ctrl_c() -> None:
        stopped_at.append(time.monotonic())
        stop.set()

    with holding_server() as silent:
        timer = threading.Timer(1.5, press_ctrl_c)  # after the client processes have started
        timer.start()
        try:
            client = fire(silent.address, connections=100, concurrency=2, processes=processes,
                          duration=60, timeout=30, stop=stop)
            after_stop = time.monotonic() - stopped_at[0]
        finally:
            timer.cancel()
    assert client.attrs["stopped"] and (client["error"] == "unfinished").all()
    # README: Ctrl-C stops the load within a second (GRACE is 0.25 s of it): 3x that
    assert after_stop < deadline(PROMISE), f"fire() returned {after_stop:.2f} s after the stop"


# -- the wrong protocol: one connection, one line ------------------------------------------------

@pytest.mark.system
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_an_http_client_at_a_zen_server_is_told_at_once(zen_pool, processes):
    with pytest.raises(ProtocolMismatch) as caught:
        fire(zen_pool.address, protocol="http", connections=50, processes=processes)
    message = str(caught.value)
    assert "'Error: unknown aphorism.'" in message and message.endswith("try --protocol zen")
    assert "\n" not in message and isinstance(caught.value, ValueError)


@pytest.mark.system
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=lean_only)])
def test_a_zen_client_at_an_http_server_is_told_after_one_timeout(http_pool, processes):
    """An HTTP server waits for a blank line that zen never sends: after the timeout the
    probe makes it answer ('400 Bad Request'), which names it."""
    with pytest.raises(ProtocolMismatch, match=r"'HTTP/1.0 400 .*try --protocol http$"):
        fire(http_pool.address, connections=50, concurrency=4, processes=processes,
             timeout=0.5)


@pytest.mark.system
@pytest.mark.parametrize("processes, concurrency", [(1, 1), (1, 4), pytest.param(2, 4,
                                                                               marks=lean_only)])
def test_the_load_stops_after_the_first_connection_that_shows_a_mismatch(processes, concurrency):
    """A server answering HTTP at once: no connection starts after the first mismatch, so the
    server sees at most the connections already in flight, not the 200 asked for."""
    with holding_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as http_like:
        with pytest.raises(ProtocolMismatch, match="try --protocol http$"):
            fire(http_like.address, connections=200, concurrency=concurrency,
                 processes=processes)
        assert http_like.caught_up(), "the server never caught up with the kernel's queue"
        assert 1 <= http_like.accepted() <= processes * concurrency


@pytest.mark.system
def test_garbage_is_a_mismatch_with_no_protocol_to_suggest():
    with holding_server(b"\x16\x03\x01\x00\xa5\x01\x00") as garbled:
        with pytest.raises(ProtocolMismatch, match="no protocol the kit knows") as caught:
            fire(garbled.address, connections=5)
    assert caught.value.likely == "" and caught.value.received.startswith(b"\x16\x03")


@pytest.mark.system
def test_the_issue_11_case_a_zen_load_at_python_http_server_stops_with_one_line(tmp_path):
    """``python3 -m http.server`` used to cost 5 s per connection and end in timeouts; now the
    first connection's timeout (2 s) and probe name it, and no second connection is made:
    the server's own log shows one request (it logs each before answering it).  How long
    that takes is in ``python -m bench.run_all --only timings``."""
    log = tmp_path / "http.server.log"
    with log.open("w") as server_log:
        server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind",
                                   "127.0.0.1", "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=server_log, text=True)
        try:
            line = server.stdout.readline()
            port = int(re.search(r"port (\d+)", line).group(1))
            with pytest.raises(ProtocolMismatch) as caught:
                fire(("127.0.0.1", port), connections=50, concurrency=1)
        finally:
            server.terminate()
            server.wait(5)
            server.stdout.close()
    # What it sends depends on the Python version: "HTTP/1.0 400 ..." or, treating the
    # version-less request line as HTTP/0.9, an HTML error page with no status line.
    assert str(caught.value).endswith("try --protocol http"), caught.value
    requests = [line for line in log.read_text().splitlines()
                if re.search(r'" \d{3} ', line)]
    assert len(requests) == 1, f"http.server saw {len(requests)} requests: {requests}"


@pytest.mark.system
def test_protocol_and_the_options_are_keywords():
    with pytest.raises(TypeError):
        fire(("127.0.0.1", closed_port()), "zen", 10)  # the old positional call


# -- the progress bar ----------------------------------------------------------------------------

@pytest.mark.system
def test_the_progress_rate_is_over_the_loads_wall_time(zen_pool, capsys):
    """tqdm's default rate is a moving average of the last updates, which once showed 352462
    conn/s for 20 connections; the bar's rate must not exceed connections over the time they
    took (the bar runs from before the first start to after the last end)."""
    client = fire(zen_pool.address, connections=20, progress=True)
    rates = re.findall(r"([\d.]+)conn/s", capsys.readouterr().err)
    assert rates, "no rate in the progress bar"
    span = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9
    assert float(rates[-1]) <= 20 / span * 1.01, (rates[-1], 20 / span)


# -- the open loop ------------------------------------------------------------------------------
# Arrivals at Poisson times: gaps drawn from random.Random(seed).expovariate(rate), so with a
# seed the schedule is known exactly and the test can compare what was achieved against it.
# Stated tolerance: the achieved start rate within 10 % of the seeded schedule's (the rest is
# this shared machine's scheduling: sleeps overshoot, threads start late).

def seeded_schedule_rate(rate: float, connections: int, seed: int) -> float:
    """The rate the seeded schedule asks for, between the first and the last start."""
    pace = random.Random(seed)
    gaps = [pace.expovariate(rate) for _ in range(connections)]
    return (connections - 1) / sum(gaps[1:])


def achieved_rate(client) -> float:
    first = client[client["attempt"] == 1]
    starts = first["t_start_ns"].sort_values()
    return (len(starts) - 1) / ((starts.iloc[-1] - starts.iloc[0]) / 1e9)


@pytest.mark.system
@pytest.mark.serial
def test_the_open_loop_keeps_its_rate_within_ten_percent_and_its_seeded_gaps_best_of_three(
        zen_pool):
    """The achieved rate is the seeded schedule's (10 %), and the gaps are the schedule's own
    exponential gaps: ranked, they agree with the gaps asked for (Spearman's rank correlation
    at least 0.3; evenly paced starts, or unseeded ones, give 0 +- 0.06 over 300 gaps).

    Ranks, not sizes: a busy machine stretches the short gaps (a late start shortens the next
    gap by as much, since the schedule is absolute), which moves a size statistic such as the
    median-to-mean ratio (measured 0.36-0.93 here under load, 0.67 asked) but keeps the long
    gaps long.  Scheduling decides when each start really happens: best of three tries, 1 s
    each.
    """
    rate, connections, seed = 300.0, 300, 7
    wanted = seeded_schedule_rate(rate, connections, seed)
    pace = random.Random(seed)
    asked = pd.Series([pace.expovariate(rate) for _ in range(connections)][1:])

    def measure():
        client = fire(zen_pool.address, connections=connections, rate=rate, seed=seed)
        assert client["ok"].all() and len(client) == connections
        starts = client.sort_values("conn")["t_start_ns"].reset_index(drop=True)
        gaps = starts.diff().dropna().reset_index(drop=True)
        return achieved_rate(client), gaps.rank().corr(asked.reset_index(drop=True).rank())

    tries = best_of(3, measure, lambda v: v[0] == pytest.approx(wanted, rel=0.10) and v[1] >= 0.3)
    achieved, agreement = tries.last
    assert achieved == pytest.approx(wanted, rel=0.10), tries.values
    assert agreement >= 0.3, f"(rate, rank agreement) of each try: {tries.values}"


@pytest.mark.system
@pytest.mark.serial
def test_the_open_loop_does_not_wait_for_a_slow_server(start_pool):
    """Arrivals keep their schedule when the server falls behind: that is what makes queues grow.

    2 workers, 20 ms per question, 3 questions: about 33 connections/s at most. Fired at
    150/s, the starts keep (nearly) 150/s while the replies fall further and further behind.
    """
    rate, connections, seed = 150.0, 60, 11
    slow = start_pool(workers=2, kind="thread", work="sleep:20")
    client = fire(slow.address, connections=connections, rate=rate, seed=seed, timeout=10)
    assert client["ok"].all()
    assert achieved_rate(client) == pytest.approx(seeded_schedule_rate(rate, connections, seed),
                                                  rel=0.10)
    latency = (client["t_done_ns"] - client["t_start_ns"]) / 1e6
    first, last = latency.iloc[:10].median(), latency.iloc[-10:].median()
    assert last > 3 * first, f"latency did not grow: first {first:.0f} ms, last {last:.0f} ms"


@pytest.mark.system
@pytest.mark.parametrize("bad", [dict(retries=-1), dict(rate=0), dict(rate=-5), dict(timeout=0)])
def test_fire_refuses_settings_that_would_silently_do_something_else(bad):
    with pytest.raises(ValueError):
        fire(("127.0.0.1", closed_port()), connections=1, **bad)
