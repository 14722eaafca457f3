"""What one live run of the kit says about time: the readings a calibration is made of.

Each function reads the tables of one live run (``events``, ``client``,
``meta``: an :class:`acceptlab.lab.experiment.Run`) and returns samples in
microseconds, never means, because the races the model replays are decided
in the tails:

* :func:`read_pool`: a sequential run (one client, with or without a gap):
  the client's connect and talk, how soon a woken sleeper ran, how late the
  returning worker was, and the race between it and the next connection;
* :func:`read_herd`: a run of a strategy that wakes every idle waiter (or,
  for ``shared-epoll``, the most recent one): who won, and how many losers
  came back to Python with EAGAIN;
* :func:`read_loaded`: a closed loop of as many clients as workers: the
  same times when every core is wanted, and the client's time per connection;
* :func:`read_cores`: ``spin`` work on as many workers as the machine has
  cores: how many cores the kit's CPU-bound work got;
* :func:`read_open`: an open loop: the client's times when each connection
  is a thread of its own.

A run too crowded to read (fewer than :data:`ENOUGH` connections to read
from) raises :class:`UnreadableRun`, saying why; :mod:`acceptlab.model.calibration`
decides which runs to make, keeps what these return, and makes such a run again.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .pools import SAMPLES, HerdTable, Pool

__all__ = ["UnreadableRun", "ENOUGH", "read_pool", "read_pools", "read_herd", "read_herds",
           "read_loaded", "read_cores", "read_open", "read_spread", "read_switches",
           "client_rate", "client_rates", "per_connection", "us"]


ENOUGH = 8
"""The fewest connections a reading is taken from."""


class UnreadableRun(ValueError):
    """A live run that does not hold what a reading needs (too few connections to read from);
    the message says what it lacked and why."""


def us(nanoseconds: Any) -> np.ndarray:
    """A nanosecond column or array as float microseconds (missing values become NaN)."""
    values = pd.to_numeric(pd.Series(nanoseconds), errors="coerce").astype("Float64")
    return (values.to_numpy(dtype=float, na_value=np.nan)) / 1e3


def _kept(values: Any) -> SAMPLES:
    """Finite values, rounded to 0.1 µs (the clock's real resolution is coarser), as a tuple."""
    array = np.asarray(values, dtype=float)
    return tuple(float(v) for v in np.round(array[np.isfinite(array)], 1))


def _aligned(values: Any) -> SAMPLES:
    """Every value (NaN kept, so that columns stay aligned), rounded to 0.1 µs, as a tuple."""
    return tuple(float(v) for v in np.round(np.asarray(values, dtype=float), 1))


def _next_wait_after(events: pd.DataFrame, workers: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """For each (worker, moment): that worker's first ``t_wait_ns`` after the moment (NaN: none)."""
    result = np.full(len(moments), np.nan)
    for worker in np.unique(workers):
        waits = np.sort(us(events.loc[events["worker"] == worker, "t_wait_ns"]))
        mine = workers == worker
        index = np.searchsorted(waits, moments[mine], side="right")
        found = index < len(waits)
        picked = np.full(mine.sum(), np.nan)
        picked[found] = waits[index[found]]
        result[mine] = picked
    return result


def _joined(run: Any) -> pd.DataFrame:
    from .. import analysis

    joined = analysis.join_client_events(run.client, run.events)
    joined = joined.sort_values("t_start_ns", kind="stable").reset_index(drop=True)
    if len(joined) < ENOUGH:
        raise UnreadableRun(f"a calibration run needs at least {ENOUGH} connections joined to "
                            f"the worker that accepted them, not {len(joined)} "
                            f"(of {len(run.client)} made)")
    return joined


def _lead(woke: np.ndarray) -> float:
    """How long before ``t_connected`` a connection is already queued (>= 0, µs).

    A sleeper on an awake CPU runs a few µs after the connection is queued, so
    the earliest wake-ups (their 10th percentile: robust to a client
    descheduled for milliseconds) say how early the kernel had queued it.
    """
    wake = woke[np.isfinite(woke)]
    return max(0.0, -float(np.nanpercentile(wake, 10))) if len(wake) else 0.0


def read_pools(run: Any, *, regime: str, path: str = "accept", parts: int = 2) -> list[Pool]:
    """:class:`Pool` s from a live sequential run (``concurrency=1``) of any strategy, one per
    ``parts``-th of its connections in order.

    A shared machine's state moves within a second: each part is one sample
    of it, and a simulated run draws from one part.  Connection ``k + 1``
    follows ``k``; the run's ``gap`` (in ``run.meta``) is subtracted from the
    pauses.  After each connection the worker that served it was back in its
    wait before the next connection arrived (*prompt*), or later, and then it
    took that connection without sleeping (*late-win*) or a woken sleeper
    took it (*late-lose*).

    Args:
        run: a live run (``events``, ``client``, ``meta``).
        regime: ``'busy'`` for a run without a gap, ``'idle'`` with one.
        path: the strategy family the run measures (``'accept'``, ``'poll'``...).
        parts: how many pools to cut the run into.
    """
    joined = _joined(run)
    gap_us = float(run.meta.get("gap") or 0.0) * 1e6
    start, connected = us(joined["t_start_ns"]), us(joined["t_connected_ns"])
    accept = us(joined["t_accept_ns"])
    client_done, worker_done = us(joined["t_done_ns_client"]), us(joined["t_done_ns_event"])
    worker = pd.to_numeric(joined["worker_event"]).to_numpy(dtype="int64")
    slept = pd.to_numeric(joined["nvcsw"]).fillna(0).to_numpy() >= 1

    woke = np.where(slept, accept - connected, np.nan)  # the woken worker takes it then
    back = _next_wait_after(run.events, worker, worker_done)  # the worker back in its wait
    lag = worker_done - client_done

    # The race after connection k: where was its worker when connection k+1 arrived?
    late_win = np.append((worker[1:] == worker[:-1]) & ~slept[1:], False)
    late_lose = np.append(~late_win[:-1] & (back[:-1] >= connected[1:]), False)
    prompt = ~late_win & ~late_lose
    offset = np.append(back[:-1] - connected[1:], np.nan)
    pause = np.append(start[1:] - client_done[:-1] - gap_us, np.nan)

    stray = _stray(run, path, regime)
    enter = _enter(run.events)
    eagains = _eagains_per_part(run.events, connected, parts)
    pools = []
    for index, part in enumerate(np.array_split(np.arange(len(joined)), parts)):
        pairs = part[:-1] if part[-1] == len(joined) - 1 else part  # the last has no next
        wins = int(late_win[pairs].sum())
        pools.append(Pool(
            path=path, kind=str(run.meta.get("kind", "process")), regime=regime,
            connect=_aligned((connected - start)[part]), talk=_aligned((client_done - accept)[part]),
            woke=_aligned(woke[part]), lead=round(_lead(woke[part]), 1),
            lag_prompt=_kept(lag[pairs][prompt[pairs]]),
            lag_late=_kept(lag[pairs][~prompt[pairs]]),
            ret=_kept((back - worker_done)[part]), pause=_kept(pause[pairs]),
            p_late_win=round(float(late_win[pairs].mean()), 4),
            p_late_lose=round(float(late_lose[pairs].mean()), 4),
            off_win=_kept(offset[pairs][late_win[pairs]]),
            off_lose=_kept(offset[pairs][late_lose[pairs]]),
            stray=round(stray, 4), enter=enter, pairs=len(pairs),
            eagain_per_win=round(min(1.0, eagains[index] / wins), 4) if wins else None))
    return pools


def _stray(run: Any, path: str, regime: str) -> float:
    """Switches per accepted connection beyond those the path's rule explains: one for
    ``accept()`` (counted in its idle runs, and in thread pools: the waits for the GIL); for
    the threads' ``shared`` epoll, two (the taker's and the hand-on's) and one per EAGAIN (its
    return hands the event on again), where the rest are the threads' waits for the GIL."""
    events = run.events
    accepted = int((events["outcome"] == "accepted").sum())
    switches = pd.to_numeric(events["nvcsw"]).dropna()
    switched = float(switches[switches >= 0].sum()) / accepted
    if path == "accept" and (regime == "idle" or run.meta.get("kind") == "thread"):
        return max(0.0, switched - 1)
    if path == "shared":
        return max(0.0, switched - 2 - float((events["outcome"] == "eagain").sum()) / accepted)
    return 0.0


def _eagains_per_part(events: pd.DataFrame, connected: np.ndarray, parts: int) -> list[int]:
    """How many waits came back with EAGAIN in each ``parts``-th of a sequential run: a
    part runs from its first connection's ``t_connected`` to the next part's."""
    starts = [connected[part[0]] for part in np.array_split(np.arange(len(connected)), parts)]
    eagain = events[events["outcome"] == "eagain"]
    moments = us(eagain["t_wake_ns"].fillna(eagain["t_wait_ns"]))
    where = np.searchsorted(np.asarray(starts[1:], dtype=float), moments, side="right")
    return [int((where == index).sum()) for index in range(parts)]


def _enter(events: pd.DataFrame) -> SAMPLES:
    """How long the waits that found a connection queued took (no switch: they never slept),
    from the log's t_wait to its t_wake, µs: the wait call's own cost, a connection's
    ``accept()`` included (the whole run's, in every part)."""
    won = events[events["outcome"] == "accepted"]
    unslept = pd.to_numeric(won["nvcsw"]).fillna(-1).to_numpy() == 0
    return _kept((us(won["t_wake_ns"]) - us(won["t_wait_ns"]))[unslept])


def read_pool(run: Any, *, regime: str, path: str = "accept") -> Pool:
    """One :class:`Pool` from the whole of a live sequential run (see :func:`read_pools`)."""
    return read_pools(run, regime=regime, path=path, parts=1)[0]


def read_herds(run: Any, *, family: str, regime: str, parts: int = 2) -> list[HerdTable]:
    """:class:`HerdTable` s from a live run of a strategy whose wakeups race, one per
    ``parts``-th of the run (by time: each part is one state of the machine).

    Args:
        run: the live run.
        family: ``'poll'``, ``'epoll'`` (a herd: every idle waiter is woken),
            ``'exact'`` (a poll herd decided under a lock: ``p_eagain`` and
            ``p_switch`` per race lost, the latter above 1 when losers also
            slept on the lock) or ``'shared'`` (one epoll shared by threads).  A winner's place
            is by when it began to wait: 0 = the longest waiter, 1 = the most
            recent (``norm_rank``).
        regime: ``'busy'`` or ``'idle'`` (see :class:`Pool`).
        parts: how many tables to cut the run into.
    """
    from .. import analysis

    events = run.events
    ranks = analysis.wake_order_ranks(events)
    won = analysis.accepted(events)
    when = us(won["t_wake_ns"])
    handed_out = np.sort(when)  # every connection's hand-out, for the losers of every part
    edges = np.nanpercentile(when, np.linspace(0, 100, parts + 1)) if len(when) else [0, 0]
    edges[-1] = np.inf
    row_when = us(events["t_wake_ns"])
    row_when = np.where(np.isnan(row_when), us(events["t_wait_ns"]), row_when)
    slept = pd.to_numeric(won["nvcsw"]).fillna(0).to_numpy() >= 1
    favoured = 0.0 if family == "shared" else _favoured(
        events, ranks, slept & (ranks["n_waiting"].to_numpy() >= 2))
    tables = []
    for low, high in zip(edges[:-1], edges[1:]):
        mine = (when >= low) & (when < high)
        rows = (row_when >= low) & (row_when < high)
        tables.append(_herd(family, regime, events[rows], won[mine], ranks[mine], handed_out,
                            favoured))
    return tables


def read_herd(run: Any, *, family: str, regime: str) -> HerdTable:
    """One :class:`HerdTable` from the whole of a run (see :func:`read_herds`)."""
    return read_herds(run, family=family, regime=regime, parts=1)[0]


def _herd(family: str, regime: str, events: pd.DataFrame, won: pd.DataFrame,
          ranks: pd.DataFrame, handed_out: np.ndarray, favoured: float = 0.0) -> HerdTable:
    slept = pd.to_numeric(won["nvcsw"]).fillna(0).to_numpy() >= 1
    waiting = ranks["n_waiting"].to_numpy()
    raced = slept & (waiting >= 2)
    eagain = float((events["outcome"] == "eagain").sum())
    most_switches = 1.0  # a plain herd's loser switches at most once per race it loses
    if family == "shared":  # EAGAIN per connection handed on to another waiter
        p_eagain = eagain / max(1, int(raced.sum()))
        p_switch = 1.0
    else:
        losers, chances = _loser_switches(events, handed_out)
        p_switch = losers / chances if chances > 0 else 1.0
        if family == "exact":  # per race lost: a return to Python; switches, the lock's too
            p_eagain = eagain / chances if chances > 0 else 0.0
            most_switches = 2.0
        else:  # the share of the woken losers that came back to Python with EAGAIN
            p_eagain = eagain / losers if losers > 0 else 0.0
    return HerdTable(family=family, regime=regime, ranks=_kept(ranks["norm_rank"][raced]),
                     p_eagain=round(min(1.0, p_eagain), 4),
                     p_switch=round(min(most_switches, p_switch), 4),
                     woken=round(float(waiting[slept].mean()) if slept.any() else 1.0, 3),
                     favoured=favoured)


def _favoured(events: pd.DataFrame, ranks: pd.DataFrame, raced: np.ndarray) -> float:
    """How strongly a run's races favoured one worker: 0 not at all, 1 it won every race it
    was woken for.

    On a machine with few cores, one worker of a herd often wins far more than
    its share for a whole run (the one whose CPU is free when the connection
    arrives, run after run), and which one differs from run to run.  The
    favourite is picked from every other race (the most frequent winner), and
    judged on the races in between where it was among the woken: the share it
    won there, beyond the share a fair draw gives it (one over the woken), as a
    part of what was left: ``(won - fair) / (1 - fair)``; then the same with the
    halves swapped, and the mean.  Picking and judging on different races keeps
    the luck of a fair run (its busiest worker is always above its share) out.
    """
    from .. import analysis

    races = np.flatnonzero(raced)
    if len(races) < 2 * ENOUGH_RACES:
        return 0.0
    winner = ranks["worker"].to_numpy(dtype="int64")
    when = ranks["t_wake_ns"].to_numpy(dtype="int64")
    woken = ranks["n_waiting"].to_numpy()
    shares = []
    for chosen, judged in ((races[0::2], races[1::2]), (races[1::2], races[0::2])):
        favourite = int(np.bincount(winner[chosen]).argmax())
        present = ((winner[judged] == favourite)
                   | analysis.waiting_at(events, favourite, when[judged])[0])
        judged = judged[present]
        if len(judged):
            won = float(np.mean(winner[judged] == favourite))
            fair = float(np.mean(1.0 / woken[judged]))
            shares.append((won - fair) / (1.0 - fair))
    return round(float(np.clip(np.mean(shares), 0.0, 1.0)), 4) if shares else 0.0


ENOUGH_RACES = 10
"""Races (a sleeper won among two or more) a run needs before its favourite is judged."""


def _loser_switches(events: pd.DataFrame, handed_out: np.ndarray) -> tuple[float, float]:
    """A herd's losers: the switches they made, and the wakeups they were given the chance of.

    Counted over the waits that ended (a wait still going on when the log was
    read has no switch count yet, though its worker may have lost several races
    in it).  A wait that ended was a loser's once for every connection another
    worker was handed while it waited (``handed_out``: every accepted
    connection's wake time, sorted); its switches beyond its own wakeup, if it
    won, are those losses' switches.  (Counting the waiters at each hand-out
    instead, as until 2026-12-07, also counted the last waits, whose switches
    are not in the log, and made ``p_switch`` look lower than it is: 0.63-0.98
    where a live run shows every loser switching.)
    """
    nvcsw = pd.to_numeric(events["nvcsw"])
    ended = nvcsw.notna().to_numpy() & (nvcsw.fillna(-1).to_numpy() >= 0) \
        & (events["outcome"] != "waiting").to_numpy()
    rows = events[ended]
    start, end = us(rows["t_wait_ns"]), us(rows["t_wake_ns"])
    chances = (np.searchsorted(handed_out, end, side="left")
               - np.searchsorted(handed_out, start, side="left"))
    switches = nvcsw[ended].to_numpy(dtype=float)
    own = ((rows["outcome"] == "accepted").to_numpy() & (switches >= 1)).astype(float)
    return float((switches - own).sum()), float(chances.sum())


def _reconnects(client: pd.DataFrame) -> np.ndarray:
    """A closed loop's pauses: from each connection's end to the next start after it (µs).

    The client table does not say which client thread made which connection;
    each thread starts its next one a few µs after its last one ends, so the
    first start after an end is (nearly always) the same thread's.
    """
    ok = client[client["ok"].astype(bool)]
    starts = np.sort(us(ok["t_start_ns"]))
    ends = np.sort(us(ok["t_done_ns"]))
    index = np.searchsorted(starts, ends, side="left")
    found = index < len(starts)
    return starts[index[found]] - ends[found]


def client_rate(run: Any, *, trim: float = 0.1) -> float:
    """Connections per µs of a run, over its middle (a tenth trimmed at each end: start-up)."""
    return client_rates(run, segments=1, trim=trim)[0]


def client_rates(run: Any, *, segments: int, trim: float = 0.1) -> list[float]:
    """Connections per µs in each of ``segments`` equal stretches of a run's middle.

    A shared machine's state moves within a second; each stretch is one
    sample of it.
    """
    ok = run.client[run.client["ok"].astype(bool)]
    starts = np.sort(us(ok["t_start_ns"]))
    if len(starts) < 10 * segments:
        return [float("nan")] * segments
    first, last = int(len(starts) * trim), int(len(starts) * (1 - trim)) - 1
    edges = np.linspace(first, last, segments + 1).round().astype(int)
    rates = []
    for begin, end in zip(edges[:-1], edges[1:]):
        span = starts[end] - starts[begin]
        rates.append((end - begin) / span if span > 0 else float("nan"))
    return rates


def read_loaded(run: Any, *, path: str = "accept") -> Pool:
    """A :class:`Pool` of regime ``'loaded'`` from a closed loop of several clients.

    Its ``connect``, ``lag_prompt`` (every lag: no race is told apart),
    ``ret`` and ``pause`` (the client's reconnect, :func:`_reconnects`) are
    what a returning worker and a reconnecting client take when every core
    is wanted; ``talk`` is kept for reference (the model rebuilds it from the
    sequential talk and its own waits).
    """
    joined = _joined(run)
    start, connected = us(joined["t_start_ns"]), us(joined["t_connected_ns"])
    accept = us(joined["t_accept_ns"])
    client_done, worker_done = us(joined["t_done_ns_client"]), us(joined["t_done_ns_event"])
    worker = pd.to_numeric(joined["worker_event"]).to_numpy(dtype="int64")
    slept = pd.to_numeric(joined["nvcsw"]).fillna(0).to_numpy() >= 1
    woke = np.where(slept, accept - connected, np.nan)
    back = _next_wait_after(run.events, worker, worker_done)
    return Pool(path=path, kind=str(run.meta.get("kind", "process")), regime="loaded",
                connect=_aligned(connected - start), talk=_aligned(client_done - accept),
                woke=_aligned(woke), lead=round(_lead(woke), 1),
                lag_prompt=_kept(worker_done - client_done), lag_late=(),
                ret=_kept(back - worker_done), pause=_kept(_reconnects(run.client)),
                enter=_enter(run.events),
                pairs=len(joined))


def read_open(run: Any, *, path: str = "accept") -> Pool:
    """A :class:`Pool` of regime ``'open'`` from an open loop (a thread per connection).

    The readings of :func:`read_loaded`, from the connections that had the
    client to themselves (none other in flight while they ran): what one
    connection costs an open loop's client, before its threads share the GIL
    (the model adds that sharing itself).  The pause is not used: arrivals come
    at the load's own times.
    """
    ok = run.client[run.client["ok"].astype(bool)]
    start, done = us(ok["t_start_ns"]), us(ok["t_done_ns"])
    alone = np.array([not np.any((start < e) & (done > s) & ((start != s) | (done != e)))
                      for s, e in zip(start, done)], dtype=bool)
    if alone.sum() < ENOUGH:
        raise UnreadableRun(_crowded(run, start, done, int(alone.sum())))
    alone_run = SimpleNamespace(events=run.events, client=ok[alone], meta=run.meta)
    pool = read_loaded(alone_run, path=path)
    return Pool(**{**pool.as_dict(), "regime": "open", "pause": ()})


def _crowded(run: Any, start: np.ndarray, done: np.ndarray, alone: int) -> str:
    """Why an open loop left too few connections alone: they outlasted the time between
    arrivals (a busy machine slows each one down, so they overlap)."""
    lasted = float(np.median(done - start)) / 1e3 if len(start) else float("nan")
    apart = float(np.median(np.diff(np.sort(start)))) / 1e3 if len(start) > 1 else float("nan")
    busy, cpus = run.meta.get("machine_busy"), run.meta.get("cpus")
    other = (f"; other work used {busy:.1f} of {cpus} cores"
             if isinstance(busy, (int, float)) and cpus else "")
    return (f"an open-loop run needs at least {ENOUGH} connections that had the client to "
            f"themselves, not {alone} of {len(start)}: a connection lasted {lasted:.2f} ms in "
            f"the median, and they started {apart:.2f} ms apart{other}")


def read_spread(run: Any) -> SAMPLES:
    """How unevenly spinning workers progress: each connection's hold time over the median
    (a CPU-bound worker's share of a core is even only on average)."""
    from .. import analysis

    held = analysis.accepted(run.events)
    hold = us(held["t_done_ns"]) - us(held["t_accept_ns"])
    hold = hold[np.isfinite(hold) & (hold > 0)]
    return tuple(float(x) for x in np.round(hold / np.median(hold), 3)) if len(hold) else (1.0,)


def read_switches(run: Any) -> float:
    """Voluntary switches per accept of a run whose workers rarely sleep in their wait."""
    accepted = int((run.events["outcome"] == "accepted").sum())
    switches = pd.to_numeric(run.events["nvcsw"]).dropna()
    return round(float(switches[switches >= 0].sum()) / max(1, accepted), 4)


def read_cores(run: Any, *, spin_ms: float, questions: int) -> float:
    """How many cores the kit's CPU-bound workers got in a run of ``spin`` work (> 0).

    Every connection spun ``questions x spin_ms`` of CPU in its worker; over
    the run's middle (:func:`client_rate`) that is CPU time per wall time.
    The round trips between requests are part of it, as they are of any
    closed loop of spinning workers; so is the client, which must get a core
    between two spins to ask the next question.
    """
    rate = client_rate(run)  # connections per µs
    cpus = int(run.meta.get("cpus") or os.cpu_count() or 1)
    if not np.isfinite(rate) or rate <= 0:
        return float(cpus)
    return round(float(min(cpus, rate * questions * spin_ms * 1e3)), 3)


def per_connection(use: list[tuple[int, float, float]]) -> tuple[float, float]:
    """CPU µs per connection of the client and of the workers, from ``(connections, client s,
    workers s)`` of runs of two or more sizes: the slope, so a pool's start and stop drop out
    (a slope the noise made no larger than zero falls back to the plain ratio)."""
    n = np.array([u[0] for u in use], dtype=float)
    ratios = [float(np.sum([u[k] for u in use]) / n.sum() * 1e6) for k in (1, 2)]
    if len(set(n)) < 2:
        return ratios[0], ratios[1]
    slopes = [float(np.polyfit(n, [u[k] for u in use], 1)[0] * 1e6) for k in (1, 2)]
    return tuple(slope if slope > 0 else ratio for slope, ratio in zip(slopes, ratios))
