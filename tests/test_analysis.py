"""Tests of acceptlab.analysis on hand-built tables whose right answers we know.

The synthetic runs (``synth_events``, ``synth_client`` and the three
sequences, in tests/helpers.py) write the tables a real run would write, so
each test reads as "a run in which the connections went 0 1 2 3 0 1 2 3 …,
therefore …".
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from acceptlab import analysis
from helpers import (EVENT_TYPES, START_NS, event_row, one_worker, random_sequence, round_robin,
                     synth_client, synth_events)


# --------------------------------------------------------------------------- synthetic runs


def test_synthetic_runs_look_like_the_data_model():
    events = synth_events(round_robin(4, 3), 4, herd=True)
    assert set(events["outcome"]) == {"accepted", "eagain"}
    assert (events["t_wait_ns"] <= events["t_wake_ns"]).all()
    assert len(synth_client(events)) == 12


# --------------------------------------------------------------------------- who got the connections


def test_accepted_is_the_accept_sequence():
    events = synth_events(round_robin(3, 2), 3, herd=True).sample(frac=1, random_state=0)
    sequence = analysis.accepted(events)
    assert sequence["worker"].tolist() == [0, 1, 2, 0, 1, 2]
    assert (sequence["outcome"] == "accepted").all()
    assert sequence.index.tolist() == list(range(6))


def test_per_worker_counts_and_lists_idle_slots():
    events = synth_events([0, 1, 0, 1, 0], 4, herd=True)
    table = analysis.per_worker(events, workers=4)
    assert table.index.tolist() == [0, 1, 2, 3]
    assert table["accepts"].tolist() == [3, 2, 0, 0]
    assert table["share"].tolist() == pytest.approx([0.6, 0.4, 0, 0])
    # every connection woke the three idle losers once: 5 eagain rows each for slots 2 and 3
    assert table.loc[2, "eagain"] == 5 and table.loc[2, "returns"] == 5
    assert table["returns"].sum() == len(events)
    assert table["wakeups"].sum() == len(events)  # synth_events: one switch per row


def test_per_worker_names_returns_and_wakeups_apart():
    # A herd the workers did not see: each loser was woken 3 times inside poll() but its
    # wait returned once.  Returns count rows; wakeups count the kernel's context switches.
    events = synth_events([0, 1, 0, 1], 4, herd=True)
    events.loc[events["outcome"] == "eagain", "nvcsw"] = 3
    table = analysis.per_worker(events, 4)
    assert list(table.columns) == ["accepts", "share", "returns", "eagain", "timeouts", "errors",
                                   "wakeups"]
    assert table.loc[3, "returns"] == 4 and table.loc[3, "wakeups"] == 12
    assert "nvcsw" not in table


def test_per_worker_without_context_switch_counts():
    events = synth_events([0, 1], 2).assign(nvcsw=pd.array([pd.NA, pd.NA], dtype="Int64"))
    assert analysis.per_worker(events, 2)["wakeups"].isna().all()


def test_per_worker_of_nothing():
    table = analysis.per_worker(synth_events([], 3), workers=3)
    assert table["accepts"].tolist() == [0, 0, 0]
    assert table["share"].isna().all()


@given(st.integers(0, 10**6), st.integers(1, 64))
def test_fairness_is_one_for_equal_counts(count, n):
    assert analysis.jain_fairness([count] * n) == pytest.approx(1.0)


@given(st.integers(1, 10**6), st.integers(1, 64), st.data())
def test_fairness_is_one_over_n_when_one_takes_all(total, n, data):
    counts = [0] * n
    counts[data.draw(st.integers(0, n - 1))] = total
    assert analysis.jain_fairness(counts) == pytest.approx(1 / n)


counts_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=64)


@given(counts_lists)
def test_fairness_stays_between_one_over_n_and_one(counts):
    value = analysis.jain_fairness(counts)
    assert 1 / len(counts) - 1e-9 <= value <= 1 + 1e-9


@given(counts_lists, st.data())
def test_fairness_ignores_the_order_of_workers(counts, data):
    shuffled = data.draw(st.permutations(counts))
    assert analysis.jain_fairness(shuffled) == pytest.approx(analysis.jain_fairness(counts))


@given(counts_lists, st.integers(1, 1000))
def test_fairness_ignores_scale(counts, factor):
    scaled = [c * factor for c in counts]
    assert analysis.jain_fairness(scaled) == pytest.approx(analysis.jain_fairness(counts))


def test_fairness_edge_cases():
    assert analysis.jain_fairness([0, 0, 0]) == 1.0  # nobody favoured
    assert analysis.jain_fairness(pd.Series([2, 2, 0, 0])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        analysis.jain_fairness([])
    with pytest.raises(ValueError):
        analysis.jain_fairness([1, -1])


def test_round_robin_score():
    assert analysis.round_robin_score(round_robin(4, 50), 4) == 1.0
    assert analysis.round_robin_score([2, 0, 3, 1] * 10, 4) == 1.0  # any fixed order of turns
    assert analysis.round_robin_score(one_worker(200), 4) == 0.0
    assert analysis.round_robin_score([0, 1, 2, 3, 3, 2, 1, 0], 4) == pytest.approx(2 / 5)
    assert analysis.round_robin_score([0, 0, 0], 1) == 1.0
    assert math.isnan(analysis.round_robin_score([0, 1], 4))


def test_round_robin_score_of_random_picks_is_n_factorial_over_n_to_the_n():
    score = analysis.round_robin_score(random_sequence(4, 20_000, seed=7), 4)
    assert score == pytest.approx(24 / 256, abs=0.015)


# --------------------------------------------------------------------------- who was woken


def test_round_robin_means_the_longest_waiter_wins():
    events = synth_events(round_robin(4, 25), 4)
    ranks = analysis.wake_order_ranks(events)
    assert list(ranks.columns) == ["t_wake_ns", "worker", "rank", "n_waiting", "norm_rank"]
    assert len(ranks) == 100
    assert (ranks["rank"] == 0).all()
    # At the start all four wait; at the very end the final waits were never logged (they
    # never returned), so fewer waiters are visible: the first connections see all four.
    assert (ranks["n_waiting"].head(4) == 4).all()
    assert ranks["worker"].tolist() == round_robin(4, 25)


def test_lifo_means_the_most_recent_waiter_wins():
    # Three workers start waiting at 0, 10 and 20 µs.  Connection A (t = 100 µs) goes to
    # worker 2, the most recent waiter, which is then busy.  Connection B (t = 200 µs) goes to
    # worker 1, the most recent of the two still waiting.  Both are the last rank: LIFO.
    us = 1_000
    rows = [
        event_row(2, 0, 20 * us, 100 * us, 101 * us, 500 * us, "accepted", 40001, "shared-epoll"),
        event_row(1, 0, 10 * us, 200 * us, 201 * us, 600 * us, "accepted", 40002, "shared-epoll"),
        event_row(0, 0, 0 * us, 900 * us, None, None, "timeout", None, "shared-epoll"),
    ]
    events = pd.DataFrame(rows).astype(EVENT_TYPES)
    ranks = analysis.wake_order_ranks(events)
    assert ranks["worker"].tolist() == [2, 1]
    assert ranks["n_waiting"].tolist() == [3, 2]
    assert ranks["rank"].tolist() == [2, 1]
    assert ranks["norm_rank"].tolist() == [1.0, 1.0]


def test_a_lone_waiter_has_no_normalised_rank():
    ranks = analysis.wake_order_ranks(synth_events(one_worker(3), 1))
    assert ranks["n_waiting"].tolist() == [1, 1, 1]
    assert ranks["rank"].tolist() == [0, 0, 0]
    assert ranks["norm_rank"].isna().all()


def test_wake_order_ranks_of_nothing():
    ranks = analysis.wake_order_ranks(synth_events([], 2))
    assert ranks.empty and "norm_rank" in ranks


def test_wake_order_ranks_of_a_real_sized_run():
    """A real run's size (~40 000 rows); how fast is `python -m bench.run_all --only timings`."""
    events = synth_events(random_sequence(8, 5_000), 8, herd=True)
    ranks = analysis.wake_order_ranks(events)
    assert len(ranks) == 5_000
    assert ranks["norm_rank"].between(0, 1).all()


def test_cost_per_accept_of_a_herd_and_of_wake_one():
    herd = analysis.cost_per_accept(synth_events(round_robin(4, 10), 4, herd=True))
    assert herd == {"accepted": 40, "wakeups_per_accept": 4.0, "returns_per_accept": 4.0,
                    "eagain_per_accept": 3.0, "timeouts_per_accept": 0.0}
    one = analysis.cost_per_accept(synth_events(round_robin(4, 10), 4))
    assert one["wakeups_per_accept"] == one["returns_per_accept"] == 1.0
    assert one["eagain_per_accept"] == 0.0


def test_wakeups_are_context_switches_and_returns_are_rows():
    # The herd of lesson 05: losers woken twice each in the kernel, none of it returned.
    events = synth_events(round_robin(4, 10), 4)
    events["nvcsw"] = 4
    cost = analysis.cost_per_accept(events)
    assert cost["wakeups_per_accept"] == 4.0 and cost["returns_per_accept"] == 1.0


def test_cost_per_accept_without_counts_or_connections():
    events = synth_events([0, 1], 2).drop(columns="nvcsw")
    assert math.isnan(analysis.cost_per_accept(events)["wakeups_per_accept"])
    nothing = analysis.cost_per_accept(synth_events([], 2))
    assert nothing["accepted"] == 0 and math.isnan(nothing["returns_per_accept"])


# --------------------------------------------------------------------------- latency


def _client_with_latencies(ms: list[float], ok: list[bool] | None = None,
                           worker: list[int] | None = None) -> pd.DataFrame:
    start = np.arange(len(ms), dtype="int64") * 10**9
    return pd.DataFrame({
        "conn": range(len(ms)), "local_port": range(30000, 30000 + len(ms)),
        "t_start_ns": start, "t_connected_ns": start, "t_reply_ns": start,
        "t_done_ns": pd.array(start + (np.array(ms) * 1e6).astype("int64"), dtype="Int64"),
        "ok": ok if ok is not None else [True] * len(ms),
        "error": "",
        "worker": pd.array(worker if worker is not None else [pd.NA] * len(ms), dtype="Int64"),
    })


def test_latency_percentiles_of_a_known_list():
    table = analysis.latency(_client_with_latencies(list(range(1, 101))))
    row = table.loc["all"]
    assert row["count"] == 100
    # numpy's linear interpolation: the p-th percentile of 1..100 is 1 + 99·p/100
    assert row["p50_ms"] == pytest.approx(50.5)
    assert row["p90_ms"] == pytest.approx(90.1)
    assert row["p99_ms"] == pytest.approx(99.01)
    assert row["max_ms"] == pytest.approx(100)


def test_latency_ignores_failed_connections_and_splits_by_worker():
    client = _client_with_latencies([1, 2, 3, 4, 1000], ok=[True] * 4 + [False],
                                    worker=[0, 0, 1, 1, 1])
    assert analysis.latency(client).loc["all", "max_ms"] == pytest.approx(4)
    by_worker = analysis.latency(client, by_worker=True)
    assert by_worker.index.tolist() == [0, 1]
    assert by_worker["count"].tolist() == [2, 2]
    assert by_worker.loc[1, "p50_ms"] == pytest.approx(3.5)


def test_latency_by_worker_from_a_joined_table():
    events = synth_events(round_robin(2, 3), 2)
    joined = analysis.join_client_events(synth_client(events), events)
    by_worker = analysis.latency(joined, by_worker=True)
    assert by_worker["count"].tolist() == [3, 3]


def test_latency_of_nothing():
    table = analysis.latency(_client_with_latencies([]))
    assert table.loc["all", "count"] == 0 and math.isnan(table.loc["all", "p99_ms"])


# --------------------------------------------------------------------------- reconciliation


def test_a_clean_run_reconciles():
    events = synth_events(random_sequence(4, 50), 4, herd=True)
    check = analysis.reconcile(synth_client(events), events)
    assert check.ok, check
    assert (check.accepted_events, check.client_ok, check.joined) == (50, 50, 50)
    assert check.problems.empty


def test_join_names_the_worker_from_each_side():
    events = synth_events(round_robin(3, 2), 3)
    client = synth_client(events)
    client["worker"] = pd.array(round_robin(3, 2), dtype="Int64")  # the http reply names it
    joined = analysis.join_client_events(client, events)
    assert len(joined) == 6
    assert (joined["worker_client"] == joined["worker_event"]).all()
    assert (joined["local_port"] == joined["peer_port"]).all()


def test_reconcile_catches_a_missing_event():
    events = synth_events(round_robin(2, 5), 2)
    client = synth_client(events)
    lost = events.drop(index=3)
    check = analysis.reconcile(client, lost)
    assert not check.ok
    assert check.client_ok_unmatched == 1 and check.joined == 9
    assert check.problems["problem"].tolist() == ["ok client, no accepted event"]


def test_reconcile_catches_an_event_logged_twice():
    events = synth_events(round_robin(2, 5), 2)
    doubled = pd.concat([events, events.iloc[[4]]], ignore_index=True)
    check = analysis.reconcile(synth_client(events), doubled)
    assert not check.ok
    assert check.duplicate_matches == 1 and check.joined == 11


def test_reconcile_catches_an_event_no_client_made():
    events = synth_events(round_robin(2, 5), 2)
    client = synth_client(events).drop(index=0)
    check = analysis.reconcile(client, events)
    assert not check.ok and check.events_unmatched == 1


def test_events_of_failed_clients_are_reported_but_do_not_fail():
    events = synth_events(round_robin(2, 5), 2)
    client = synth_client(events)
    client.loc[2, ["ok", "error"]] = [False, "timeout"]
    check = analysis.reconcile(client, events)
    assert check.ok, check
    assert check.events_of_failed_clients == 1 and check.events_unmatched == 0
    assert check.problems["problem"].tolist() == ["accepted event of a failed client"]


def test_a_port_reused_later_matches_by_time():
    # Two connections, seconds apart, happen to get the same client port 45000.
    events = synth_events([0, 1, 0], 2, gap_ns=2 * 10**9)
    events.loc[events["outcome"] == "accepted", "peer_port"] = [45000, 45001, 45000]
    client = synth_client(events)
    check = analysis.reconcile(client, events)
    assert check.ok, check
    assert check.joined == 3 and check.duplicate_matches == 0
    joined = analysis.join_client_events(client, events).set_index("conn")
    accepts = analysis.accepted(events)["t_accept_ns"]
    assert joined.loc[0, "t_accept_ns"] == accepts[0]  # the first use of the port
    assert joined.loc[2, "t_accept_ns"] == accepts[2]  # the second use, not the first again


# --------------------------------------------------------------------------- predictions


def _exact_band(n: int, p: float) -> tuple[int, int]:
    """The same 99 % band from exact binomial probabilities (slow, obviously right)."""
    cdf = np.cumsum([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])
    return int(np.argmax(cdf >= 0.005)), int(np.argmax(cdf >= 0.995))


@pytest.mark.parametrize("connections, workers", [(40, 4), (200, 4), (301, 3), (1000, 8)])
def test_reuseport_band_is_the_binomial_99_percent_interval(connections, workers):
    guess = analysis.expected_share("reuseport", workers, connections)
    assert (guess.low, guess.high) == _exact_band(connections, 1 / workers)
    assert guess.kind == "binomial" and guess.share == pytest.approx(1 / workers)
    assert guess.low <= connections / workers <= guess.high


def test_reuseport_band_narrows_as_connections_grow():
    widths = []
    for connections in (100, 1_000, 10_000, 100_000):
        guess = analysis.expected_share("reuseport", 4, connections)
        assert guess.low <= connections / 4 <= guess.high
        widths.append((guess.high - guess.low) / connections)  # as a share of all connections
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 10


def test_turn_taking_strategies_predict_exact_counts():
    guess = analysis.expected_share("blocking", 4, 200)
    assert (guess.share, guess.low, guess.high, guess.kind) == (0.25, 50, 50, "exact")
    guess = analysis.expected_share("locked", 4, 10)
    assert (guess.low, guess.high) == (2, 3)


def test_one_worker_and_herd_predictions():
    hot = analysis.expected_share("epoll-exclusive", 4, 200)
    assert math.isnan(hot.share) and hot.kind == "one-worker" and (hot.low, hot.high) == (0, 200)
    recent = analysis.expected_share("shared-epoll", 4, 200)  # LIFO-ish: uneven, not one worker
    assert recent.kind == "uneven" and "recent waiters win" in recent.note
    racy = analysis.expected_share("poll", 4, 200)
    assert racy.kind == "racy" and racy.low < 50 < racy.high and "racy" in racy.note
    with pytest.raises(ValueError):
        analysis.expected_share("carrier-pigeon", 4, 200)


# --------------------------------------------------------------------------- one line per run


def test_summary_of_a_round_robin_run():
    events = synth_events(round_robin(4, 25), 4)
    result = analysis.summary(events, synth_client(events), workers=4)
    assert result["strategy"] == "blocking" and result["accepted"] == 100
    assert result["busiest_share"] == 0.25 and result["jain"] == pytest.approx(1)
    assert result["rr_score"] == 1.0 and result["mean_rank"] == 0.0
    assert result["returns_per_accept"] == 1.0 and result["wakeups_per_accept"] == 1.0
    assert not {"nvcsw_per_accept"} & set(result)
    assert result["reconciled"] is True and result["client_ok"] == 100
    assert result["p50_ms"] == pytest.approx(0.2 + 0.001 + 0.05 + 0.02)
    assert all(isinstance(key, str) for key in result)


def test_summary_of_one_hot_worker_counts_the_idle_slots():
    result = analysis.summary(synth_events(one_worker(100), 4), workers=4)
    assert result["busiest_share"] == 1.0 and result["jain"] == pytest.approx(0.25)
    assert result["rr_score"] == 0.0 and "p50_ms" not in result


def test_summarize_runs_takes_tuples_or_run_objects():
    rr = synth_events(round_robin(4, 10), 4)
    herd = synth_events(random_sequence(4, 40), 4, strategy="poll", herd=True)
    run_object = SimpleNamespace(events=herd, client=synth_client(herd), workers=4)
    table = analysis.summarize_runs({"blocking": (rr, None, 4), "poll": run_object})
    assert table.index.tolist() == ["blocking", "poll"]
    assert table.loc["poll", "wakeups_per_accept"] > table.loc["blocking", "wakeups_per_accept"]
    assert table.loc["poll", "reconciled"] == True  # noqa: E712 (a numpy bool in a table)


def test_summarize_runs_refuses_a_tuple_of_another_size():
    with pytest.raises(ValueError, match="events, workers"):
        analysis.summarize_runs({"odd": (synth_events([0], 1),)})


def test_unpack_run_reads_every_shape_and_guesses_missing_workers():
    events = synth_events(round_robin(3, 2), 3)
    client = synth_client(events)
    assert analysis.unpack_run((events, 5))[1:] == (None, 5)
    assert analysis.unpack_run((events, client, 3))[1] is client
    run = SimpleNamespace(events=events, client=client, workers=None)
    assert analysis.unpack_run(run)[2] == 3  # the highest slot seen, plus one


def test_single_value_names_a_run_only_when_it_is_one_run():
    events = synth_events(round_robin(2, 2), 2, strategy="poll")
    assert analysis.single_value(events, "strategy") == "poll"
    assert type(analysis.single_value(events, "strategy")) is str  # not a numpy string
    mixed = pd.concat([events, synth_events([0], 2, strategy="epoll")])
    assert analysis.single_value(mixed, "strategy") is None
    assert analysis.single_value(mixed, "strategy", default="several") == "several"
    assert analysis.single_value(events.drop(columns="strategy"), "strategy") is None


def test_slow_worker_is_one_definition_with_one_slow_worker():
    slow = analysis.SLOW_WORKER
    assert slow["workers"] == len(slow["work"]) and slow["connections"] > 0
    assert sorted(slow["work"])[-1] == "sleep:30" and list(slow["work"]).count("sleep:30") == 1
    with pytest.raises(TypeError):
        slow["connections"] = 1  # read-only: callers copy, they do not edit the lesson


# --------------------------------------------------------------------------- one latency


def test_latency_ms_is_what_the_percentiles_are_taken_of():
    client = _client_with_latencies([5, 1, 3, 2, 4], ok=[True, True, False, True, True])
    ms = analysis.latency_ms(client)
    assert ms.tolist() == [5, 1, 2, 4] and ms.index.tolist() == [0, 1, 3, 4]
    row = analysis.latency(client).iloc[0]
    assert row["p50_ms"] == pytest.approx(np.percentile(ms, 50))
    assert row["p99_ms"] == pytest.approx(np.percentile(ms, 99))


# --------------------------------------------------------------------------- whose queue was it


def queue_of_owned_sockets(events: pd.DataFrame, owners: dict[str, int], *, seed: int = 3,
                           interval_ns: int = 2_000_000) -> pd.DataFrame:
    """A reuseport queue table: each socket's queue shrinks by its owner's accepts.

    Connections arrive at each socket at random (Poisson, at its owner's mean accept rate),
    independently of who accepts; the queue starts deep enough never to run dry.
    """
    won = analysis.accepted(events)
    edges = START_NS + np.arange(0, int(won["t_accept_ns"].max()) - START_NS + 2 * interval_ns,
                                 interval_ns)
    rng = np.random.default_rng(seed)
    rows = []
    for name, worker in owners.items():
        accepts = np.histogram(won[won["worker"] == worker]["t_accept_ns"], edges)[0]
        arrivals = rng.poisson(accepts.mean(), len(accepts))
        depth = 100 + np.concatenate([[0], np.cumsum(arrivals - accepts)])
        rows += [{"t_ns": t, "socket": name, "queue_len": int(q), "backlog": pd.NA}
                 for t, q in zip(edges, depth)]
    return pd.DataFrame(rows)


def test_queue_owners_finds_the_worker_that_drains_each_queue():
    sequence = random_sequence(3, 600, seed=5)
    events = synth_events(sequence, 3, strategy="reuseport", gap_ns=200_000, service_ns=50_000)
    owners = {"inode:11": 2, "inode:22": 0, "inode:33": 1}
    assert analysis.queue_owners(queue_of_owned_sockets(events, owners), events) == owners


def test_queue_owners_says_nothing_when_the_data_cannot_tell():
    events = synth_events(round_robin(3, 20), 3, strategy="reuseport")
    flat = pd.DataFrame({"t_ns": np.repeat(START_NS + np.arange(20) * 2_000_000, 3),
                         "socket": ["inode:1", "inode:2", "inode:3"] * 20, "queue_len": 0})
    assert analysis.queue_owners(flat, events) == {}
    shared = flat.assign(socket="shared")
    assert analysis.queue_owners(shared, events) == {}
    assert analysis.queue_owners(flat.iloc[0:0], events) == {}


def test_queue_owners_of_the_reference_slow_worker_run_names_the_slow_worker():
    # data/reuseport-process-slowworker: worker 0 takes 30 ms per request, the others 10 ms,
    # so worker 0's queue is the one that fills.  The longest queue must be worker 0's.
    from pathlib import Path

    from acceptlab.lab.experiment import Run

    run = Run.load(Path(__file__).resolve().parents[1] / "data" / "reuseport-process-slowworker")
    owners = analysis.queue_owners(run.queue, run.events)
    longest = run.queue.groupby("socket")["queue_len"].mean().idxmax()
    assert owners.get(longest) == 0, owners
