"""Whose queue was it: the worker behind each ``reuseport`` socket of a queue table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import ns
from .shares import accepted

__all__ = ["queue_owners"]


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
    when = ns(won["t_accept_ns"])
    who = pd.to_numeric(won["worker"]).to_numpy(dtype="int64")
    slots = np.unique(who)
    strength = np.zeros((len(names), len(slots)))  # -correlation: the owner's is large
    for i, name in enumerate(names):
        rows = queue[queue["socket"].astype(str) == name].sort_values("t_ns", kind="stable")
        change = np.diff(pd.to_numeric(rows["queue_len"]).to_numpy(dtype=float))
        # interval k is (t[k], t[k+1]]; an accept at time a belongs to searchsorted(t, a) - 1
        interval = np.searchsorted(ns(rows["t_ns"]), when, side="left") - 1
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
