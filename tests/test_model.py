"""The model of the wait queue (acceptlab.model): each rule on tiny cases whose answer is known.

Most tests use a made-up calibration whose times are constants (:func:`steady`), so a
simulated run is exact: the answer follows from the rule alone.  The last test calibrates
this machine for real, briefly (``@pytest.mark.system``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from acceptlab import analysis
from acceptlab.model import (METRICS, RULES, Calibration, HerdTable, NotModelled, Pool,
                             Scenario, calibration, inside, measure, predict, rule_for, simulate)
from acceptlab.model.rules import MECHANISMS, SharedLifo
from acceptlab.server.strategies import STRATEGIES


def pool(kind: str = "process", regime: str = "busy", **changes) -> Pool:
    """A pool of constant times (µs): connect 50, talk 100, a sleeper runs 20 after connect()."""
    values = dict(kind=kind, regime=regime, connect=(50.0,), talk=(100.0,), woke=(20.0,),
                  lead=10.0, lag_prompt=(-5.0,), lag_late=(100.0,), ret=(1.0,), pause=(5.0,),
                  p_late_win=0.0, p_late_lose=0.0, off_win=(30.0,), off_lose=(150.0,), stray=0.0)
    values.update(changes)
    return Pool(**values)


def steady(*, ranks=(0.0,), p_eagain: float = 0.0, cpus: int = 2, **changes) -> Calibration:
    """A calibration with constant times; ``changes`` go into every pool."""
    pools = {name: (pool(name.split("-")[0], name.split("-")[1], **changes),)
             for name in ("process-busy", "process-idle", "thread-busy")}
    herds = {f"{family}-{regime}": (HerdTable(family, regime, tuple(ranks), p_eagain),)
             for family in ("poll", "epoll") for regime in ("busy", "idle")}
    return Calibration(source="measured", created="2026-01-01T00:00:00", machine={"cpus": cpus},
                       load_average=(0.0, 0.0, 0.0), cpus=cpus, cpu_share=1.0,
                       client_cpu_us=100.0, worker_cpu_us=100.0, cores=float(cpus),
                       loaded_lag=((-5.0,),),
                       pools=pools, herds=herds)


def run(strategy: str, *, calibration: Calibration | None = None, workers: int = 4,
        connections: int = 40, seed: int = 0, **load):
    scenario = Scenario(strategy=strategy, workers=workers, connections=connections, **load)
    events, client = simulate(scenario, calibration or steady(), seed=seed)
    return events, client, measure(events, client, workers)


def order(events) -> list[int]:
    return analysis.accepted(events)["worker"].tolist()


# --------------------------------------------------------------------------- the table


def test_every_strategy_of_the_kit_has_a_row_in_the_one_table():
    assert set(RULES) == set(STRATEGIES)
    for strategy, mechanism in RULES.items():
        if mechanism is None:
            with pytest.raises(NotModelled, match="not modelled"):
                rule_for(strategy)
        else:
            assert MECHANISMS[mechanism].mechanism == mechanism


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


def test_a_poll_herd_won_by_the_longest_waiter_takes_turns_and_by_the_latest_does_not():
    _, _, m_longest = run("poll", gap=0.001)
    assert m_longest["rr_score"] == 1.0 and m_longest["mean_rank"] == 0.0
    _, _, m_latest = run("poll", calibration=steady(ranks=(1.0,)), gap=0.001)
    assert m_latest["mean_rank"] == 1.0 and m_latest["busiest_share"] == 1.0


def test_an_epoll_herds_winner_is_placed_in_registration_order_not_by_waiting_time():
    events, _, _ = run("epoll", gap=0.001)  # the first registered sleeper wins: worker 0
    assert set(order(events)) == {0}
    events, _, _ = run("epoll", calibration=steady(ranks=(1.0,)), gap=0.001)
    assert set(order(events)) == {3}


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


def test_shared_epoll_wakes_the_last_sleeper_and_hands_the_event_on(monkeypatch):
    monkeypatch.setattr(SharedLifo, "p_handover_eagain", 0.0)
    events, _, m = run("shared-epoll", kind="thread", gap=0.001)
    assert m["busiest_share"] == 1.0 and m["mean_rank"] == 1.0  # LIFO: the returner wins
    # The next in line is woken for each hand-on too, but it never wins, so its wait never
    # ends and (as in a live run) those wakeups are never logged.
    assert m["wakeups_per_accept"] == 1.0 and m["returns_per_accept"] == 1.0
    monkeypatch.setattr(SharedLifo, "p_handover_eagain", 1.0)
    _, _, m = run("shared-epoll", kind="thread", gap=0.001)
    # Now it comes back with EAGAIN each time: its wakeup is logged with its return.
    assert m["eagain_per_accept"] == 1.0 and m["returns_per_accept"] == 2.0
    assert m["wakeups_per_accept"] == 2.0


def test_spin_work_runs_on_the_cores_for_processes_and_on_one_gil_for_threads():
    spans = {}
    for kind in ("process", "thread"):
        _, client, _ = run("blocking", kind=kind, concurrency=8, connections=80, work="spin:1")
        spans[kind] = float(client["t_done_ns"].max() - client["t_start_ns"].min())
    # Each connection spins 3 ms: two cores serve twice what one GIL does (the rest is small).
    assert 1.6 < spans["thread"] / spans["process"] < 2.4


def test_a_slow_worker_lengthens_reuseports_tail_but_not_the_shared_queues():
    slow = ("sleep:8", "sleep:2", "sleep:2", "sleep:2")
    _, _, shared = run("blocking", concurrency=12, connections=300, work=slow)
    _, _, hashed = run("reuseport", concurrency=12, connections=300, work=slow)
    assert hashed["p99_ms"] > 2 * shared["p99_ms"]


def test_a_simulated_run_accepts_every_connection_exactly_once():
    for strategy in ("blocking", "poll", "reuseport", "handoff", "locked"):
        events, client, m = run(strategy, calibration=steady(p_late_win=0.5), concurrency=3,
                                connections=60, seed=1)
        assert len(analysis.accepted(events)) == 60 == int(client["ok"].sum())
        assert set(events["outcome"]) <= {"accepted", "eagain", "waiting"}


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


# --------------------------------------------------------------------------- keeping a calibration


def test_a_calibration_survives_a_round_trip_through_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration.load() is None
    assert calibration.current().source == "default"
    made = steady(p_late_win=0.125, woke=(20.0, math.nan, 35.5))
    path = calibration.save(made)
    assert path == tmp_path / "acceptlab" / "calibration.json"
    again = calibration.load()
    assert again.pools["process-busy"][0].p_late_win == 0.125
    assert np.isnan(again.pools["process-busy"][0].woke[1])
    assert again.as_dict().keys() == made.as_dict().keys()
    assert calibration.current().source == "measured"


def test_an_unreadable_calibration_is_one_clear_error(tmp_path):
    broken = tmp_path / "calibration.json"
    broken.write_text('{"source": "measured"}')
    with pytest.raises(ValueError, match="acceptlab calibrate"):
        calibration.load(broken)


def test_the_default_calibration_loads_and_predicts():
    found = calibration.default()
    assert found.source == "default" and found.pools["process-busy"]
    result = predict("blocking", 4, 50, gap=0.001, runs=3, calibration=found)
    assert result["rr_score"][1] == 1.0


# --------------------------------------------------------------------------- the command line


def test_predict_prints_one_json_line_of_bands(capsys, monkeypatch, tmp_path):
    from acceptlab.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
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

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["calibrate", "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "default" and shown["path"] is None


# --------------------------------------------------------------------------- this machine


@pytest.mark.system
def test_calibrating_this_machine_measures_what_decides_the_race():
    runs = tuple(run for run in calibration.CALIBRATION_RUNS
                 if run.name in ("process-busy", "process-idle", "poll-busy", "client", "cpu"))
    found = calibration.calibrate(connections=40, runs=runs)
    assert found.source == "measured" and found.cpus >= 1
    busy = found.pools["process-busy"]
    assert len(busy) == 4 and all(0 <= p.p_late <= 1 for p in busy)
    assert all(len(p.connect) == len(p.talk) == len(p.woke) >= 8 for p in busy)
    assert found.client_cpu_us > 0 and found.worker_cpu_us > 0 and 0 < found.cores <= found.cpus
    idle = found.pools["process-idle"][0]
    assert np.nanmedian(idle.woke) > -1000  # a sleeper ran, give or take the client's clock
    result = predict("blocking", 4, 40, gap=0.001, runs=3, calibration=found)
    assert result["busiest_share"][0] >= 0.25
