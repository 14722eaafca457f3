"""One line per run: the headline numbers of one run or many, side by side."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import pandas as pd

from .columns import as_bool
from .latency import latency
from .reconcile import reconcile
from .shares import accepted, jain_fairness, per_worker, round_robin_score
from .wakeups import cost_per_accept, wake_order_ranks

__all__ = ["summary", "summarize_runs", "unpack_run", "single_value", "SLOW_WORKER"]


# The slow-worker lesson: one worker of three takes 30 ms per request, the others 10 ms, under
# a closed loop of 12 clients.  One definition for ``make demo`` (report.py) and the reference
# runs in data/ (tools/make_reference_data.py); its latency tail is what :func:`latency` by
# worker shows for ``reuseport``.  Keywords of ``run_experiment``.
SLOW_WORKER: Mapping[str, Any] = MappingProxyType(dict(
    workers=3, connections=300, concurrency=12, work=("sleep:30", "sleep:10", "sleep:10")))


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
        result.update(client_ok=int(as_bool(client["ok"]).sum()),
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
