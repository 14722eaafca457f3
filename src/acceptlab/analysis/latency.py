"""How long clients waited: latency per connection and its percentiles (the one definition)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import as_bool, column

__all__ = ["latency_ms", "latency"]


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
    ok = client[as_bool(client["ok"])]
    done = column(ok, "t_done_ns", "t_done_ns_client")
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

    ok = client[as_bool(client["ok"])]
    worker = pd.to_numeric(column(ok, "worker_event", "worker")).astype("Int64")
    known = worker.notna().to_numpy() & ~np.isnan(ms)
    frame = pd.DataFrame({"worker": worker[known].astype("int64").to_numpy(), "ms": ms[known]})
    rows = {w: _percentiles(group["ms"].to_numpy()) for w, group in frame.groupby("worker")}
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["count", "p50_ms", "p90_ms", "p99_ms", "max_ms"])
    table.index.name = "worker"
    return table
