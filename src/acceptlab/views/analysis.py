"""Turn the kit's tables into the numbers a lesson talks about.

Every function here reads plain DataFrames (``events``, ``client``, ``queue``;
their columns are described in ``data/README.md``) and returns a number, a
dict or a DataFrame.  Nothing here starts a worker or opens a socket, so each
function can be tried on a table typed in by hand.

Vocabulary
----------
Two counts are easy to confuse, so each has one name everywhere in the kit:

* a **wakeup** is a voluntary context switch: the worker's thread slept in
  the kernel and the kernel woke it (the ``nvcsw`` column of ``events``).
  A thundering herd is many wakeups per connection.
* a **return** is a wait that came back to Python: one row of ``events``
  (less the ``waiting`` rows of waits that never ended).  A woken worker
  that finds the connection gone may go back to sleep inside ``poll()``
  without returning, so returns can hide wakeups.

Theory of operation
-------------------
One row of ``events`` is one *wait*: a worker started waiting at
``t_wait_ns`` and its wait returned at ``t_wake_ns``.  If it then got a
connection, ``outcome`` is ``'accepted'``; if another worker was quicker it
is ``'eagain'``; a wait that ran out is ``'timeout'``.  From those rows we ask
the questions of the lesson:

* **Who got the connections?**  :func:`accepted` gives the accept sequence,
  :func:`per_worker` the counts, :func:`jain_fairness` one number for how even
  they are, :func:`round_robin_score` how much the sequence looks like taking
  turns, and :func:`expected_share` what each strategy predicts.
* **Who was woken?**  :func:`wake_order_ranks` asks, for each connection,
  whether the worker that had waited longest won (FIFO) or the one that
  started waiting last (LIFO).  :func:`cost_per_accept` counts what each
  connection cost: wakeups, returns, EAGAINs and timeouts.  A wake-one queue
  costs one wakeup; a thundering herd about one per idle worker.
* **Did every connection arrive exactly once?**  :func:`join_client_events`
  and :func:`reconcile` match each client connection to the event of the
  worker that accepted it.  Counts that do not reconcile are a bug.
* **How long did clients wait?**  :func:`latency_ms` per connection,
  :func:`latency` as percentiles (the one definition plots use too).
* **Whose queue was it?**  :func:`queue_owners` names the worker behind each
  ``reuseport`` socket of a queue table, where the data can tell.

:func:`summary` and :func:`summarize_runs` put the headline numbers of one or
many runs side by side; :func:`unpack_run` and :func:`single_value` read a
run however it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .. import registry
from ..registry import Prediction

__all__ = [
    "accepted",
    "per_worker",
    "jain_fairness",
    "round_robin_score",
    "wake_order_ranks",
    "cost_per_accept",
    "latency_ms",
    "latency",
    "join_client_events",
    "reconcile",
    "Reconciliation",
    "expected_share",
    "Prediction",
    "TAKE_TURNS",
    "ONE_WORKER",
    "RECENT_WAITERS",
    "HERD",
    "HASHED",
    "IN_BLOCKS",
    "BY_CPU",
    "queue_owners",
    "summary",
    "summarize_runs",
    "unpack_run",
    "single_value",
    "SLOW_WORKER",
    "open_per_process",
    "busy_while_idle",
]

# The slow-worker lesson: one worker of three takes 30 ms per request, the others 10 ms, under
# a closed loop of 12 clients.  One definition for ``make demo`` (report.py) and the reference
# runs in data/ (tools/make_reference_data.py); its latency tail is what :func:`latency` by
# worker shows for ``reuseport``.  Keywords of ``run_experiment``.
SLOW_WORKER: Mapping[str, Any] = MappingProxyType(dict(
    workers=3, connections=300, concurrency=12, work=("sleep:30", "sleep:10", "sleep:10")))

# Time columns are int64 nanoseconds; int64 keeps them exact (float64 would round
# monotonic_ns() values on a machine that has been up for more than ~100 days).
_NEVER = np.iinfo(np.int64).max


def _ns(column: pd.Series, missing: int = _NEVER) -> np.ndarray:
    """A nanosecond column as an int64 array, with missing values replaced by ``missing``."""
    return pd.to_numeric(column).astype("Int64").fillna(missing).to_numpy(dtype="int64")


def _as_bool(column: pd.Series) -> pd.Series:
    """A yes/no column (``ok``) as plain bools; a missing value counts as no."""
    return column.astype("boolean").fillna(False).astype(bool)


# --------------------------------------------------------------------------- who got the connections


def accepted(events: pd.DataFrame) -> pd.DataFrame:
    """The accepted waits, in the order the connections were accepted.

    Row ``i`` of the result is the ``i``-th connection handed out, so
    ``accepted(events)["worker"]`` is the *accept sequence*: ``0 1 2 3 0 1 2 3``
    for strict round robin, ``0 0 0 0`` when one worker takes everything.
    Rows with another outcome (``eagain``, ``timeout``, ``error``) are dropped.
    The index is renumbered from 0; a stable sort keeps equal timestamps in
    their logged order.

    Args:
        events: the run's events table.
    """
    rows = events[events["outcome"] == "accepted"]
    return rows.sort_values("t_accept_ns", kind="stable").reset_index(drop=True)


def _has_switch_counts(events: pd.DataFrame) -> bool:
    """Did the OS count context switches for this run (the ``nvcsw`` column, Linux only)?"""
    return "nvcsw" in events and bool(events["nvcsw"].notna().any())


def per_worker(events: pd.DataFrame, workers: int | None = None) -> pd.DataFrame:
    """One row per worker slot: what it got and what it cost.

    Columns:

    * ``accepts``: connections this worker accepted;
    * ``share``: its fraction of all accepted connections (NaN if none were);
    * ``returns``: how many times its wait returned to Python (rows, less
      the ``waiting`` rows of waits that never ended);
    * ``eagain``: returns that found the connection already taken;
    * ``timeouts``: waits that ran out; ``errors``: waits that failed;
    * ``wakeups``: voluntary context switches while waiting, summed from
      the ``nvcsw`` column (``<NA>`` where the OS does not count them).  It
      counts the wakeups the kernel hid from us too: a woken worker that
      found nothing and went back to sleep inside ``poll()`` costs a wakeup
      but no return.

    Args:
        events: the run's events table.
        workers: the pool size.  A worker that never started (or a table
            made by hand) may have no rows at all; with ``workers`` the
            slots ``0 .. workers-1`` are all listed even when some got
            nothing: for a lesson about fairness the zeros matter.  Slots
            seen in ``events`` beyond ``workers`` are kept, not hidden.

    Replaced workers (``generation`` > 0) count towards their slot.
    """
    outcome = events["outcome"].astype(str)
    flags = pd.DataFrame({
        "worker": pd.to_numeric(events["worker"]).astype("int64"),
        "accepts": outcome.eq("accepted"),
        "returns": outcome.ne("waiting"),
        "eagain": outcome.eq("eagain"),
        "timeouts": outcome.eq("timeout"),
        "errors": outcome.eq("error"),
    })
    table = flags.groupby("worker").sum().astype("int64")

    counted = _has_switch_counts(events)
    if counted:
        nvcsw = pd.to_numeric(events["nvcsw"]).astype("Int64")
        table["wakeups"] = nvcsw.groupby(flags["worker"]).sum(min_count=1).astype("Int64")

    if workers is not None:
        slots = sorted(set(range(workers)) | set(table.index))
        table = table.reindex(slots, fill_value=0)
    if counted:
        # A slot with no rows made no switches we know of: 0, not unknown.
        table["wakeups"] = table["wakeups"].fillna(0).astype("Int64")
    else:
        table["wakeups"] = pd.array([pd.NA] * len(table), dtype="Int64")

    total = table["accepts"].sum()
    table.insert(1, "share", table["accepts"] / total if total else np.nan)
    table.index.name = "worker"
    return table


def jain_fairness(counts: Iterable[float]) -> float:
    """Jain's fairness index of a list of counts: (Σx)² / (n·Σx²).

    It is 1.0 when every worker got the same number of connections and
    1/n when one worker got them all; in between it reads as "the fraction
    of workers that were treated fairly": 0.5 with four workers is as uneven
    as two workers sharing everything and two getting nothing.  It does not
    change if you scale every count by the same factor or reorder them.

    Choices: an empty list raises ``ValueError`` (there is no pool to judge);
    all zeros returns 1.0 (nobody was favoured, because nobody got anything);
    negative counts raise ``ValueError``.

    Reference: R. Jain, D. Chiu, W. Hawe, "A quantitative measure of fairness
    and discrimination for resource allocation in shared computer systems",
    DEC-TR-301, 1984.

    Args:
        counts: one count per worker (connections accepted), zeros included.
    """
    x = np.asarray(list(counts), dtype=float)
    if x.size == 0:
        raise ValueError("jain_fairness needs at least one count")
    if (x < 0).any():
        raise ValueError("counts cannot be negative")
    total = x.sum()
    if total == 0:
        return 1.0
    return float(total * total / (x.size * (x * x).sum()))


def round_robin_score(sequence: Iterable[int], workers: int) -> float:
    """How much an accept sequence looks like workers taking turns (0 to 1).

    Slide a window of length ``workers`` along the sequence, one step at a
    time, and count the windows in which every worker appears exactly once
    (all ``workers`` entries distinct).  The score is the fraction of such
    windows:

    * ``0 1 2 3 0 1 2 3 …`` → every window is a permutation of 0..3 → 1.0;
    * ``0 0 0 0 …`` → no window is → 0.0;
    * a fair random pick (``reuseport``) → about N!/Nᴺ, the chance that N
      independent picks are all different: 0.5 for 2 workers, 0.09 for 4.

    Any turn-taking order scores 1, not just 0123: ``2 0 3 1 2 0 3 1`` does
    too, because the kernel's FIFO order is the order the workers first
    blocked, which need not be their slot order.

    Returns NaN when the sequence is shorter than one window.

    Args:
        sequence: the accept sequence, the worker of each connection in order.
        workers: the pool size (the window's length).
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    seq = np.asarray(list(sequence))
    if len(seq) < workers:
        return float("nan")
    windows = np.lib.stride_tricks.sliding_window_view(seq, workers)
    # Sorting each window puts equal entries next to each other, so the number of
    # distinct entries is one more than the number of changes between neighbours.
    ordered = np.sort(windows, axis=1)
    distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1)
    return float((distinct == workers).mean())


# --------------------------------------------------------------------------- who was woken


def wake_order_ranks(events: pd.DataFrame) -> pd.DataFrame:
    """For each accepted connection: had the winner waited longest, or least?

    At the moment ``T`` the winner's wait returned (its ``t_wake_ns``), some
    workers were waiting: worker *w* is waiting at ``T`` if one of its rows
    has ``t_wait_ns <= T < t_wake_ns`` (the winner counts itself, with the
    row that it won).  Line the waiters up by when they started waiting,
    longest waiter first, and read off the winner's place:

    * ``rank``: the winner's place, 0 = it had waited longest;
    * ``n_waiting``: how many workers were waiting, the winner included;
    * ``norm_rank``: ``rank / (n_waiting - 1)``, so 0 = the longest waiter
      won and 1 = the most recent waiter won, whatever the pool size; NaN
      when the winner was the only waiter (nothing to compare).

    A FIFO queue of waiters (blocking ``accept()``) predicts rank 0 every
    time; a LIFO one (one epoll object shared by threads) predicts the last
    rank; a fair race averages ``norm_rank`` ≈ 0.5.  Ties go to the winner.

    The columns are ``t_wake_ns, worker, rank, n_waiting, norm_rank``, one
    row per accepted connection, in accept order.

    How it is computed: one worker waits for one thing at a time, so its rows
    sorted by ``t_wait_ns`` do not overlap.  For each worker a binary search
    (``np.searchsorted``) finds, for every connection at once, the last row
    that started waiting at or before ``T``, and checks that it had not yet
    woken.  That is one vectorised pass per worker.

    Args:
        events: the run's events table.
    """
    columns = ["t_wake_ns", "worker", "rank", "n_waiting", "norm_rank"]
    wins = accepted(events)
    if wins.empty:
        return pd.DataFrame({name: pd.Series(dtype=float if name == "norm_rank" else "int64")
                             for name in columns})

    when = _ns(wins["t_wake_ns"])  # T, one per connection
    winner = pd.to_numeric(wins["worker"]).to_numpy(dtype="int64")
    slots = np.unique(pd.to_numeric(events["worker"]).to_numpy(dtype="int64"))

    # waiting[c, j]: was slot j waiting when connection c was handed out; since[c, j]: since when.
    waiting = np.zeros((len(wins), len(slots)), dtype=bool)
    since = np.zeros((len(wins), len(slots)), dtype="int64")
    for j, slot in enumerate(slots):
        rows = events[events["worker"] == slot].sort_values("t_wait_ns", kind="stable")
        t_wait, t_wake = _ns(rows["t_wait_ns"]), _ns(rows["t_wake_ns"])
        last = np.searchsorted(t_wait, when, side="right") - 1  # last row with t_wait <= T
        found = last >= 0
        last = np.where(found, last, 0)
        waiting[:, j] = found & (when < t_wake[last])
        since[:, j] = t_wait[last]

    # The winner was waiting in the row it won (T == its own t_wake, so the test above says no).
    me = np.arange(len(wins))
    column = np.searchsorted(slots, winner)
    waiting[me, column] = True
    since[me, column] = _ns(wins["t_wait_ns"])

    n_waiting = waiting.sum(axis=1)
    # Rank = how many waiters had been waiting strictly longer than the winner.
    rank = (waiting & (since < since[me, column][:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_rank = np.where(n_waiting > 1, rank / np.maximum(n_waiting - 1, 1), np.nan)
    return pd.DataFrame({"t_wake_ns": when, "worker": winner, "rank": rank,
                         "n_waiting": n_waiting, "norm_rank": norm_rank})


def cost_per_accept(events: pd.DataFrame) -> dict[str, float]:
    """What one accepted connection cost the workers, counted four ways.

    Returns a dict:

    * ``accepted``: how many connections were accepted;
    * ``wakeups_per_accept``: wakeups (voluntary context switches while
      waiting, the ``nvcsw`` column) per connection; NaN where the OS does
      not count them per thread;
    * ``returns_per_accept``: waits that returned to Python per connection
      (rows, less the ``waiting`` rows of waits that had not ended when the
      run stopped);
    * ``eagain_per_accept``: returns that found nothing to accept;
    * ``timeouts_per_accept``: waits that ran out.

    Why four?  A wake-one queue costs one of each of the first two.  A
    thundering herd wakes every idle worker, but most losers never *see*
    it: the kernel wakes them inside ``poll()``, finds the connection gone,
    and puts them back to sleep, so they return nothing and log no EAGAIN.
    Only the wakeups show the herd: ``wakeups_per_accept`` ≈ the number of
    idle workers while ``returns_per_accept`` and ``eagain_per_accept``
    stay small.  Ratios are NaN when nothing was accepted.

    Args:
        events: the run's events table.
    """
    outcome = events["outcome"].astype(str)
    n = int(outcome.eq("accepted").sum())

    def per_connection(total: float) -> float:
        return float(total) / n if n else float("nan")

    return {
        "accepted": n,
        "wakeups_per_accept": (per_connection(pd.to_numeric(events["nvcsw"]).sum())
                               if _has_switch_counts(events) else float("nan")),
        "returns_per_accept": per_connection(outcome.ne("waiting").sum()),
        "eagain_per_accept": per_connection(outcome.eq("eagain").sum()),
        "timeouts_per_accept": per_connection(outcome.eq("timeout").sum()),
    }


# --------------------------------------------------------------------------- how long clients waited


def _column(frame: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` that ``frame`` has (a client table or a joined one)."""
    for name in names:
        if name in frame:
            return frame[name]
    raise KeyError(f"none of the columns {names} is in the table")


def _percentiles(ms: np.ndarray) -> dict[str, float]:
    """count, p50/p90/p99 and max of a list of latencies (numpy's linear interpolation)."""
    if len(ms) == 0:
        return {"count": 0, "p50_ms": np.nan, "p90_ms": np.nan, "p99_ms": np.nan,
                "max_ms": np.nan}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": len(ms), "p50_ms": float(p50), "p90_ms": float(p90),
            "p99_ms": float(p99), "max_ms": float(ms.max())}


def latency_ms(client: pd.DataFrame) -> pd.Series:
    """Each successful connection's latency in milliseconds: the kit's one definition.

    Latency is ``t_done_ns - t_start_ns``: from the moment the client began
    connecting to its last answer, so it includes the time the connection
    sat in the accept queue waiting for a free worker.  Only ``ok`` rows
    count (a refused connection has no meaningful latency).  The result is
    indexed like those rows; it is NaN where a time is missing.
    :func:`latency` and the figures of :mod:`acceptlab.views.plots` both start
    here, so a legend's p50 is the table's p50.

    Args:
        client: a client table, or :func:`join_client_events`' output
            (whose client end time is ``t_done_ns_client``).
    """
    ok = client[_as_bool(client["ok"])]
    done = _column(ok, "t_done_ns", "t_done_ns_client")
    ns = pd.to_numeric(done).astype("Int64") - pd.to_numeric(ok["t_start_ns"]).astype("Int64")
    return pd.Series(ns.to_numpy(dtype=float, na_value=np.nan) / 1e6, index=ok.index,
                     name="latency_ms")


def latency(client: pd.DataFrame, *, by_worker: bool = False) -> pd.DataFrame:
    """Latency percentiles of the successful connections, in milliseconds.

    Latency is :func:`latency_ms`: from the moment the client began
    connecting to its last answer, queueing included, ``ok`` rows only.

    Columns: ``count, p50_ms, p90_ms, p99_ms, max_ms``.  Percentiles use
    numpy's default linear interpolation (as ``Series.quantile`` does), so
    the p50 of 1, 2, 3, 4 ms is 2.5 ms.

    With ``by_worker=False`` there is one row, labelled ``'all'``.  With
    ``by_worker=True`` there is one row per worker that served at least one
    connection.  The client knows its worker only when the reply names it
    (the ``http`` protocol); for the other protocols pass the output of
    :func:`join_client_events` instead, whose ``worker_event`` column says
    which worker accepted each connection.

    Args:
        client: a client table, or :func:`join_client_events`' output.
        by_worker: one row per worker instead of one for all.
    """
    ms = latency_ms(client).to_numpy()
    if not by_worker:
        return pd.DataFrame([_percentiles(ms[~np.isnan(ms)])], index=pd.Index(["all"]))

    ok = client[_as_bool(client["ok"])]
    worker = pd.to_numeric(_column(ok, "worker_event", "worker")).astype("Int64")
    known = worker.notna().to_numpy() & ~np.isnan(ms)
    frame = pd.DataFrame({"worker": worker[known].astype("int64").to_numpy(), "ms": ms[known]})
    rows = {w: _percentiles(group["ms"].to_numpy()) for w, group in frame.groupby("worker")}
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["count", "p50_ms", "p90_ms", "p99_ms", "max_ms"])
    table.index.name = "worker"
    return table


# --------------------------------------------------------------------------- whose queue was it


def queue_owners(queue: pd.DataFrame, events: pd.DataFrame, *,
                 min_correlation: float = 0.3) -> dict[str, int]:
    """Which worker accepted from each ``reuseport`` socket of a queue table, where it shows.

    With ``reuseport`` every worker has a socket and a queue of its own,
    but the queue table names a socket by its inode (``inode:3681251``) and
    an event does not say which socket it accepted from: the listening port
    is the same for all.  What the data does show: in a sampling interval
    in which worker *w* accepted *k* waiting connections, *w*'s own queue
    got *k* shorter (less whatever arrived meanwhile), while the other
    queues did not care.  So, over the intervals between samples, the
    change of a socket's queue length is negatively correlated with its
    owner's accepts and hardly with anyone else's.

    A socket is given a worker only when that correlation is clearly
    there: at most ``-min_correlation``, at least twice as strong as the
    next worker's, and the worker not already given a socket.  Sockets
    whose queue never held anything (a fast worker under light load) show
    nothing and are left out; a figure then labels them by order.  This
    reads the evidence; it cannot prove it.

    Args:
        queue: the run's queue table (``t_ns``, ``socket``, ``queue_len``).
        events: the run's events table (its accepted rows are used).
        min_correlation: how strong the (negative) correlation must be.

    Returns:
        ``{socket name: worker slot}`` for the ``inode:`` sockets that could
        be told, strongest first; ``{}`` when none could.
    """
    if not len(queue) or "socket" not in queue:
        return {}
    names = sorted(name for name in queue["socket"].astype(str).unique()
                   if name.startswith("inode:"))
    won = accepted(events)
    if len(names) < 2 or won.empty:
        return {}
    when = _ns(won["t_accept_ns"])
    who = pd.to_numeric(won["worker"]).to_numpy(dtype="int64")
    slots = np.unique(who)
    strength = np.zeros((len(names), len(slots)))  # -correlation: the owner's is large
    for i, name in enumerate(names):
        rows = queue[queue["socket"].astype(str) == name].sort_values("t_ns", kind="stable")
        change = np.diff(pd.to_numeric(rows["queue_len"]).to_numpy(dtype=float))
        # interval k is (t[k], t[k+1]]; an accept at time a belongs to searchsorted(t, a) - 1
        interval = np.searchsorted(_ns(rows["t_ns"]), when, side="left") - 1
        inside = (interval >= 0) & (interval < len(change))
        for j, slot in enumerate(slots):
            mine = np.bincount(interval[inside & (who == slot)],
                               minlength=len(change))[:len(change)].astype(float)
            if len(change) > 2 and change.std() > 0 and mine.std() > 0:
                strength[i, j] = -np.corrcoef(change, mine)[0, 1]
    owners: dict[str, int] = {}
    for i in np.argsort(-strength.max(axis=1), kind="stable"):
        order = np.argsort(-strength[i], kind="stable")
        best = strength[i, order[0]]
        second = strength[i, order[1]] if len(order) > 1 else 0.0
        slot = int(slots[order[0]])
        if best >= min_correlation and best >= 2 * max(second, 0.0) and slot not in owners.values():
            owners[names[i]] = slot
    return owners


# --------------------------------------------------------------------------- did every connection arrive once


def _match(clients: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Pairs (client row, accepted event) with the same port and the accept inside the client's span.

    A port identifies a connection only for as long as it is open: a long run
    reuses ports.  So a pair counts only if the event's ``t_accept_ns`` lies
    within ``[t_start_ns, t_done_ns]`` of the client row (a missing
    ``t_done_ns`` leaves the span open-ended).
    """
    left = clients.rename(columns={"t_done_ns": "t_done_ns_client", "worker": "worker_client"})
    left = left.assign(client_index=clients.index,
                       local_port=pd.to_numeric(left["local_port"]).astype("Int64"))
    right = events.rename(columns={"t_done_ns": "t_done_ns_event", "worker": "worker_event"})
    right = right.assign(event_index=events.index,
                         peer_port=pd.to_numeric(right["peer_port"]).astype("Int64"))
    # pandas merges a missing key with a missing key; a missing port must match nothing.
    left = left[left["local_port"].notna()]
    right = right[right["peer_port"].notna()]
    pairs = left.merge(right, left_on="local_port", right_on="peer_port")
    accept = _ns(pairs["t_accept_ns"], missing=-1)
    inside = (_ns(pairs["t_start_ns"]) <= accept) & (accept <= _ns(pairs["t_done_ns_client"]))
    return pairs[inside].reset_index(drop=True)


def join_client_events(client: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Each successful client connection side by side with the worker event that accepted it.

    A client row and an accepted event belong together when the client's
    ``local_port`` equals the event's ``peer_port`` and the event's
    ``t_accept_ns`` lies within the client's ``[t_start_ns, t_done_ns]``:
    ports are reused in a long run, and time tells the reuses apart.  Both
    sides use one clock (``time.monotonic_ns()``), even across processes.

    One row per matching pair, ordered by accept time, with every client
    column and every event column.  Columns that both tables have get a
    suffix: ``t_done_ns_client`` / ``t_done_ns_event`` and ``worker_client``
    (the worker the reply named, ``http`` only) / ``worker_event`` (the
    worker that accepted).  ``client_index`` and ``event_index`` are the
    rows' index labels in the tables passed in.  Failed client rows and
    events that match nothing are left out; :func:`reconcile` reports them.

    Args:
        client: the run's client table.
        events: the run's events table.
    """
    ok_clients = client[_as_bool(client["ok"])]
    accepted_events = events[events["outcome"] == "accepted"]
    pairs = _match(ok_clients, accepted_events)
    return pairs.sort_values(["t_accept_ns", "client_index"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Reconciliation:
    """Do the client's connections and the workers' accepts tell the same story?

    The counts:

    * ``accepted_events``: events with outcome ``accepted``;
    * ``client_ok``: client rows with ``ok`` true;
    * ``joined``: matching (client, event) pairs (rows of :func:`join_client_events`);
    * ``client_ok_unmatched``: ok client rows no event matches (a lost event);
    * ``events_unmatched``: accepted events that match no client row at all;
    * ``events_of_failed_clients``: accepted events whose client row failed
      (the worker accepted, the client gave up or was cut off): expected now
      and then under overload, so reported apart and not counted against ``ok``;
    * ``duplicate_matches``: ok client rows that match more than one event,
      plus events that match more than one ok client row (a row logged twice);
    * ``ok``: every ok client row matches exactly one event and every
      accepted event matches exactly one ok client row (apart from
      ``events_of_failed_clients``).

    ``problems`` lists the offending rows, one per problem, with a
    ``problem`` column saying what is wrong; it is empty when ``ok``.
    """

    accepted_events: int
    client_ok: int
    joined: int
    client_ok_unmatched: int
    events_unmatched: int
    duplicate_matches: int
    ok: bool
    events_of_failed_clients: int = 0
    problems: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)


def reconcile(client: pd.DataFrame, events: pd.DataFrame) -> Reconciliation:
    """Check that every successful connection was accepted exactly once, and vice versa.

    The kit's promise is that every accepted connection appears exactly once
    in ``events`` and every client connection that got its answers is joined
    to exactly one event (see :func:`join_client_events` for how).  This
    function counts the ways that promise can break: an ok client with no
    event (the event log lost a row), an event with no client (a stray
    connection, or a client row lost), and a pair matched twice (a row
    logged twice).  Accepted events of clients that failed are counted
    separately, not hidden, and do not make the result fail.

    Use it as ``assert reconcile(client, events).ok``; look at ``.problems``
    to see which rows are to blame.

    Args:
        client: the run's client table.
        events: the run's events table.
    """
    is_ok = _as_bool(client["ok"])
    ok_clients, failed_clients = client[is_ok], client[~is_ok]
    accepted_events = events[events["outcome"] == "accepted"]
    pairs = _match(ok_clients, accepted_events)

    per_client = pairs["client_index"].value_counts()
    per_event = pairs["event_index"].value_counts()
    lonely_clients = ok_clients[~ok_clients.index.isin(pairs["client_index"])]
    lonely_events = accepted_events[~accepted_events.index.isin(pairs["event_index"])]
    # Of the events no ok client claims, which belong to a client that failed?
    of_failed = _match(failed_clients, lonely_events)["event_index"].unique()
    stray_events = lonely_events[~lonely_events.index.isin(of_failed)]

    problems = []
    for index, row in lonely_clients.iterrows():
        problems.append({"problem": "ok client, no accepted event", "client_index": index,
                         "port": row["local_port"], "t_start_ns": row["t_start_ns"]})
    for index, row in stray_events.iterrows():
        problems.append({"problem": "accepted event, no client", "event_index": index,
                         "port": row["peer_port"], "worker": row["worker"],
                         "t_accept_ns": row["t_accept_ns"]})
    for index in of_failed:
        row = lonely_events.loc[index]
        problems.append({"problem": "accepted event of a failed client", "event_index": index,
                         "port": row["peer_port"], "worker": row["worker"],
                         "t_accept_ns": row["t_accept_ns"]})
    for index, count in per_client[per_client > 1].items():
        problems.append({"problem": f"ok client matches {count} events", "client_index": index,
                         "port": client.loc[index, "local_port"]})
    for index, count in per_event[per_event > 1].items():
        problems.append({"problem": f"event matches {count} ok clients", "event_index": index,
                         "port": events.loc[index, "peer_port"]})

    duplicates = int((per_client > 1).sum() + (per_event > 1).sum())
    return Reconciliation(
        accepted_events=len(accepted_events),
        client_ok=len(ok_clients),
        joined=len(pairs),
        client_ok_unmatched=len(lonely_clients),
        events_unmatched=len(stray_events),
        duplicate_matches=duplicates,
        ok=len(lonely_clients) == 0 and len(stray_events) == 0 and duplicates == 0,
        events_of_failed_clients=len(of_failed),
        problems=pd.DataFrame(problems, columns=["problem", "client_index", "event_index", "port",
                                                 "worker", "t_start_ns", "t_accept_ns"]),
    )


# --------------------------------------------------------------------------- what each strategy predicts
# Each strategy's prediction is its record's (acceptlab.registry): the model, its band, its words.


def expected_share(strategy: str, workers: int, connections: int,
                   options: Mapping[str, float] | None = None) -> Prediction:
    """What ``strategy`` predicts for how ``connections`` are spread over ``workers``.

    These are the light-load predictions of each strategy's mechanism (under
    saturation every shared-queue strategy follows each worker's service
    rate instead), one model per strategy, written in its record
    (:data:`acceptlab.registry.STRATEGY_RECORDS`):

    * taking turns (``blocking``, ``locked``, ``handoff``, ``handoff-least-busy``):
      every count is connections/workers (``kind='exact'``; ``low``/``high``
      differ by one when it does not divide).  For ``locked`` that holds only
      if the lock wakes its waiters in order: measure it.
    * a fair die (``reuseport``): each count is Binomial(connections,
      1/workers); the band is its central 99 % interval (``kind='binomial'``).
    * a race (``timeout``, ``poll``, ``epoll``, and ``busy-sleep`` and
      ``exact`` while no process is busy): roughly even, nothing guarantees it
      (``kind='racy'``; the die's band is a guide).
    * one worker takes most (``epoll-exclusive``): no per-worker share,
      ``share`` is NaN and the band is 0..connections (``kind='one-worker'``).
    * uneven (``shared-epoll``: the most recent waiter is woken first;
      ``reuseport-cpu`` and ``reuseport-incoming-cpu``: the client's CPU
      decides): no per-worker count is predicted (``kind='uneven'``).
    * blocks in turn (``reorder``): blocks of ``every`` connections (16, as
      nginx), each block to the next worker (``kind='exact'``).

    An unknown strategy raises ``ValueError``.

    Args:
        strategy: the strategy's name.
        workers: the pool size.
        connections: how many connections were (or will be) accepted.
        options: the strategy's options, if the run changed its defaults
            (``{"every": 8}`` for ``reorder``).
    """
    return registry.expected_share(strategy, workers, connections, options)


def _predicted_by(model: type[registry.Model]) -> tuple[str, ...]:
    return tuple(name for name, record in registry.STRATEGY_RECORDS.items()
                 if type(record.prediction) is model)


# The strategies grouped by what they predict under light load (a lesson's "which of these").
TAKE_TURNS = _predicted_by(registry.Turns)  # a FIFO of waiters, or a dealer: strict turns
ONE_WORKER = _predicted_by(registry.OneWorker)  # the first registered idle waiter takes most
RECENT_WAITERS = _predicted_by(registry.RecentWaiters)  # LIFO-ish: uneven, recent waiters win
HERD = _predicted_by(registry.Herd)  # every idle worker wakes and races for the connection
HASHED = _predicted_by(registry.FairDie)  # a hash of the 4-tuple picks the socket: a fair die
IN_BLOCKS = _predicted_by(registry.InBlocks)  # one worker at a time, handing over every N
BY_CPU = _predicted_by(registry.ByCpu)  # the CPU the connection arrived on decides


def open_per_process(events: pd.DataFrame, *, threads: int) -> list[int]:
    """How many connections each worker process held open right after the last accept.

    Why: a fix for long-lived connections (Envoy's exact balance, a
    least-busy dealer) promises even *open* counts per process, not even
    accept totals; with ``kind='hybrid'`` a process is ``threads`` slots
    (slot ``p * threads + t`` is thread ``t`` of process ``p``).

    Args:
        events: a run's event log.
        threads: threads per process (1 for ``kind='process'``).
    """
    taken = accepted(events)
    if taken.empty:
        return []
    moment = taken["t_accept_ns"].max()
    still_open = taken[_ns(taken["t_done_ns"]) > moment]
    groups = (still_open["worker"].astype(int) // threads).value_counts()
    processes = int(events["worker"].max()) // threads + 1
    return [int(groups.get(group, 0)) for group in range(processes)]


def busy_while_idle(events: pd.DataFrame, *, threads: int) -> float:
    """The share of accepts that went to a process already serving while another process sat idle.

    Why: in a server of processes x threads (gunicorn gthread, Puma) an idle
    thread of a busy process takes a connection as readily as a thread of an
    idle process; the request then shares a CPU (and a GIL) it need not
    share.  Puma's busy sleep exists to bring this share down.

    Args:
        events: a run's event log (``kind='hybrid'``).
        threads: threads per process.
    """
    taken = accepted(events)
    if taken.empty:
        return float("nan")
    start = _ns(taken["t_accept_ns"])
    end = _ns(taken["t_done_ns"])
    group = taken["worker"].to_numpy(dtype=int) // threads
    processes = range(int(events["worker"].max()) // threads + 1)
    doubled = 0
    for moment, own in zip(start, group):
        open_now = [int(((group == g) & (start < moment) & (end > moment)).sum()) for g in processes]
        doubled += open_now[own] >= 1 and min(open_now) == 0
    return doubled / len(taken)


# --------------------------------------------------------------------------- one line per run


def single_value(frame: pd.DataFrame, column: str, *, default: str | None = None) -> str | None:
    """The one value ``column`` holds in every row (a run's strategy, kind or label), as a str.

    A run's events repeat its strategy on every row; a table that mixes
    runs has several, and a table typed in by hand may have none.  Then no
    single answer exists, and ``default`` is returned instead of a guess.

    Args:
        frame: any table, usually a run's events.
        column: the column to read.
        default: what to return when the column is absent, empty or mixed.
    """
    if column not in frame:
        return default
    values = frame[column].dropna().unique()
    return str(values[0]) if len(values) == 1 else default


def _guess_workers(events: pd.DataFrame) -> int:
    """The pool size a table implies: the highest slot seen plus one (misses a silent top slot)."""
    return int(pd.to_numeric(events["worker"]).max()) + 1 if len(events) else 0


def unpack_run(run: Any) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    """``(events, client, workers)`` of a run, however it was given.

    The figures and tables accept a run in three shapes, so a notebook can
    pass what it has: ``(events, workers)``, ``(events, client, workers)``
    (``client`` may be None), or any object with ``events`` and
    ``workers`` attributes and perhaps ``client`` (an experiment's ``Run``).
    A missing ``workers`` is guessed from the events' highest slot.

    Args:
        run: the run, in one of the shapes above.
    """
    if isinstance(run, tuple):
        if len(run) == 2:
            (events, workers), client = run, None
        elif len(run) == 3:
            events, client, workers = run
        else:
            raise ValueError(f"a run tuple is (events, workers) or (events, client, workers), "
                             f"not {len(run)} items")
    else:
        events, client, workers = run.events, getattr(run, "client", None), getattr(
            run, "workers", None)
    return events, client, int(workers) if workers is not None else _guess_workers(events)


def summary(events: pd.DataFrame, client: pd.DataFrame | None = None,
            workers: int | None = None) -> dict[str, Any]:
    """The headline numbers of one run, as one flat dict of plain Python values.

    Keys: ``run``, ``strategy``, ``kind`` (when the events name exactly one),
    ``workers``, ``accepted``, ``busiest_share`` (the busiest worker's
    fraction), ``jain`` (:func:`jain_fairness` over all slots), ``rr_score``
    (:func:`round_robin_score`), ``mean_rank`` (the mean ``norm_rank`` of
    :func:`wake_order_ranks`: 0 = FIFO, 1 = LIFO, ≈ 0.5 a fair race), and
    :func:`cost_per_accept`'s ``wakeups_per_accept`` (context switches),
    ``returns_per_accept``, ``eagain_per_accept``, ``timeouts_per_accept``;
    and with ``client``: ``client_ok``, ``p50_ms``, ``p99_ms`` and
    ``reconciled`` (:func:`reconcile`'s ``ok``).  Numbers that cannot be
    computed (nothing accepted) are NaN.

    Args:
        events: the run's events table.
        client: the run's client table, for latency and reconciliation.
        workers: the pool size; otherwise it is guessed as the highest slot
            seen plus one, which misses a top slot that never woke.
    """
    if workers is None:
        workers = _guess_workers(events)
    table = per_worker(events, workers)
    order = accepted(events)["worker"].tolist()
    ranks = wake_order_ranks(events)["norm_rank"]
    cost = cost_per_accept(events)
    result: dict[str, Any] = {
        "run": single_value(events, "run"),
        "strategy": single_value(events, "strategy"),
        "kind": single_value(events, "kind"),
        "workers": workers,
        "accepted": cost["accepted"],
        "busiest_share": float(table["share"].max()) if cost["accepted"] else float("nan"),
        "jain": jain_fairness(table["accepts"]) if workers else float("nan"),
        "rr_score": round_robin_score(order, workers) if workers else float("nan"),
        "mean_rank": float(ranks.mean()) if ranks.notna().any() else float("nan"),
        "wakeups_per_accept": cost["wakeups_per_accept"],
        "returns_per_accept": cost["returns_per_accept"],
        "eagain_per_accept": cost["eagain_per_accept"],
        "timeouts_per_accept": cost["timeouts_per_accept"],
    }
    if client is not None:
        times = latency(client).iloc[0]
        result.update(client_ok=int(_as_bool(client["ok"]).sum()),
                      p50_ms=float(times["p50_ms"]), p99_ms=float(times["p99_ms"]),
                      reconciled=reconcile(client, events).ok)
    return result


def summarize_runs(runs: Mapping[str, Any]) -> pd.DataFrame:
    """One row of :func:`summary` per run, indexed by the run's label.

    So ``summarize_runs({"blocking": run_a, "poll": run_b})`` puts two runs
    side by side.

    Args:
        runs: a label for each run, mapped to the run in any shape
            :func:`unpack_run` reads (a ``Run``, ``(events, workers)`` or
            ``(events, client, workers)``).
    """
    rows = {}
    for label, run in runs.items():
        rows[label] = summary(*unpack_run(run))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "label"
    return table
