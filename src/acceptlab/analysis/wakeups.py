"""Who was woken: the winner's place in the wake order, and what each connection cost in wakeups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import ns
from .shares import accepted, has_switch_counts

__all__ = ["wake_order_ranks", "waiting_at", "cost_per_accept"]


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

    when = ns(wins["t_wake_ns"])  # T, one per connection
    winner = pd.to_numeric(wins["worker"]).to_numpy(dtype="int64")
    slots = np.unique(pd.to_numeric(events["worker"]).to_numpy(dtype="int64"))

    # waiting[c, j]: was slot j waiting when connection c was handed out; since[c, j]: since when.
    waiting = np.zeros((len(wins), len(slots)), dtype=bool)
    since = np.zeros((len(wins), len(slots)), dtype="int64")
    for j, slot in enumerate(slots):
        waiting[:, j], since[:, j] = waiting_at(events, slot, when)

    # The winner was waiting in the row it won (T == its own t_wake, so the test above says no).
    me = np.arange(len(wins))
    column = np.searchsorted(slots, winner)
    waiting[me, column] = True
    since[me, column] = ns(wins["t_wait_ns"])

    n_waiting = waiting.sum(axis=1)
    # Rank = how many waiters had been waiting strictly longer than the winner.
    rank = (waiting & (since < since[me, column][:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_rank = np.where(n_waiting > 1, rank / np.maximum(n_waiting - 1, 1), np.nan)
    return pd.DataFrame({"t_wake_ns": when, "worker": winner, "rank": rank,
                         "n_waiting": n_waiting, "norm_rank": norm_rank})


def waiting_at(events: pd.DataFrame, worker: int, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each moment of ``when`` (ns): was ``worker`` in a wait (begun at or before it, not
    yet returned; a wait still going on counts), and since when (its ``t_wait_ns``).

    One worker waits for one thing at a time, so its rows sorted by ``t_wait_ns``
    do not overlap: a binary search (``np.searchsorted``) finds, for every moment
    at once, the last row that began at or before it, and checks it had not ended.
    """
    rows = events[events["worker"] == worker].sort_values("t_wait_ns", kind="stable")
    t_wait, t_wake = ns(rows["t_wait_ns"]), ns(rows["t_wake_ns"])
    last = np.searchsorted(t_wait, when, side="right") - 1  # last row with t_wait <= T
    found = last >= 0
    last = np.where(found, last, 0)
    return found & (when < t_wake[last]), t_wait[last]


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
                               if has_switch_counts(events) else float("nan")),
        "returns_per_accept": per_connection(outcome.ne("waiting").sum()),
        "eagain_per_accept": per_connection(outcome.eq("eagain").sum()),
        "timeouts_per_accept": per_connection(outcome.eq("timeout").sum()),
    }
