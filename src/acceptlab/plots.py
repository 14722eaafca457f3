"""Figures that show how the kernel handed out the connections.

Each function takes the kit's DataFrames (and a few options) and returns a
:class:`matplotlib.figure.Figure`.  In a notebook the returned figure shows
itself; in a script, save it with ``fig.savefig("name.png")``.

Two habits run through the module:

* **One colour per worker**, everywhere: worker *w* is colour *w* of
  matplotlib's ``tab10`` palette, so worker 2 is the same green in the bar
  chart, the raster and the timeline.
* **Figures are made with** ``Figure(...)`` **rather than** ``plt.subplots()``.
  A figure made by pyplot is also remembered by pyplot: Jupyter would then
  draw it twice (once because pyplot has an open figure, once because the
  cell returned it), and a loop of plots would keep every figure in memory.
  ``Figure`` is the same object-oriented API (``ax = fig.subplots()``,
  ``ax.bar(...)``) without that global state, and draws with any backend,
  ``Agg`` included.  Layout is ``"constrained"``, so labels do not overlap.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import analysis

__all__ = [
    "worker_colour",
    "per_worker_bars",
    "accept_raster",
    "worker_timeline",
    "wakeups_by_strategy",
    "queue_depth",
    "latency_cdf",
    "compare_strategies",
]

_TAB10 = matplotlib.colormaps["tab10"]
# Sockets and runs are not workers: give them another palette so nobody reads
# "the blue line" as "worker 0".
_OTHER = matplotlib.colormaps["Dark2"]


def worker_colour(worker: int) -> tuple[float, float, float, float]:
    """The colour of ``worker`` in every figure of the kit (tab10; repeats after 10 workers)."""
    return _TAB10(int(worker) % 10)


def _ms_since(values: pd.Series, start: int) -> np.ndarray:
    """Nanosecond timestamps as milliseconds after ``start`` (NaN where missing)."""
    ns = pd.to_numeric(values).astype("Int64") - start
    return ns.to_numpy(dtype=float, na_value=np.nan) / 1e6


def _strategy_of(events: pd.DataFrame, fallback: str | None = None) -> str | None:
    """The run's strategy, read from the events (or ``fallback`` when they name none or several)."""
    if "strategy" in events:
        names = events["strategy"].dropna().unique()
        if len(names) == 1:
            return str(names[0])
    return fallback


def _no_data(ax: Axes, message: str) -> None:
    """Write ``message`` in the middle of an empty plot, so an empty figure explains itself."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="grey")


# --------------------------------------------------------------------------- accepts per worker


def _draw_prediction(ax: Axes, strategy: str | None, workers: int, connections: int,
                     short: bool = False) -> float:
    """Draw what ``strategy`` predicts (analysis.expected_share) over a bar chart of counts.

    Returns the highest count the prediction reaches, so the caller can leave room for it.
    ``short`` gives legend labels that fit a small panel.
    """
    if strategy is None:
        return 0
    try:
        guess = analysis.expected_share(strategy, workers, connections)
    except ValueError:  # a strategy the kit has no prediction for: say so, draw nothing
        ax.plot([], [], " ", label=f"no prediction for {strategy}")
        return 0
    mean = connections / workers
    if guess.kind == "exact":
        ax.axhline(mean, color="black", linestyle="--", linewidth=1,
                   label="predicted: take turns" if short else f"predicted: {guess.note}")
        return guess.high
    if guess.kind in ("binomial", "racy"):
        # zorder 0 puts the band behind the bars, so the bars keep their colours.
        band = "predicted: 99 % band" if guess.kind == "binomial" else "racy: a die's 99 % band"
        ax.axhspan(guess.low, guess.high, color="grey", alpha=0.2, zorder=0,
                   label=band if short else f"predicted: {guess.note}")
        ax.axhline(mean, color="black", linestyle="--", linewidth=1,
                   label="_nolegend_" if short else f"even share: {mean:g}")
        return guess.high
    # One worker takes most: there is no per-worker line to draw, only the words.
    ax.plot([], [], " ", label=f"predicted: {guess.note}")
    return 0


def _draw_bars(ax: Axes, events: pd.DataFrame, workers: int, strategy: str | None,
               short: bool = False) -> None:
    """Bars of accepted connections per worker, with the prediction; ``short`` labels for grids."""
    table = analysis.per_worker(events, workers)
    connections = int(table["accepts"].sum())
    ax.bar(table.index, table["accepts"], color=[worker_colour(w) for w in table.index],
           label="accepted" if short else "connections accepted")
    predicted = _draw_prediction(ax, strategy, workers, connections, short)
    # Head room above the tallest bar (or band) for the legend, so it covers no data.
    ax.set_ylim(0, max(1, table["accepts"].max(), predicted) * 1.45)
    ax.set_xticks(list(table.index))
    ax.set_xlabel("worker")
    ax.set_ylabel("accepted" if short else "connections accepted")
    ax.legend(loc="upper right", fontsize="x-small" if short else "small")


def per_worker_bars(events: pd.DataFrame, workers: int, strategy: str | None = None,
                    ax: Axes | None = None) -> Figure:
    """How many connections each worker accepted, against the strategy's prediction.

    One bar per worker slot (zeros included), in the worker's colour.  Over
    the bars, what :func:`acceptlab.analysis.expected_share` predicts for
    this strategy and this many connections: a dashed line where workers
    should take exact turns (``blocking``, ``locked``), a shaded band where
    the split is a fair die (``reuseport``: 99 % of counts fall inside) or a
    race (``timeout``, ``poll``, ``epoll``), and a note in the legend where
    one worker is expected to take most (``epoll-exclusive``,
    ``shared-epoll``).

    ``strategy`` defaults to the one named in ``events``.  Pass ``ax`` to
    draw into an existing figure (the function then returns that figure).
    """
    strategy = strategy or _strategy_of(events)
    if ax is None:
        fig = Figure(figsize=(6, 3.8), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    _draw_bars(ax, events, workers, strategy)
    total = int((events["outcome"] == "accepted").sum())
    ax.set_title(f"Connections accepted per worker: {strategy or 'unknown strategy'}\n"
                 f"({workers} workers, {total} connections)")
    return fig


# --------------------------------------------------------------------------- who accepted each connection


def _draw_raster(ax: Axes, events: pd.DataFrame, workers: int, max_connections: int,
                 short: bool = False) -> int:
    """One mark per connection: x its place in the accept order, y its worker.  Returns the total."""
    order = analysis.accepted(events)["worker"].to_numpy(dtype="int64")
    shown = order[:max_connections]
    ax.scatter(np.arange(len(shown)), shown, c=[worker_colour(w) for w in shown],
               marker="s", s=10 if len(shown) > 60 else 24, linewidths=0)
    slots = max(workers, int(shown.max()) + 1) if len(shown) else workers
    ax.set_yticks(range(slots))
    ax.set_ylim(-0.6, slots - 0.4)
    ax.set_xlim(-1, max(len(shown), 1))
    ax.set_xlabel("connection # (accept order)" if short
                  else "connection number, in the order the connections were accepted")
    ax.set_ylabel("worker" if short else "worker that accepted it")
    if not len(shown):
        _no_data(ax, "no accepted connections")
    return len(order)


def accept_raster(events: pd.DataFrame, workers: int, max_connections: int = 200,
                  ax: Axes | None = None) -> Figure:
    """Who accepted each connection, in the order the kernel handed them out.

    x is the connection's place in the accept sequence, y the worker that
    got it, one square per connection.  Strict round robin (``blocking``
    under light load) is a repeating staircase 0, 1, 2, 3, 0, 1, …, which at
    a glance reads as evenly spaced stripes in every lane;
    ``epoll-exclusive`` draws one flat line (one worker takes everything);
    ``reuseport`` scatters at random.  Only the first ``max_connections``
    are drawn, so the pattern stays readable; the title says when more
    were accepted.
    """
    if ax is None:
        fig = Figure(figsize=(8, max(2.8, 1.4 + 0.45 * workers)), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    total = _draw_raster(ax, events, workers, max_connections)
    strategy = _strategy_of(events, "unknown strategy")
    shown = f"first {max_connections} of {total}" if total > max_connections else f"{total}"
    ax.set_title(f"Who accepted each connection ({strategy}, {shown} connections)")
    return fig


# --------------------------------------------------------------------------- what each worker was doing


def worker_timeline(events: pd.DataFrame, workers: int) -> Figure:
    """What each worker was doing over time: waiting, or serving a connection.

    One horizontal lane per worker slot.  A light bar is a wait (from
    ``t_wait_ns``, when the worker started waiting, to ``t_wake_ns``, when
    the wait returned); a solid bar is a conversation (``t_accept_ns`` to
    ``t_done_ns``).  A black × marks a wakeup that got no connection
    (EAGAIN, a timeout or an error): a thundering herd shows as × in every
    idle lane at once.  Time is in milliseconds since the first event.

    A conversation that never finished (``t_done_ns`` missing: the worker
    was killed or stopped) is not drawn.  A wait that had not returned when
    the run ended (outcome ``waiting``) is drawn up to the run's last event:
    the worker was still waiting then.
    """
    lanes = max(workers, int(pd.to_numeric(events["worker"]).max()) + 1) if len(events) else workers
    fig = Figure(figsize=(9, max(2.8, 1.6 + 0.5 * lanes)), layout="constrained")
    ax = fig.subplots()
    if len(events):
        start = int(pd.to_numeric(events["t_wait_ns"]).min())
        times = events[["t_wait_ns", "t_wake_ns", "t_done_ns"]].apply(pd.to_numeric)
        end = (int(times.max().max()) - start) / 1e6  # the run's last event, in ms
        for worker, rows in events.groupby("worker"):
            colour = worker_colour(worker)
            wait_from = _ms_since(rows["t_wait_ns"], start)
            wait_to = _ms_since(rows["t_wake_ns"], start)
            wait_to = np.where(np.isnan(wait_to), end, wait_to)  # still waiting at the end
            ax.broken_barh(list(zip(wait_from, wait_to - wait_from)), (worker - 0.35, 0.7),
                           facecolors=colour, alpha=0.25)
            served = rows[(rows["outcome"] == "accepted") & rows["t_done_ns"].notna()]
            serve_from = _ms_since(served["t_accept_ns"], start)
            serve_to = _ms_since(served["t_done_ns"], start)
            ax.broken_barh(list(zip(serve_from, serve_to - serve_from)), (worker - 0.35, 0.7),
                           facecolors=colour, edgecolors="white", linewidth=0.5)
            missed = rows["outcome"].isin(["eagain", "timeout", "error"])
            ax.plot(wait_to[missed.to_numpy()], np.full(int(missed.sum()), worker), "x",
                    color="black", markersize=5)
    else:
        _no_data(ax, "no events")
    ax.set_yticks(range(lanes))
    ax.set_ylim(lanes - 0.5, -0.5)  # worker 0 on top, like a list
    ax.set_xlabel("time since the first event (ms)")
    ax.set_ylabel("worker")
    ax.set_title(f"What each worker was doing ({_strategy_of(events, 'unknown strategy')})")
    grey = (0.4, 0.4, 0.4)
    fig.legend(handles=[Patch(facecolor=grey, alpha=0.25, label="waiting for a connection"),
                        Patch(facecolor=grey, label="serving a connection (accept → done)"),
                        Line2D([], [], marker="x", color="black", linestyle="none",
                               label="woken, but no connection (EAGAIN / timeout)")],
               loc="outside lower center", ncols=3, fontsize="small")
    return fig


# --------------------------------------------------------------------------- what each connection cost


def wakeups_by_strategy(summary_df: pd.DataFrame) -> Figure:
    """Wakeups per accepted connection, one pair of bars per run (or strategy).

    ``summary_df`` is :func:`acceptlab.analysis.summarize_runs`'s table, one
    row per run, labelled by its index (typically the strategy's name).
    The first bar is ``nvcsw_per_accept``: the worker threads' voluntary
    context switches per connection, i.e. how many times a worker was put
    to sleep and woken for each connection.  The second is
    ``eagain_per_accept``: the wakeups a worker *noticed* as lost races.
    The dashed line at 1 is the ideal: one wakeup per connection.  A
    thundering herd has tall first bars and short second ones, because the
    kernel quietly puts most losers back to sleep.  "n/a" marks a run whose
    OS does not count context switches per thread.
    """
    labels = [str(label) for label in summary_df.index]
    x = np.arange(len(labels))
    nvcsw = pd.to_numeric(summary_df.get("nvcsw_per_accept", pd.Series(np.nan, summary_df.index)))
    eagain = pd.to_numeric(summary_df["eagain_per_accept"])
    fig = Figure(figsize=(max(6.0, 1.2 + 0.9 * len(labels)), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.4
    ax.bar(x - width / 2, nvcsw.fillna(0), width, color=_OTHER(0),
           label="wakeups per connection (voluntary context switches)")
    ax.bar(x + width / 2, eagain.fillna(0), width, color=_OTHER(1),
           label="EAGAIN per connection (lost races a worker noticed)")
    for i in np.flatnonzero(nvcsw.isna().to_numpy()):
        ax.text(x[i] - width / 2, 0, "n/a", ha="center", va="bottom", fontsize="small")
    ax.axhline(1, color="black", linestyle="--", linewidth=1,
               label="1 wakeup per connection (wake-one)")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center")
    tallest = max(1.0, float(nvcsw.max(skipna=True) if nvcsw.notna().any() else 0),
                  float(eagain.max(skipna=True) if eagain.notna().any() else 0))
    ax.set_ylim(0, tallest * 1.5)  # head room for the legend
    ax.set_xlabel("run")
    ax.set_ylabel("per accepted connection")
    ax.set_title("How many wakeups did each connection cost?")
    ax.legend(fontsize="small", loc="upper left")
    if not labels:
        _no_data(ax, "no runs")
    return fig


# --------------------------------------------------------------------------- the accept queue


def queue_depth(queue: pd.DataFrame, backlog_line: bool = True) -> Figure:
    """How many connections waited in the accept queue, over time.

    One step line per listening socket (``shared``, or one per
    ``reuseport`` worker's own socket), x in milliseconds since the first
    sample.  With ``backlog_line`` the queue's limit (the ``backlog`` given
    to ``listen()``) is drawn dashed in the same colour: when the queue
    reaches it, Linux stops completing handshakes and clients wait or
    retry.  The limit is unknown (not drawn) where it was read from /proc.
    """
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    if len(queue):
        start = int(pd.to_numeric(queue["t_ns"]).min())
        sockets = queue["socket"] if "socket" in queue else pd.Series("shared", queue.index)
        for i, (name, rows) in enumerate(queue.groupby(sockets, sort=True)):
            colour = _OTHER(i % 8)
            ax.step(_ms_since(rows["t_ns"], start), pd.to_numeric(rows["queue_len"]), where="post",
                    color=colour, label=f"{name}: waiting for accept()")
            backlog = pd.to_numeric(rows["backlog"]).dropna() if "backlog" in rows else []
            if backlog_line and len(backlog):
                ax.axhline(int(backlog.max()), color=colour, linestyle="--", linewidth=1,
                           label=f"{name}: backlog limit {int(backlog.max())}")
        ax.set_ylim(bottom=0)
        fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    else:
        _no_data(ax, "no queue samples (accept-queue depth is read on Linux only)")
    ax.set_xlabel("time since the first sample (ms)")
    ax.set_ylabel("connections in the accept queue")
    ax.set_title("Accept-queue depth: connections waiting for a worker")
    return fig


# --------------------------------------------------------------------------- latency


def _ms(value: float) -> str:
    """A latency for a legend: '0.42 ms', '33.0 ms', '1095 ms' (no 1.1e+03)."""
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def latency_cdf(clients: Mapping[str, pd.DataFrame]) -> Figure:
    """The distribution of connection latency, one curve per labelled client table.

    Each curve is a cumulative distribution: at x milliseconds it gives the
    fraction of successful connections that took at most x (from the
    client starting to connect to its last answer).  The x axis is
    logarithmic, so a long tail is visible next to a fast median.  Each
    label's 99th percentile (p99) is marked with a dot on the dotted 0.99
    line and given in the legend: that is where a slow worker that keeps
    receiving connections (``reuseport``) shows.
    """
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for i, (label, client) in enumerate(clients.items()):
        ok = client[client["ok"].astype("boolean").fillna(False).astype(bool)]
        ms = np.sort(((pd.to_numeric(ok["t_done_ns"]) - pd.to_numeric(ok["t_start_ns"]))
                      .to_numpy(dtype=float, na_value=np.nan) / 1e6))
        ms = ms[np.isfinite(ms) & (ms > 0)]  # a log axis cannot show 0
        if not len(ms):
            ax.plot([], [], " ", label=f"{label}: no successful connections")
            continue
        colour = _OTHER(i % 8)
        p99 = float(analysis.latency(client).iloc[0]["p99_ms"])
        fraction = np.arange(1, len(ms) + 1) / len(ms)
        ax.step(ms, fraction, where="post", color=colour,
                label=f"{label}: p50 {_ms(np.median(ms))}, p99 {_ms(p99)}")
        ax.plot([p99], [0.99], "o", color=colour)
        drawn += 1
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
    if drawn:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    else:
        _no_data(ax, "no successful connections")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency: start of connect to last answer (ms, log scale)")
    ax.set_ylabel("fraction of connections at most this slow")
    ax.set_title("Latency distribution (dot = 99th percentile)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


# --------------------------------------------------------------------------- all strategies at once


def _unpack(run: Any) -> tuple[pd.DataFrame, int]:
    """``(events, workers)`` from a tuple, or from an object with those attributes (a Run)."""
    if isinstance(run, tuple):
        return run[0], int(run[-1])
    return run.events, int(run.workers)


def compare_strategies(runs: Mapping[str, Any], max_connections: int = 200) -> Figure:
    """All strategies side by side: who got each connection, and how many each worker got.

    ``runs`` maps a label (usually the strategy's name) to
    ``(events, workers)``.  For each run, two small panels in one column:
    on top its accept raster (as :func:`accept_raster`), below its
    per-worker bars with the predicted band (as :func:`per_worker_bars`).
    Up to four runs share a row of columns; more wrap into further rows,
    so eight strategies make a 4 × 4 grid.

    The bar panels share one y scale when the runs accepted similar numbers
    of connections (within a factor of two), so bar heights compare across
    strategies; otherwise each panel keeps its own scale.
    """
    labels = list(runs)
    columns = max(1, min(len(labels), 4))
    blocks = max(1, math.ceil(len(labels) / columns))
    # At least 7 inches wide, so the two-line suptitle fits above a single run.
    fig = Figure(figsize=(max(7.0, 3.6 * columns), 5.4 * blocks), layout="constrained")
    axes = fig.subplots(2 * blocks, columns, squeeze=False)

    totals, tallest = [], 0
    for i, label in enumerate(labels):
        events, workers = _unpack(runs[label])
        block, column = divmod(i, columns)
        top, bottom = axes[2 * block, column], axes[2 * block + 1, column]
        total = _draw_raster(top, events, workers, max_connections, short=True)
        top.set_title(label, fontweight="bold")
        _draw_bars(bottom, events, workers, _strategy_of(events, label), short=True)
        totals.append(total)
        tallest = max(tallest, bottom.get_ylim()[1])

    if totals and min(totals) > 0 and max(totals) <= 2 * min(totals):
        for i in range(len(labels)):
            block, column = divmod(i, columns)
            axes[2 * block + 1, column].set_ylim(0, tallest)
    for i in range(len(labels), blocks * columns):  # the empty places of the last row
        block, column = divmod(i, columns)
        axes[2 * block, column].set_visible(False)
        axes[2 * block + 1, column].set_visible(False)
    if not labels:
        _no_data(axes[0, 0], "no runs")

    fig.suptitle("How each strategy handed out connections\n"
                 f"top: who accepted each of the first {max_connections} connections; "
                 "bottom: connections per worker against the prediction")
    return fig
