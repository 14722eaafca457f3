"""Who got the connections: the accept sequence, counts per worker, evenness, turns."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["accepted", "per_worker", "jain_fairness", "round_robin_score"]


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


def has_switch_counts(events: pd.DataFrame) -> bool:
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

    counted = has_switch_counts(events)
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
