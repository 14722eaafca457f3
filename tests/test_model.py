"""The model of the wait queue (acceptlab.model): each rule on tiny cases whose answer is known.

Most tests use a made-up calibration whose times are constants (:func:`steady`), so a
simulated run is exact: the answer follows from the rule alone.  The calibration's
plumbing is tested by calibrating the model on runs the model itself made (its readings
must give back the constants it was given).  The tests marked ``system`` calibrate this
machine for real, briefly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from acceptlab import analysis
from acceptlab.model import (METRICS, RULES, Calibration, HerdTable, NotModelled, Pool,
                             Scenario, calibration, inside, measure, predict, rule_for, simulate)
from acceptlab.model import describe, readings
from acceptlab.model.cpu import Cores, Gil
from acceptlab.model.engine import Simulation
from acceptlab.model.pools import PATHS, VERSION
from acceptlab.model.rules import MECHANISMS, NOT_MODELLED
from acceptlab.registry import STRATEGY_RECORDS
from acceptlab.server.strategies import STRATEGIES

REGIMES = ("busy", "idle", "loaded", "open")


def pool(kind: str = "process", regime: str = "busy", path: str = "accept", **changes) -> Pool:
    """A pool of constant times (µs): connect 50, talk 100, a sleeper takes it 20 after connect().

    No count of pairs: its race probabilities are exact, not estimates a calibration's size
    leaves uncertain (see test_a_race_never_seen_in_a_calibration_is_rare_not_impossible)."""
    values = dict(kind=kind, regime=regime, path=path, connect=(50.0,), talk=(100.0,),
                  woke=(20.0,), lead=10.0, lag_prompt=(-5.0,), lag_late=(100.0,), ret=(1.0,),
                  pause=(5.0,), p_late_win=0.0, p_late_lose=0.0, off_win=(30.0,),
                  off_lose=(150.0,), stray=0.0, pairs=0)
    values.update(changes)
    return Pool(**values)


def steady(*, ranks=(0.0,), p_eagain: float = 0.0, shared_ranks=(1.0,), shared_eagain=0.0,
           cpus: int = 2, cores: float = 2.0, gil_us: float = 0.0, worker_cpu_us: float = 0.0,
           **changes) -> Calibration:
    """A calibration with constant times; ``changes`` go into every pool (every path and regime)."""
    pools = {f"{path}-{kind}-{regime}": (pool(kind, regime, path, **changes),)
             for path in PATHS for kind in ("process", "thread") for regime in REGIMES}
    herds = {f"{family}-{regime}": (HerdTable(family, regime, tuple(ranks), p_eagain),)
             for family in ("poll", "epoll") for regime in ("busy", "idle")}
    herds["shared-busy"] = (HerdTable("shared", "busy", tuple(shared_ranks), shared_eagain),)
    return Calibration(source="measured", created="2026-01-01T00:00:00", machine={"cpus": cpus},
                       load_average=(0.0, 0.0, 0.0), cpus=cpus, client_cpu_us=100.0,
                       worker_cpu_us=worker_cpu_us, cores=(cores,), thread_cores=(min(1.0, cores),),
                       spin_spread=(1.0,), thread_switches=(0.0,),
                       gil_us=(gil_us,), open_gil_us=(gil_us,), timer_slack_us=50.0,
                       pools=pools, herds=herds)


def run(strategy: str, *, calibration: Calibration | None = None, workers: int = 4,
        connections: int = 40, seed: int = 0, **load):
    scenario = Scenario(strategy=strategy, workers=workers, connections=connections, **load)
    events, client = simulate(scenario, calibration or steady(), seed=seed)
    return events, client, measure(events, client, workers)


def order(events) -> list[int]:
    return analysis.accepted(events)["worker"].tolist()


def latencies(client) -> np.ndarray:
    return ((client["t_done_ns"] - client["t_start_ns"]) / 1e3).to_numpy()


# --------------------------------------------------------------------------- one place per fact


def test_the_rules_table_is_read_from_the_strategy_records():
    assert set(RULES) == set(STRATEGIES) == set(STRATEGY_RECORDS)
    for name, record in STRATEGY_RECORDS.items():
        assert RULES[name] == record.model_rule
        if record.model_rule is None:
            assert NOT_MODELLED[name] == record.not_modelled
            with pytest.raises(NotModelled, match="not modelled"):
                rule_for(name)
        else:
            assert MECHANISMS[record.model_rule].mechanism == record.model_rule
            assert name not in NOT_MODELLED
    # every mechanism simulates some strategy, and every rule's path is calibrated
    assert set(MECHANISMS) == {m for m in RULES.values() if m is not None}
    assert {rule.path for rule in MECHANISMS.values()} <= set(PATHS)


def test_a_record_must_name_a_rule_or_say_why_not():
    record = STRATEGY_RECORDS["blocking"]
    with pytest.raises(ValueError, match="model_rule"):
        dataclasses.replace(record, model_rule=None)
    with pytest.raises(ValueError, match="model_rule"):
        dataclasses.replace(record, not_modelled="because")


def test_reorders_block_length_is_its_records_option():
    from acceptlab.model.rules import ReRegistering

    assert ReRegistering.every == STRATEGY_RECORDS["reorder"].options["every"]


def test_a_strategy_for_the_wrong_kind_is_not_modelled_and_says_why():
    with pytest.raises(NotModelled, match="thread"):
        rule_for("shared-epoll", "process")
    with pytest.raises(NotModelled, match="hybrid"):
        Scenario(strategy="busy-sleep", workers=2, connections=4, kind="hybrid")


# --------------------------------------------------------------------------- each rule, exactly


def test_blocking_with_a_gap_takes_exact_turns_in_slot_order():
    events, _, m = run("blocking", gap=0.001)
    assert order(events) == [0, 1, 2, 3] * 10
    assert m["rr_score"] == 1.0 and m["busiest_share"] == 0.25 and m["mean_rank"] == 0.0
    assert m["wakeups_per_accept"] == 1.0 and m["returns_per_accept"] == 1.0


def test_blocking_without_a_gap_keeps_turns_while_the_returning_worker_is_prompt():
    events, _, _ = run("blocking", gap=0.0)
    assert order(events) == [0, 1, 2, 3] * 10


def test_blocking_without_a_gap_a_late_returning_worker_takes_every_next_connection():
    late = steady(p_late_win=1.0)
    events, _, m = run("blocking", calibration=late, gap=0.0)
    assert order(events) == [0] * 40  # it was back after the arrival and before the woken head
    assert m["rr_score"] == 0.0 and m["busiest_share"] == 1.0
    # Every arrival still woke the head, which found nothing and went to the tail: a wakeup,
    # and no return.  Those waits never end, so (as in a live run) their wakeups are never
    # logged: only the first connection's, which worker 0 slept for, counts.
    assert m["returns_per_accept"] == 1.0 and m["eagain_per_accept"] == 0.0
    assert m["wakeups_per_accept"] == 1 / 40


def test_late_but_losing_returning_workers_leave_the_turns_alone():
    events, _, _ = run("blocking", calibration=steady(p_late_lose=1.0), gap=0.0)
    assert order(events) == [0, 1, 2, 3] * 10


def test_epoll_exclusive_under_light_load_gives_everything_to_the_first_registered():
    events, _, m = run("epoll-exclusive", gap=0.001)
    assert set(order(events)) == {0}
    assert m["busiest_share"] == 1.0 and m["wakeups_per_accept"] == 1.0


def test_epoll_exclusive_wakes_the_next_registered_while_the_first_is_busy():
    # Two clients at once: when the second connection arrives, worker 0 is busy.
    events, _, _ = run("epoll-exclusive", concurrency=2, connections=2)
    assert sorted(order(events)) == [0, 1]


def test_epoll_exclusive_races_with_the_times_of_its_own_path():
    # Prompt returns: the first registered takes everything.  Late (and losing) on the
    # exclusive path only: each worker is passed over after its connection, so the
    # connections go round; accept()'s path, prompt, is not what epoll-exclusive uses.
    events, _, _ = run("epoll-exclusive", gap=0.0, connections=6)
    assert order(events) == [0] * 6
    late = steady()
    exclusive = pool(path="exclusive", p_late_lose=1.0, off_lose=(500.0,))
    late = dataclasses.replace(late, pools={**late.pools, "exclusive-process-busy": (exclusive,)})
    events, _, _ = run("epoll-exclusive", calibration=late, gap=0.0, connections=6)
    assert order(events) == [0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("share, herd_share, expected", [
    (1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (None, 1.0, 1.0), (None, 0.0, 0.0)])
def test_epoll_exclusive_losers_see_eagain_as_often_as_its_own_path_measured(
        share, herd_share, expected):
    # Always late and still first (late-win): the sleeper woken for each connection after
    # the first runs once the returning worker has taken it.  It sees EAGAIN as often as the
    # exclusive path's calibration runs saw per late-win; where they said nothing
    # (None), as often as an epoll herd's losers.
    late = steady(p_eagain=herd_share)
    exclusive = pool(path="exclusive", p_late_win=1.0, eagain_per_win=share)
    late = dataclasses.replace(late, pools={**late.pools, "exclusive-process-busy": (exclusive,)})
    events, _, m = run("epoll-exclusive", calibration=late, gap=0.0, connections=40)
    assert order(events) == [0] * 40
    assert m["eagain_per_accept"] == expected * 39 / 40


def test_reorder_hands_over_in_blocks_of_16():
    events, _, _ = run("reorder", gap=0.001, connections=80)
    assert order(events) == [0] * 16 + [1] * 16 + [2] * 16 + [3] * 16 + [0] * 16


def test_a_herd_wakes_every_idle_worker_and_the_losers_go_back_to_sleep_unseen():
    _, _, m = run("poll", gap=0.001, connections=200)
    # 4 wakeups per connection, but the wakeups of the last waits (which never end) are
    # lost, as in a live run.
    assert 3.9 <= m["wakeups_per_accept"] <= 4.0
    assert m["returns_per_accept"] == 1.0 and m["eagain_per_accept"] == 0.0


def test_a_herd_whose_losers_all_see_eagain_returns_once_per_woken_worker():
    _, _, m = run("poll", calibration=steady(p_eagain=1.0), gap=0.001, connections=200)
    assert m["wakeups_per_accept"] == 4.0
    assert m["eagain_per_accept"] == 3.0 and m["returns_per_accept"] == 4.0


def test_timeout_is_the_poll_herd_whose_losers_never_return_to_python():
    """CPython's accept() with a timeout polls again in C: a loser's wakeup, never an EAGAIN."""
    _, _, m = run("timeout", calibration=steady(p_eagain=1.0), gap=0.001, connections=200)
    assert 3.9 <= m["wakeups_per_accept"] <= 4.0  # the herd still wakes (nearly) every worker
    assert m["eagain_per_accept"] == 0.0 and m["returns_per_accept"] == 1.0
    _, _, poll = run("poll", calibration=steady(p_eagain=1.0), gap=0.001, connections=200)
    assert poll["eagain_per_accept"] == 3.0  # the same calibration: poll's losers do return


def test_exact_is_the_poll_herd_whose_losers_may_sleep_on_the_lock_as_well():
    """Its own table: every loser comes back with EAGAIN (p_eagain 1) and sleeps on the lock
    (p_switch 2: two switches per race lost); a calibration without it falls back to poll's."""
    locked = steady(p_eagain=1.0)
    locked = dataclasses.replace(locked, herds={
        **locked.herds, "exact-busy": (HerdTable("exact", "busy", (0.0,), 1.0, 2.0),),
        "exact-idle": (HerdTable("exact", "idle", (0.0,), 1.0, 2.0),)})
    _, _, m = run("exact", calibration=locked, gap=0.001, connections=200)
    assert m["eagain_per_accept"] == 3.0 and m["returns_per_accept"] == 4.0
    assert m["wakeups_per_accept"] == 1.0 + 3 * 2.0
    _, _, poll = run("exact", calibration=steady(p_eagain=1.0), gap=0.001, connections=200)
    assert poll["wakeups_per_accept"] == 4.0 and poll["eagain_per_accept"] == 3.0


def test_busy_sleep_is_the_poll_herd_raced_as_its_own_calibration_run_raced():
    """Its own table (family busy-sleep): the latest waiter wins and every loser comes back
    with EAGAIN, where poll's table has the longest waiter win and no loser return; a
    calibration without it falls back to poll's."""
    own = steady()
    own = dataclasses.replace(own, herds={
        **own.herds, "busy-sleep-busy": (HerdTable("busy-sleep", "busy", (1.0,), 1.0),)})
    _, _, m = run("busy-sleep", calibration=own, gap=0.001, connections=200)
    assert m["mean_rank"] == 1.0 and m["eagain_per_accept"] == 3.0
    _, _, poll = run("busy-sleep", calibration=steady(), gap=0.001, connections=200)
    assert poll["mean_rank"] == 0.0 and poll["eagain_per_accept"] == 0.0


@pytest.mark.parametrize("strategy", ["poll", "epoll"])
def test_a_herd_won_by_the_longest_waiter_takes_turns_and_by_the_latest_does_not(strategy):
    _, _, m_longest = run(strategy, gap=0.001)
    assert m_longest["rr_score"] == 1.0 and m_longest["mean_rank"] == 0.0
    _, _, m_latest = run(strategy, calibration=steady(ranks=(1.0,)), gap=0.001)
    assert m_latest["mean_rank"] == 1.0 and m_latest["busiest_share"] == 1.0


def test_a_herd_that_favours_one_worker_gives_it_every_race_it_is_woken_for():
    """favoured 1: the run's favourite wins whenever it sleeps among the woken.  With a gap
    every worker is back asleep before the next connection, so it wins all of them; the
    ranks (the longest waiter, which alone takes turns) decide nothing any more."""
    favouring = steady()
    favouring = dataclasses.replace(favouring, herds={
        name: tuple(dataclasses.replace(t, favoured=1.0) for t in tables)
        for name, tables in favouring.herds.items()})
    for strategy in ("poll", "epoll", "busy-sleep"):
        events, _, m = run(strategy, calibration=favouring, gap=0.001, connections=100)
        assert m["busiest_share"] == 1.0 and len(set(order(events))) == 1
        _, _, fair = run(strategy, gap=0.001, connections=100)  # favoured 0: the ranks decide
        assert fair["busiest_share"] == 0.25 and fair["rr_score"] == 1.0


def _log(rows: list[tuple]):
    """A live-looking run from its waits: (worker, t_wait, t_wake, outcome, nvcsw) each, in ns;
    accept() 1 µs after the wake, the conversation over 0.5 µs later."""
    events = pd.DataFrame(rows, columns=["worker", "t_wait_ns", "t_wake_ns", "outcome", "nvcsw"])
    events["t_wake_ns"] = events["t_wake_ns"].astype("Int64")
    events["nvcsw"] = events["nvcsw"].astype("Int64")
    events["t_accept_ns"] = events["t_wake_ns"] + 1_000
    events["t_done_ns"] = events["t_wake_ns"] + 1_500
    events["peer_port"] = pd.array([40_000 + i for i in range(len(events))], dtype="Int64")
    return SimpleNamespace(events=events, meta={})


def _herd_run(winners: list[int], workers: int = 3):
    """A herd run: every worker waits from the start; connection k, 100 µs apart, is won by
    ``winners[k]`` (its wait ends and a new one begins at once)."""

    rows, since = [], [0] * workers
    for k, who in enumerate(winners):
        t = (k + 1) * 100_000
        rows.append((who, since[who], t, "accepted", 1))
        since[who] = t + 2_000
    return _log(rows + [(w, since[w], pd.NA, "waiting", pd.NA) for w in range(workers)])


def test_a_herd_table_reads_how_strongly_a_run_favoured_one_worker():
    """Judged on other races than the favourite was picked from: a worker that wins them all
    is favoured 1; strict turns (each worker a third, as a fair draw among three would
    give on average) are favoured 0, though their busiest worker has a third, not less."""
    from acceptlab.model.readings import read_herds

    always = read_herds(_herd_run([1] * 40), family="poll", regime="busy")
    assert [t.favoured for t in always] == [1.0, 1.0]  # one value per run, in each part
    turns = read_herds(_herd_run([0, 1, 2] * 14), family="poll", regime="busy")
    assert [t.favoured for t in turns] == [0.0, 0.0]
    few = read_herds(_herd_run([1] * 12), family="poll", regime="busy")
    assert [t.favoured for t in few] == [0.0, 0.0]  # too few races to judge


def test_a_thread_pool_adds_the_switches_its_calibration_counted_beyond_one():
    """Threads wait for the GIL after accept() returns: the busy thread pool's stray
    switches (0.5 a connection here) are added to a thread run, not to a process run."""
    calib = steady()
    calib = dataclasses.replace(calib, pools={
        **calib.pools, "accept-thread-busy": (pool("thread", "busy", stray=0.5),)})
    _, _, threads = run("blocking", calibration=calib, kind="thread", gap=0.001, connections=400)
    _, _, processes = run("blocking", calibration=calib, gap=0.001, connections=400)
    assert processes["wakeups_per_accept"] == 1.0
    assert 1.4 <= threads["wakeups_per_accept"] <= 1.6  # 1.5, binomial over 400 (margin 4 sd)


def test_a_wait_returns_as_long_after_its_take_as_the_calibrations_waits_that_never_slept():
    """accept() makes the socket before it returns: the log's t_wake of a wait that found its
    connection queued is that long after the wait began (live: 13-20 us); without it, such a
    winner always looks like the most recent waiter."""
    for enter, low, high in (((), 0.0, 0.5), ((15.0,), 14.5, 15.0)):
        events, _, _ = run("blocking", calibration=steady(enter=enter, p_late_win=1.0),
                           connections=60)
        won = analysis.accepted(events)
        unslept = won[won["nvcsw"] == 0]
        waited = (unslept["t_wake_ns"] - unslept["t_wait_ns"]) / 1e3
        assert len(unslept) > 30 and low <= waited.min() and waited.max() <= high
        assert ((won["t_accept_ns"] - won["t_wake_ns"]) / 1e3 <= 0.5).all()


def test_a_closed_loop_takes_its_connect_as_an_uncontended_connection_had_it():
    """The loaded runs' connect holds the waits for the client's GIL of their own shape (and
    the connection is queued long before connect() returns): the model adds its own waits to
    the busy runs' connect instead, so the loaded pool's connect of 500 us is not used."""
    calib = steady()
    calib = dataclasses.replace(calib, pools={
        **calib.pools,
        "accept-process-loaded": (pool("process", "loaded", connect=(500.0,), lead=400.0),)})
    _, client, _ = run("blocking", calibration=calib, concurrency=2, connections=40)
    connect = (client["t_connected_ns"] - client["t_start_ns"]) / 1e3
    assert (connect == 50.0).all()  # the busy pool's, and no GIL to wait for (gil_us 0)


def test_a_closed_loops_conversations_are_as_uneven_as_the_calibrations_closed_loop_had_them():
    """The loaded runs' talks of 50, 100 and 150 us are half, once and one and a half times
    their median: a closed loop without work draws its conversations (100 us uncontended,
    no GIL to wait for here) out by as much; a closed loop of sleeping workers, which the
    calibration never ran, keeps them as they are."""
    calib = steady()
    calib = dataclasses.replace(calib, pools={
        **calib.pools,
        "accept-process-loaded": (pool("process", "loaded", talk=(50.0, 100.0, 150.0)),)})
    events, client, _ = run("blocking", calibration=calib, concurrency=2, connections=300)
    won = analysis.accepted(events).set_index("peer_port")["t_accept_ns"]
    talk = (client.set_index("local_port")["t_done_ns"] - won) / 1e3
    assert set(np.round(talk, 6)) == {50.0, 100.0, 150.0}
    events, client, _ = run("blocking", calibration=calib, concurrency=2, connections=40,
                            work="sleep:1")
    won = analysis.accepted(events).set_index("peer_port")["t_accept_ns"]
    talk = (client.set_index("local_port")["t_done_ns"] - won) / 1e3
    assert set(np.round(talk - 3 * (1000 + 50 + 30), 6)) == {100.0}  # 3 sleeps, each overshooting


def test_a_rank_measured_among_three_keeps_its_mean_among_more():
    sim = Simulation(Scenario("poll", 2, 1), steady(), np.random.default_rng(1))
    places = [sim.place(0.5, 4) for _ in range(4000)]  # 0.5 among 4 sleepers: index 1 or 2
    assert set(places) == {1, 2}
    assert abs(np.mean(places) / 3 - 0.5) < 0.03  # the normalised mean survives (stated margin)
    assert {sim.place(0.0, 4), sim.place(1.0, 4)} == {0, 3}


def test_reuseport_counts_spread_like_a_fair_die():
    counts = []
    for seed in range(40):
        events, _, _ = run("reuseport", gap=0.001, connections=200, seed=seed)
        counts += np.bincount(order(events), minlength=4).tolist()
    counts = np.asarray(counts, dtype=float)
    # Binomial(200, 1/4): mean 50, variance 37.5; 160 counts estimate both well (stated margins).
    assert abs(counts.mean() - 50) < 0.01  # every connection lands somewhere: exactly 50
    assert 25 < counts.var() < 55


def test_reuseport_never_lets_a_worker_take_another_workers_connection():
    events, _, m = run("reuseport", gap=0.001, connections=100, seed=3)
    assert m["wakeups_per_accept"] == 1.0  # each owner was asleep in its own queue, and woken
    assert m["rr_score"] < 1.0  # no turns


def test_the_lock_keeps_turns_without_a_gap_at_two_wakeups_per_connection():
    events, _, m = run("locked", calibration=steady(p_late_win=1.0), gap=0.0)
    assert order(events) == [0, 1, 2, 3] * 10  # a late worker waits for the lock in line
    # (the very first connection's holder slept once: it held the lock before any unlock)
    assert m["wakeups_per_accept"] == pytest.approx(2.0, abs=1 / 40)


def test_a_worker_back_before_the_woken_waiter_runs_barges_in_and_takes_the_lock():
    # The unlock wakes the next waiter, which needs 510 µs to run; the worker that just
    # accepted is back after its 100 µs talk, finds the lock free and takes it again.
    events, _, m = run("locked", calibration=steady(woke=(500.0,)), gap=0.0)
    assert order(events) == [0] * 40
    assert m["returns_per_accept"] == 1.0  # the losers block again inside flock


def test_a_barge_wakes_every_waiter_of_the_lock_and_keeps_their_order():
    """As the kernel does (tests/test_kernel.py measures it): the barged waiter blocks again
    first in line, and re-queuing it wakes the two behind it.  Each of the 40 unlocks wakes
    worker 1 and each barge wakes workers 2 and 3: 40 sleeps each, in waits that never end."""
    sim = Simulation(Scenario(strategy="locked", workers=4, connections=40, gap=0.0),
                     steady(woke=(500.0,)), np.random.default_rng(0))
    sim.run()
    assert [sim.r_nvcsw[sim.row[w]] for w in (1, 2, 3)] == [40, 40, 40]
    assert list(sim.rule.waiting) == [1, 2, 3]


@pytest.mark.parametrize("strategy", ["handoff", "handoff-least-busy"])
def test_a_dealer_deals_strict_turns_whatever_the_race(strategy):
    events, _, m = run(strategy, calibration=steady(p_late_win=1.0), gap=0.0)
    assert order(events) == [0, 1, 2, 3] * 10
    assert m["wakeups_per_accept"] == 1.0


def test_the_least_busy_dealer_skips_a_busy_worker():
    slow = ("sleep:50", "none", "none", "none")
    events, _, _ = run("handoff-least-busy", concurrency=2, connections=6, work=slow)
    taken = order(events)
    assert taken[0] == 0 and 0 not in taken[1:4]  # worker 0 holds its connection for 150 ms


def test_a_counting_dealer_hears_of_a_closed_connection_when_its_worker_is_done(monkeypatch):
    # The live worker counts down just before it logs t_done, which comes after the client's
    # last reply (here 300 µs after): a dealer that deals in between still counts it open.
    from acceptlab.model.rules import LeastBusyDealer

    heard: list[tuple[int, float]] = []
    counts_down = LeastBusyDealer.finished

    def finished(self, worker: int) -> None:
        heard.append((worker, self.sim.now))
        counts_down(self, worker)

    monkeypatch.setattr(LeastBusyDealer, "finished", finished)
    events, client, _ = run("handoff-least-busy", calibration=steady(lag_prompt=(300.0,)),
                            gap=0.0, connections=8)
    won = analysis.accepted(events)
    worker_done = ((won["t_done_ns"] - 1e9) / 1e3).round(1).tolist()
    assert [(w, round(t, 1)) for w, t in heard] == list(zip(won["worker"].tolist(), worker_done))
    client_done = ((client["t_done_ns"] - 1e9) / 1e3).to_numpy()
    assert np.allclose(np.asarray(worker_done) - client_done, 300.5)


def test_a_load_the_path_was_not_measured_in_keeps_the_paths_own_wait_cost():
    # No closed loop of epoll-exclusive: it borrows accept()'s, whose accept() makes the socket
    # inside the measured wait (40 µs here); epoll-exclusive's own wait costs 8.
    made = steady()
    pools = {name: tuple(dataclasses.replace(p, enter=(8.0 if name.startswith("exclusive")
                                                       else 40.0,)) for p in runs)
             for name, runs in made.pools.items() if name != "exclusive-process-loaded"}
    made = dataclasses.replace(made, pools=pools)
    scenario = Scenario(strategy="epoll-exclusive", workers=4, connections=10, concurrency=4)
    sim = Simulation(scenario, made, np.random.default_rng(0))
    assert sim.times["loaded"].pool.path == "accept" and sim.times["loaded"].enter() == 8.0
    blocking = Simulation(dataclasses.replace(scenario, strategy="blocking"), made,
                          np.random.default_rng(0))
    assert blocking.times["loaded"].enter() == 40.0


def test_shared_epoll_wakes_the_last_sleeper_and_hands_the_event_on():
    events, _, m = run("shared-epoll", kind="thread", gap=0.001)
    assert m["busiest_share"] == 1.0 and m["mean_rank"] == 1.0  # LIFO: the returner wins
    # The next in line is woken for each hand-on too, but it never wins, so its wait never
    # ends and (as in a live run) those wakeups are never logged.
    assert m["wakeups_per_accept"] == 1.0 and m["returns_per_accept"] == 1.0
    _, _, m = run("shared-epoll", kind="thread", gap=0.001, calibration=steady(shared_eagain=1.0))
    # Now it comes back with EAGAIN each time: its wakeup is logged with its return.
    assert m["eagain_per_accept"] == 1.0 and m["returns_per_accept"] == 2.0
    assert m["wakeups_per_accept"] == 2.0


def test_switches_no_rule_explains_are_added_whole_and_in_part():
    # stray 1.0 in the idle pool and 1.0 in the busy one: two more switches per accept
    _, _, m = run("shared-epoll", kind="thread", gap=0.001, calibration=steady(stray=1.0))
    assert m["wakeups_per_accept"] == 3.0 and m["returns_per_accept"] == 1.0


def test_a_shared_epolls_stray_switches_are_those_beyond_its_hand_ons_and_eagains():
    # 4 accepts with 3 switches each, 2 EAGAIN returns with 1: 3.5 switches per accept.
    events = pd.DataFrame({"outcome": ["accepted"] * 4 + ["eagain"] * 2 + ["waiting"],
                           "nvcsw": [3, 3, 3, 3, 1, 1, None]})
    live = SimpleNamespace(events=events, meta={"kind": "thread"})
    assert readings._stray(live, "shared", "busy") == 3.5 - 2 - 0.5
    assert readings._stray(live, "accept", "busy") == 3.5 - 1  # threads: the GIL's waits
    assert readings._stray(live, "exclusive", "busy") == 0.0  # its rule explains them


def test_shared_epolls_re_queue_race_can_hand_a_connection_to_the_oldest_sleeper():
    # The calibration saw the oldest sleeper win (rank 0): the turns come back.
    events, _, m = run("shared-epoll", kind="thread", gap=0.001,
                       calibration=steady(shared_ranks=(0.0,)))
    assert m["mean_rank"] == 0.0 and order(events) == [0, 1, 2, 3] * 10


# --------------------------------------------------------------------------- the CPU, the GIL


def test_the_gil_serves_bursts_first_come_first_served_and_a_holder_goes_on():
    gil = Gil()
    assert gil.hold(0.0, 10.0) == 0.0 and gil.hold(2.0, 5.0) == 8.0 and gil.held_at(14.0)
    assert gil.hold(30.0, 1.0) == 0.0  # booked at its own moment, never before: no lost gap
    assert gil.hold(30.5, 4.0, holder=True) == 0.0 and gil.hold(31.0, 1.0) == 4.0


def test_spinning_workers_share_the_cores_evenly():
    cores = Cores(2.0)
    assert cores.begin(1000.0) == 1000.0 and cores.begin(1000.0) == 1000.0
    assert cores.begin(1000.0) == 1500.0  # three spin on two cores: 2/3 of one each
    cores.end(), cores.end(), cores.end()
    assert Cores(0.5).begin(1000.0) == 2000.0  # other programs left half a core


def test_spin_work_takes_the_cores_for_processes_and_one_gil_for_threads():
    spans = {}
    for kind in ("process", "thread"):
        _, client, _ = run("blocking", kind=kind, concurrency=8, connections=80, work="spin:1")
        spans[kind] = float(client["t_done_ns"].max() - client["t_start_ns"].min())
    # Each connection spins 3 ms: two cores serve twice what one GIL does (the rest is small).
    assert 1.6 < spans["thread"] / spans["process"] < 2.4


def test_a_closed_loop_is_as_fast_as_its_clients_turns_on_the_gil():
    # 200 µs of the client's GIL per connection: 4 clients wait for each other's turns, so
    # each connection takes about 4 x 200 µs, and the rate is one per 200 µs.
    _, client, _ = run("blocking", calibration=steady(gil_us=200.0), concurrency=4,
                       connections=400)
    span = float(client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e3
    assert 400 * 200 * 0.98 < span < 400 * 200 * 1.05
    assert 4 * 200 * 0.9 < np.median(latencies(client)) < 4 * 200 * 1.1


def test_a_woken_thread_that_finds_the_gil_held_sleeps_once_more():
    # Thread workers live in the client's process: under a closed loop a woken thread
    # waits for the GIL (here the two clients hold it most of the time), and its wait
    # counts one more voluntary switch; processes do not.
    calibration = steady(gil_us=2000.0, worker_cpu_us=100.0)
    _, _, threads = run("blocking", calibration=calibration, kind="thread", concurrency=2,
                        gap=0.001, connections=200)
    _, _, processes = run("blocking", calibration=calibration, concurrency=2, gap=0.001,
                          connections=200)
    assert processes["wakeups_per_accept"] == pytest.approx(1.0, abs=0.01)
    assert threads["wakeups_per_accept"] > 1.3


# --------------------------------------------------------------------------- tails and sleeps


def test_a_sleep_overshoots_by_the_timer_slack_and_a_wake_up_from_idle():
    _, client, _ = run("blocking", gap=0.001, connections=10, work="sleep:1")
    # connect 50 + wake 20 after it + 3 x (1000 + 50 slack + 10 lead + 20 wake) + talk 100
    assert set(np.round(latencies(client), 3)) == {50 + 20 + 3 * 1080 + 100}


def test_a_stall_is_added_as_often_as_the_calibration_saw_one():
    calm = steady()
    assert set(calm.stalls[0]) == {0.0} and calm.stalls[1] == ()
    # every sequential run stalled one connection in ten, by 2000 µs over the median
    stalled = pool(regime="idle", connect=(50.0,) * 10, talk=(100.0,) * 9 + (2100.0,),
                   woke=(20.0,) * 10)
    with_stalls = dataclasses.replace(calm, pools={
        name: (stalled,) if name.endswith(("-busy", "-idle")) else runs
        for name, runs in calm.pools.items()})
    rates, lengths = with_stalls.stalls
    assert set(rates) == {0.1} and set(lengths) == {2000.0}
    shares = []
    for seed in range(10):
        _, client, _ = run("blocking", calibration=with_stalls, gap=0.001, connections=400,
                           seed=seed)
        took = latencies(client)
        assert set(np.round(took[took > 1000] - np.median(took))) == {2000.0}
        shares.append(np.mean(took > 1000))
    assert 0.07 < np.mean(shares) < 0.13  # 0.1, as sampled in 4000 connections


def test_a_stall_between_paced_connections_is_pooled_over_every_idle_run():
    calm = steady()
    late = pool(regime="idle", p_late_lose=0.5, pairs=100, off_lose=(5000.0,))
    quiet = pool(regime="idle", pairs=300)
    both = dataclasses.replace(calm, pools={**calm.pools, "accept-process-idle": (late, quiet)})
    from acceptlab.model.times import Times

    # Whichever run a simulated run picks, the stall is pooled: 50 in 400 pairs, drawn from
    # what 400 pairs can tell (a Beta around 0.125: standard deviation 0.017).
    drawn = [Times.of(both, "accept", "process", "idle", np.random.default_rng(seed)).p_late
             for seed in range(400)]
    assert np.mean(drawn) == pytest.approx(50.5 / 401, abs=0.005)
    assert 0.08 < min(drawn) < max(drawn) < 0.18


def test_a_race_never_seen_in_a_calibration_is_rare_not_impossible():
    """0 late returns in 200 pairs: each simulated run draws the probability from its posterior
    (Jeffreys: mean 0.5 / 201), so a prediction's band leaves room for what 200 pairs missed."""
    from acceptlab.model.times import Times

    calm = steady()
    seen = dataclasses.replace(calm, pools={**calm.pools,
                                            "accept-process-busy": (pool(pairs=200),)})
    drawn = np.array([Times.of(seen, "accept", "process", "busy",
                               np.random.default_rng(seed)).p_late for seed in range(2000)])
    assert (drawn > 0).all()
    assert drawn.mean() == pytest.approx(1 / 201, rel=0.15)  # both late kinds: 2 x 0.5 / 201
    assert 0.005 < np.quantile(drawn, 0.95) < 0.03
    exact = Times.of(dataclasses.replace(calm, pools={**calm.pools, "accept-process-busy": (
        pool(pairs=0),)}), "accept", "process", "busy", np.random.default_rng(0))
    assert exact.p_late == 0.0  # a hand-made pool, no count: exact


# --------------------------------------------------------------------------- a simulated run


def test_a_simulated_run_accepts_every_connection_exactly_once():
    for strategy in ("blocking", "poll", "reuseport", "handoff", "locked"):
        events, client, m = run(strategy, calibration=steady(p_late_win=0.5), concurrency=3,
                                connections=60, seed=1)
        assert len(analysis.accepted(events)) == 60 == int(client["ok"].sum())
        assert set(events["outcome"]) <= {"accepted", "eagain", "waiting"}
        joined = analysis.join_client_events(client, events)  # ports pair them, as live
        assert len(joined) == 60


def test_an_open_loop_shares_the_clients_gil_between_connections_in_flight():
    _, alone, _ = run("blocking", rate=200.0, connections=300, seed=2)
    _, crowded, _ = run("blocking", calibration=steady(gil_us=600.0), rate=1000.0,
                        connections=300, seed=2)
    assert np.median(latencies(alone)) == pytest.approx(50 + 20 + 100)
    assert np.median(latencies(crowded)) > np.median(latencies(alone)) + 600


# --------------------------------------------------------------------------- bands


def test_the_bands_hold_their_own_median_and_have_the_shape_of_run_json():
    result = predict("blocking", 4, 100, gap=0.0, runs=12, calibration=steady(p_late_win=0.2))
    json.dumps(result)  # plain values only
    for name in METRICS:
        low, high = result[name]
        assert low <= result["median"][name] <= high
    assert result["runs"] == 12 and result["coverage"] == 0.9
    assert "blocking as exclusive-fifo" in result["model"]


def test_the_same_seed_gives_the_same_bands_and_inside_reads_them():
    first = predict("poll", 4, 60, runs=5, calibration=steady(ranks=(0.0, 0.5, 1.0)), seed=7)
    again = predict("poll", 4, 60, runs=5, calibration=steady(ranks=(0.0, 0.5, 1.0)), seed=7)
    assert first == again
    assert inside(0.5, [0.4, 0.6]) and not inside(0.7, [0.4, 0.6])
    assert inside(math.nan, [0.4, 0.6]) is None and inside(0.5, None) is None


def test_one_worker_has_no_rank_to_band():
    result = predict("blocking", 1, 20, runs=3, calibration=steady())
    assert result["mean_rank"] is None and result["rr_score"] == [1.0, 1.0]


# --------------------------------------------------------------------------- calibrating


def _fake_experiment(truth: Calibration, log: list):
    """A stand-in for run_experiment: the model's own run of the options, with the truth."""

    def run_experiment(**options):
        log.append(options)
        scenario = Scenario(strategy=options["strategy"], workers=options["workers"],
                            connections=options["connections"], gap=options.get("gap", 0.0),
                            concurrency=options.get("concurrency", 1), rate=options.get("rate"),
                            work=options.get("work", "none"), kind=options.get("kind", "process"))
        events, client = Simulation(scenario, truth, np.random.default_rng(len(log))).run()
        return SimpleNamespace(events=events, client=client,
                               meta={**options, "cpus": truth.cpus})

    return run_experiment


@pytest.fixture
def known_machine(monkeypatch):
    """The machine's facts without asking the platform (which runs `uname`)."""
    from acceptlab.lab import experiment

    monkeypatch.setattr(experiment, "machine", lambda: {"cpus": 2, "kernel": "test"})


def test_calibrating_the_model_on_its_own_runs_gives_back_its_times(known_machine):
    truth = steady(p_late_win=0.25, ranks=(0.0, 1.0), gil_us=200.0, eagain_per_win=0.5)
    log: list = []
    found = calibration.calibrate(run_experiment=_fake_experiment(truth, log))
    assert len(log) == len(calibration.FULL_RUNS) and found.mode == "full"
    # never the grid's 4: 3, and 5 for the races of woken waiters
    assert {options["workers"] for options in log} == {calibration.WORKERS,
                                                        calibration.HERD_WORKERS}
    busy = found.pools["accept-process-busy"]
    assert {p.connect[0] for p in busy} == {50.0} and {p.talk[0] for p in busy} == {100.0}
    assert all(0.1 < p.p_late_win < 0.4 for p in busy)  # 0.25, as sampled in 100 connections
    # the woken sleeper's EAGAIN per late-win of epoll-exclusive: half, as the truth says
    shares = [p.eagain_per_win for p in found.pools["exclusive-process-busy"]]
    assert None not in shares and 0.3 < float(np.mean(shares)) < 0.7
    woke = {v for p in found.pools["accept-process-idle"] for v in p.woke if math.isfinite(v)}
    assert woke == {20.0}  # where a sleeper took the connection
    assert all(set(t.ranks) <= {0.0, 0.5, 1.0} for t in found.herds["poll-busy"])
    # a closed loop of 3 clients at one connection per 200 µs of the client's turns
    assert all(180 < g < 220 for g in found.gil_us)
    assert "from the default" not in found.note


def test_a_quick_calibration_measures_less_and_names_what_it_borrowed(known_machine):
    log: list = []
    found = calibration.calibrate(quick=True, run_experiment=_fake_experiment(steady(), log))
    assert len(log) == len(calibration.QUICK_RUNS) < len(calibration.FULL_RUNS) / 3
    assert found.mode == "quick" and "(quick)" in found.describe()
    assert "from the default" in found.note and "lock-process-busy" in found.note
    assert found.pools["lock-process-busy"] == calibration.default().pools["lock-process-busy"]
    assert found.pools["accept-process-busy"][0].connect[0] == 50.0  # measured, not borrowed


def _crowding(truth: Calibration, log: list, crowded_tries: int):
    """A fake run_experiment whose first ``crowded_tries`` open loops are crowded: every
    connection lasts 20 ms against 2 ms between arrivals (a busy machine), so none has the
    client to itself."""
    plain = _fake_experiment(truth, log)
    crowded = _fake_experiment(steady(talk=(20_000.0,)), log)
    opens = []

    def run_experiment(**options):
        if options.get("rate") is not None:
            opens.append(options)
            if len(opens) <= crowded_tries:
                return crowded(**options)
        return plain(**options)

    return run_experiment, opens


def test_an_open_loop_too_crowded_to_read_says_why_not_that_nothing_joined():
    # The failure seen beside two test suites on 2 cores: an open loop whose connections all
    # overlap has none alone, and its reading said "0 joined connections" (all 80 had joined).
    run_experiment, _ = _crowding(steady(), [], crowded_tries=1)
    run = run_experiment(strategy="blocking", workers=3, kind="process", connections=80,
                         rate=500.0)
    assert len(analysis.join_client_events(run.client, run.events)) == 80
    with pytest.raises(readings.UnreadableRun, match=r"had the client to themselves, not \d of 80"
                       r": a connection lasted [\d.]+ ms"):
        readings.read_open(run)
    calm = _fake_experiment(steady(), [])(strategy="blocking", workers=3, kind="process",
                                          connections=80, rate=500.0)
    assert readings.read_open(calm).regime == "open"  # alone, it reads as before


def test_an_unreadable_run_is_made_again_then_left_to_the_default_and_said_so(known_machine):
    log: list = []
    run_experiment, opens = _crowding(steady(), log, crowded_tries=2)
    found = calibration.calibrate(quick=True, run_experiment=run_experiment)
    assert len(opens) == calibration.ATTEMPTS == 2  # made again once
    assert len(log) == len(calibration.QUICK_RUNS) + 1
    assert list(found.unread) == ["accept-process-open"]
    assert "had the client to themselves" in found.unread["accept-process-open"]
    default = calibration.default()
    assert found.pools["accept-process-open"] == default.pools["accept-process-open"]
    assert found.open_gil_us == default.open_gil_us
    assert "accept-process-open" in found.note and "open_gil_us" in found.note
    assert "could not be read" in found.describe() and "accept-process-open" in found.describe()
    lines = "\n".join(describe.calibration_lines(found))
    assert "not measured: accept-process-open" in lines and "2 tries" in lines
    assert found.pools["accept-process-busy"][0].connect[0] == 50.0  # the rest still measured
    result = predict("blocking", 4, 40, rate=500.0, runs=3, calibration=found)
    assert 0 < result["median"]["p50_ms"] < 100
    again = Calibration.from_dict(json.loads(json.dumps(found.as_dict())))
    assert again.unread == found.unread  # kept with the calibration, not dropped on saving


def test_a_run_unreadable_once_is_measured_on_its_second_try(known_machine):
    run_experiment, opens = _crowding(steady(), [], crowded_tries=1)
    found = calibration.calibrate(quick=True, run_experiment=run_experiment)
    assert len(opens) == 2 and found.unread == {}
    assert "could not be read" not in found.describe()
    assert found.pools["accept-process-open"][0].connect[0] == 50.0  # this machine's, measured


def test_a_pool_missing_from_a_calibration_falls_back_to_the_nearest_measured_one():
    pools = {name: runs for name, runs in steady().pools.items() if not name.endswith("-open")}
    bare = dataclasses.replace(steady(), pools=pools)
    assert bare.pools_for("accept", "process", "open") == bare.pools["accept-process-busy"]
    result = predict("blocking", 4, 40, rate=500.0, runs=3, calibration=bare)
    assert 0 < result["median"]["p50_ms"] < 100


# --------------------------------------------------------------------------- keeping a calibration


def as_a_learner(monkeypatch, tmp_path) -> None:
    """A learner's cache in ``tmp_path`` (the suite keeps its own, ACCEPTLAB_CACHE: conftest)."""
    monkeypatch.delenv("ACCEPTLAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


def test_the_suite_keeps_its_calibrations_out_of_the_learners_cache(monkeypatch, tmp_path):
    """`make test` calibrates (lesson 00, the live checks): never over the learner's own."""
    import os

    assert os.environ.get("ACCEPTLAB_CACHE")  # set by conftest for every test and kernel
    assert not calibration.cache_path().is_relative_to(Path.home() / ".cache")
    monkeypatch.setenv("ACCEPTLAB_CACHE", str(tmp_path / "suite"))
    assert calibration.save(steady()) == tmp_path / "suite" / "calibration.json"


def test_a_calibration_survives_a_round_trip_through_the_cache(monkeypatch, tmp_path):
    as_a_learner(monkeypatch, tmp_path)
    assert calibration.load() is None
    assert calibration.current().source == "default"
    made = steady(p_late_win=0.125, woke=(20.0, math.nan, 35.5))
    path = calibration.save(made)
    assert path == tmp_path / "acceptlab" / "calibration.json"
    again = calibration.load()
    assert again.pools["accept-process-busy"][0].p_late_win == 0.125
    assert np.isnan(again.pools["accept-process-busy"][0].woke[1])
    assert again.as_dict().keys() == made.as_dict().keys() and again.version == VERSION
    assert calibration.current().source == "measured"


def test_an_older_kits_calibration_is_passed_over_for_the_default(monkeypatch, tmp_path):
    as_a_learner(monkeypatch, tmp_path)
    path = calibration.save(steady())
    data = json.loads(path.read_text())
    data.pop("version")
    path.write_text(json.dumps(data))
    assert calibration.current().source == "default"
    with pytest.raises(ValueError, match="acceptlab calibrate"):
        calibration.load()


def test_an_unreadable_calibration_is_one_clear_error(tmp_path):
    broken = tmp_path / "calibration.json"
    broken.write_text('{"source": "measured"')
    with pytest.raises(ValueError, match="acceptlab calibrate"):
        calibration.load(broken)


def test_a_bands_edges_are_rounded_outward_so_a_value_on_the_edge_stays_inside():
    from acceptlab.model.bands import _plain

    # One turn in 200 connections of 4 workers: a rr_score of 1/197.  Rounded to the
    # nearest, the band [0, 1/197] became [0, 0.005076] and no longer held 1/197.
    assert _plain(1 / 197) == 0.005076 < 1 / 197
    band = [_plain(0.0, math.floor), _plain(1 / 197, math.ceil)]
    assert band == [0.0, 0.005077] and inside(1 / 197, band)
    assert _plain(2 / 3, math.floor) == 0.666666 and _plain(0.3, math.ceil) == 0.3
    result = predict("blocking", 4, 50, gap=0.001, runs=3, calibration=steady())
    assert result["rr_score"] == [1.0, 1.0]  # exact values are not widened


def test_the_default_calibration_loads_and_predicts():
    found = calibration.default()
    assert found.source == "default" and found.pools["accept-process-busy"]
    assert {name.split("-")[0] for name in found.pools} == set(PATHS)
    result = predict("blocking", 4, 50, gap=0.001, runs=3, calibration=found)
    assert result["rr_score"][1] == 1.0


# --------------------------------------------------------------------------- the command line


def test_predict_prints_one_json_line_of_bands(capsys, monkeypatch, tmp_path):
    from acceptlab.cli import main

    as_a_learner(monkeypatch, tmp_path)
    calibration.save(steady())
    assert main(["predict", "--strategy", "blocking", "--workers", "4", "--connections", "40",
                 "--gap", "0.001", "--runs", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rr_score"] == [1.0, 1.0] and set(METRICS) <= set(printed)
    assert printed["calibration"].startswith("measured calibration")


def test_predict_says_not_modelled_instead_of_guessing(capsys):
    from acceptlab.cli import main

    assert main(["predict", "--strategy", "reuseport-cpu", "--json"]) == 0
    assert "not modelled" in json.loads(capsys.readouterr().out)["not_modelled"]


def test_calibrate_show_measures_nothing(capsys, monkeypatch, tmp_path):
    from acceptlab.cli import main

    as_a_learner(monkeypatch, tmp_path)
    assert main(["calibrate", "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "default" and shown["path"] is None


def test_what_decides_the_race_is_printed_in_words():
    from acceptlab.model.describe import calibration_lines

    text = "\n".join(calibration_lines(calibration.default()))
    assert "without a gap" in text and "poll() + accept()" in text and "GIL" in text


# --------------------------------------------------------------------------- this machine


@pytest.mark.system
def test_a_quick_calibration_of_this_machine_measures_what_decides_the_race():
    found = calibration.calibrate(quick=True)
    assert found.source == "measured" and found.mode == "quick" and found.cpus >= 1
    busy = found.pools["accept-process-busy"]
    assert len(busy) == 2 and all(0 <= p.p_late <= 1 for p in busy)
    assert all(len(p.connect) == len(p.talk) == len(p.woke) >= 8 for p in busy)
    assert all(0 < c <= found.cpus for c in found.cores) and all(g > 0 for g in found.gil_us)
    idle = found.pools["accept-process-idle"][0]
    assert np.nanmedian(idle.woke) > -1000  # a sleeper ran, give or take the client's clock
    result = predict("blocking", 4, 40, gap=0.001, runs=3, calibration=found)
    assert result["busiest_share"][0] >= 0.25


def test_a_calibration_keeps_the_runs_of_the_last_ones_of_this_machine(monkeypatch, tmp_path):
    as_a_learner(monkeypatch, tmp_path)
    first = steady(gil_us=100.0)
    assert calibration.kept_with(first) is first  # nothing saved yet
    calibration.save(first)
    second = calibration.kept_with(steady(gil_us=200.0))
    assert second.gil_us == (200.0, 100.0) and second.calibrations == 2
    assert len(second.pools["accept-process-busy"]) == 2
    calibration.save(second)
    third = calibration.kept_with(steady(gil_us=300.0))
    assert third.gil_us == (300.0, 200.0, 100.0) and third.calibrations == 3
    calibration.save(third)
    fourth = calibration.kept_with(steady(gil_us=400.0))  # three at most: the oldest goes
    assert fourth.gil_us == (400.0, 300.0, 200.0) and fourth.calibrations == 3
    assert "2 earlier calibration" in fourth.describe()
    other = dataclasses.replace(steady(), machine={"cpus": 2, "system": "another"})
    assert other.merged(fourth) is other  # another machine's runs are not this one's


def test_the_machines_speed_comes_from_any_calibration_run():
    # Two runs of one path at 100 and 300 µs: a simulated run takes one's times at either's speed.
    from acceptlab.model.times import Times

    fast, slow = pool(regime="idle", talk=(50.0,)), pool(regime="idle", talk=(250.0,))
    both = dataclasses.replace(steady(), pools={**steady().pools,
                                                 "accept-process-idle": (fast, slow)})
    assert sorted(both.speeds[id(p)] for p in (fast, slow)) == [0.5, 1.5]
    seen = {round(Times.of(both, "accept", "process", "idle",
                           np.random.default_rng(seed)).connect(0) + Times.of(
        both, "accept", "process", "idle", np.random.default_rng(seed)).talk(0))
            for seed in range(200)}
    # either pool's shape at any state's speed: 0.5 and 1.5 (these two), 1 (every other pool)
    assert seen == {100, 200, 300}


@pytest.mark.system
@pytest.mark.serial
def test_the_models_bands_hold_live_runs_of_this_machine():
    """A quick calibration, then live runs held against its bands: paced turns (an exact
    prediction, with its honest tail) and EPOLLEXCLUSIVE never taking turns.  Scheduling
    decides a run, so each case gets three tries (the best of them counts)."""
    from acceptlab import run_experiment
    from acceptlab.linux.support import Unavailable, check_strategy

    found = calibration.calibrate(quick=True)
    cases = [("blocking", {"gap": 0.001}, ("rr_score", "busiest_share", "wakeups_per_accept"))]
    try:
        check_strategy("epoll-exclusive", "process")
        # Not its busiest share, nor its wakeups: whether worker 0 is back before the next
        # connection is a race a quick calibration's few dozen pairs cannot pin down (busiest
        # share bands from 0.72-0.87 to exactly 1.0 were seen on one quiet machine).  The same
        # race moves the wakeups: worker 0 late takes a connection without sleeping, and the
        # worker woken in its place finds nothing (live runs at 0.985-1.005 per connection,
        # 2026-12-07, where a quick calibration that saw no late return predicts exactly 1.0;
        # this check then failed 2 times in 8 on a quiet machine).  bench_model measures both
        # over rounds.
        cases.append(("epoll-exclusive", {"gap": 0.0}, ("rr_score",)))
    except Unavailable:
        pass
    for strategy, load, metrics in cases:
        bands = predict(strategy, 4, 200, calibration=found, **load)
        held = []
        for _ in range(3):
            run = run_experiment(strategy=strategy, workers=4, connections=200, **load)
            values = measure(run.events, run.client, 4)
            held.append([metric for metric in metrics if inside(values[metric], bands[metric])])
            if len(held[-1]) == len(metrics):
                break
        assert max(map(len, held)) == len(metrics), (strategy, bands, held)


def test_a_herd_table_counts_the_losses_of_the_waits_that_ended_only():
    """Three workers, four connections; each loser switches once per connection it lost.
    The last waits are still going on (no switch count yet): they must not count as losses
    that cost nothing (which read p_switch as 5/8 here)."""

    from acceptlab.model.readings import read_herd

    na = pd.NA
    rows = [  # worker, t_wait, t_wake, outcome, nvcsw (own wakeup + one per connection lost)
        (0, 0, 10_000, "accepted", 1), (0, 12_000, 40_000, "accepted", 3), (0, 42_000, na, "waiting", na),
        (1, 0, 20_000, "accepted", 2), (1, 22_000, na, "waiting", na),
        (2, 0, 30_000, "accepted", 3), (2, 32_000, na, "waiting", na),
    ]
    table = read_herd(_log(rows), family="poll", regime="idle")
    assert table.p_switch == 1.0
    assert table.p_eagain == 0.0
