"""What each worker was doing: waiting, woken, conversing, over time."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from .common import ms_since, no_data, run_name, set_title, swatches, worker_colour

__all__ = ["worker_timeline"]

# --------------------------------------------------------------------------- what each worker was doing


def _as_mark(item: Any) -> tuple[int, int]:
    """``(slot, t_ns)`` from a tuple or from a pool's ``Replacement`` (slot, t_detected_ns)."""
    if isinstance(item, tuple):
        slot, t_ns = item
        return int(slot), int(t_ns)
    return int(item.slot), int(item.t_detected_ns)


def _widen(start: np.ndarray, width: np.ndarray, minimum: float) -> list[tuple[float, float]]:
    """Bars for broken_barh, each at least ``minimum`` wide so that a short one stays visible."""
    return list(zip(start, np.maximum(width, minimum)))


def worker_timeline(events: pd.DataFrame, workers: int, *,
                    kills: Iterable[Any] = (), title: str | None = None,
                    min_width: float = 0.004) -> Figure:
    """What each worker was doing over time: waiting, or serving a connection.

    One horizontal lane per worker slot.  A light bar is a wait (from
    ``t_wait_ns``, when the worker started waiting, to ``t_wake_ns``, when
    the wait returned); a solid bar is a conversation (``t_accept_ns`` to
    ``t_done_ns``).  A black × marks a return that got no connection
    (EAGAIN, a timeout or an error): a thundering herd that the workers
    noticed shows as × in every idle lane at once.  A red bolt marks a
    worker killed (from ``kills``), a red triangle where its replacement
    (a new ``generation`` in the events) started waiting.  Time is in
    milliseconds since the first event.

    A conversation that never finished (``t_done_ns`` missing: the worker
    was killed or stopped) is not drawn.  A wait that had not returned when
    the run ended (outcome ``waiting``) is drawn up to the run's last event.
    Any bar shorter than ``min_width`` of the time axis is drawn that wide,
    so that a 1 ms conversation on a 2 s axis is still a visible mark.

    Args:
        events: the run's events table.
        workers: the pool size (one lane per slot).
        kills: when workers died, as ``(slot, t_ns)`` pairs on the kit's
            clock, or a pool's ``replacements`` (their ``t_detected_ns``).
        title: the title; the default names the run and its strategy.
        min_width: the narrowest bar, as a fraction of the time axis.
    """
    lanes = max(workers, int(pd.to_numeric(events["worker"]).max()) + 1) if len(events) else workers
    fig = Figure(figsize=(9, max(2.8, 1.6 + 0.5 * lanes)), layout="constrained")
    ax = fig.subplots()
    marks = [_as_mark(item) for item in kills]
    slots = sorted({int(w) for w in pd.to_numeric(events["worker"]).unique()}) if len(events) \
        else list(range(workers))
    handles: list[Any] = [swatches(slots, 0.25), swatches(slots),
                          Line2D([], [], marker="x", color="black", linestyle="none")]
    labels = ["waiting for a connection", "serving a connection (accept → done)",
              "returned, but no connection (EAGAIN / timeout)"]
    if len(events):
        start = int(pd.to_numeric(events["t_wait_ns"]).min())
        times = events[["t_wait_ns", "t_wake_ns", "t_done_ns"]].apply(pd.to_numeric)
        end = (max([int(times.max().max())] + [t for _, t in marks]) - start) / 1e6
        shortest = max(end, 1e-3) * min_width
        for worker, rows in events.groupby("worker"):
            colour = worker_colour(worker)
            wait_from = ms_since(rows["t_wait_ns"], start)
            wait_to = ms_since(rows["t_wake_ns"], start)
            wait_to = np.where(np.isnan(wait_to), end, wait_to)  # still waiting at the end
            ax.broken_barh(_widen(wait_from, wait_to - wait_from, shortest),
                           (worker - 0.35, 0.7), facecolors=colour, alpha=0.25)
            served = rows[(rows["outcome"] == "accepted") & rows["t_done_ns"].notna()]
            serve_from = ms_since(served["t_accept_ns"], start)
            serve_to = ms_since(served["t_done_ns"], start)
            ax.broken_barh(_widen(serve_from, serve_to - serve_from, shortest),
                           (worker - 0.35, 0.7), facecolors=colour, edgecolors="white",
                           linewidth=0.5)
            missed = rows["outcome"].isin(["eagain", "timeout", "error"])
            ax.plot(wait_to[missed.to_numpy()], np.full(int(missed.sum()), worker), "x",
                    color="black", markersize=5)
        if marks:
            ax.plot([(t - start) / 1e6 for _, t in marks], [slot for slot, _ in marks],
                    marker="$\u21af$", color="red", markersize=14, linestyle="none")
            handles.append(Line2D([], [], marker="$\u21af$", color="red", markersize=12,
                                  linestyle="none"))
            labels.append("worker killed")
        born = _replacements(events)
        if len(born):
            ax.plot(ms_since(born["t_wait_ns"], start), born["worker"], marker=">",
                    color="red", markersize=7, linestyle="none")
            handles.append(Line2D([], [], marker=">", color="red", linestyle="none"))
            labels.append("replacement starts waiting")
    else:
        no_data(ax, "no events")
    ax.set_yticks(range(lanes))
    ax.set_ylim(lanes - 0.5, -0.5)  # worker 0 on top, like a list
    ax.set_xlabel("time since the first event (ms)")
    ax.set_ylabel("worker")
    set_title(ax, title, f"What each worker was doing ({run_name(events)})")
    fig.legend(handles=handles, labels=labels, handler_map={tuple: HandlerTuple(ndivide=None)},
               handlelength=3, loc="outside lower center", ncols=min(3, len(labels)),
               fontsize="small")
    return fig


def _replacements(events: pd.DataFrame) -> pd.DataFrame:
    """The first wait of every generation after the first: when each replacement was ready."""
    if "generation" not in events:
        return events.iloc[0:0]
    later = events[pd.to_numeric(events["generation"]) > 0]
    return later.sort_values("t_wait_ns", kind="stable").groupby(
        ["worker", "generation"], as_index=False).first()
