"""Figures that show how the kernel handed out the connections.

Each function takes the kit's DataFrames (and a few options) and returns a
:class:`matplotlib.figure.Figure`.  In a notebook the returned figure shows
itself; in a script, save it with ``fig.savefig("name.png")``.

Two habits run through the module:

* **One colour per worker**, everywhere: worker *w* is colour *w* of the
  kit's colour-blind-safe palette (:mod:`acceptlab.views.style`), so worker 2
  is the same green in the bar chart, the raster, the timeline, the film and
  their legends.
* **The kit's vocabulary**: a *wakeup* is a voluntary context switch (the
  kernel woke a sleeping worker); a *return* is a wait that came back to
  Python.  :mod:`acceptlab.views.analysis` explains why they differ.
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
from typing import Any, Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import analysis, style

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

# Where order is the point (who got connection 1, 2, 3, ...), two dozen connections show it:
# six turns of four workers.  Two hundred look like four dotted lines whatever the order.
ORDER_ZOOM = 24


def worker_colour(worker: int) -> tuple[float, float, float, float]:
    """The colour of ``worker`` in every figure of the kit (:func:`acceptlab.views.style.worker_colour`)."""
    return style.worker_colour(worker)


def _ms_since(values: pd.Series, start: int) -> np.ndarray:
    """Nanosecond timestamps as milliseconds after ``start`` (NaN where missing)."""
    ns = pd.to_numeric(values).astype("Int64") - start
    return ns.to_numpy(dtype=float, na_value=np.nan) / 1e6


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
    gist = guess.note.split(":")[0]  # "taking turns", "blocks of 16 in turn", ...: for small panels
    if guess.kind == "exact":
        ax.axhline(mean, color="black", linestyle="--", linewidth=1,
                   label=f"predicted: {gist}" if short else f"predicted: {guess.note}")
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
    ax.plot([], [], " ", label=f"predicted: {gist if short else guess.note}")
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
    handles, labels = ax.get_legend_handles_labels()
    bars = labels.index("accepted" if short else "connections accepted")
    handles[bars] = _swatches(table.index)  # the legend's swatch in every worker's colour
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, handlelength=3,
              loc="upper right", fontsize="x-small" if short else "small")


def _title(ax: Axes, title: str | None, default: str) -> None:
    """``title`` if the caller gave one (distinct runs deserve distinct titles), else ``default``."""
    ax.set_title(default if title is None else title)


def _run_name(events: pd.DataFrame) -> str:
    """The run's label and strategy for a default title: 'blocking/process, blocking'."""
    strategy = analysis.single_value(events, "strategy", default="unknown strategy")
    label = analysis.single_value(events, "run")
    return f"{label}, {strategy}" if label and label != strategy else strategy


def per_worker_bars(events: pd.DataFrame, workers: int, strategy: str | None = None, *,
                    ax: Axes | None = None, title: str | None = None) -> Figure:
    """How many connections each worker accepted, against the strategy's prediction.

    One bar per worker slot (zeros included), in the worker's colour.  Over
    the bars, what :func:`acceptlab.views.analysis.expected_share` predicts for
    this strategy and this many connections: a dashed line where workers
    should take exact turns (``blocking``, ``locked``), a shaded band where
    the split is a fair die (``reuseport``: 99 % of counts fall inside) or a
    race (``timeout``, ``poll``, ``epoll``), and a note in the legend where
    one worker is expected to take most (``epoll-exclusive``,
    ``shared-epoll``).

    Args:
        events: the run's events table.
        workers: the pool size (every slot gets a bar, zeros included).
        strategy: whose prediction to draw; defaults to the one the events name.
        ax: draw into this existing axes (the function returns its figure).
        title: the title; the default names the strategy and the counts.
    """
    strategy = strategy or analysis.single_value(events, "strategy")
    if ax is None:
        fig = Figure(figsize=(6, 3.8), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    _draw_bars(ax, events, workers, strategy)
    total = int((events["outcome"] == "accepted").sum())
    _title(ax, title, f"Connections accepted per worker: {strategy or 'unknown strategy'}\n"
                      f"({workers} workers, {total} connections)")
    return fig


# --------------------------------------------------------------------------- who accepted each connection


def _draw_raster(ax: Axes, events: pd.DataFrame, workers: int, max_connections: int,
                 short: bool = False) -> int:
    """One mark per connection: x its place in the accept order, y its worker.  Returns the total.

    Up to 60 connections, a thin grey line joins each connection to the next, so the order
    reads as a path: a staircase 0 1 2 3 0 1 2 3 for turns, a zigzag for a die.
    """
    order = analysis.accepted(events)["worker"].to_numpy(dtype="int64")
    shown = order[:max_connections]
    x = np.arange(len(shown))
    zoomed = 1 < len(shown) <= 60
    if zoomed:
        ax.plot(x, shown, color="0.75", linewidth=1, zorder=1)
    ax.scatter(x, shown, c=[worker_colour(w) for w in shown], marker="s",
               s=10 if len(shown) > 60 else 40, linewidths=0, zorder=2)
    slots = max(workers, int(shown.max()) + 1) if len(shown) else workers
    ax.set_yticks(range(slots))
    ax.set_ylim(-0.6, slots - 0.4)
    ax.set_xlim(-1, max(len(shown), 1))
    if zoomed:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("connection # (accept order)" if short
                  else "connection number, in the order the connections were accepted")
    ax.set_ylabel("worker" if short else "worker that accepted it")
    if not len(shown):
        _no_data(ax, "no accepted connections")
    return len(order)


def accept_raster(events: pd.DataFrame, workers: int, *, max_connections: int = ORDER_ZOOM,
                  title: str | None = None, ax: Axes | None = None) -> Figure:
    """Who accepted each connection, in the order the kernel handed them out.

    x is the connection's place in the accept sequence, y the worker that
    got it, one square per connection, joined in order by a thin line.
    Strict round robin (``blocking`` under light load) is a repeating
    staircase 0, 1, 2, 3, 0, 1, …; ``epoll-exclusive`` a flat line (one
    worker takes everything); ``reuseport`` a random zigzag.  Order shows
    only when the connections can be told apart, so by default the first
    two dozen are drawn (``ORDER_ZOOM``); with hundreds, a staircase and a
    die both look like evenly dotted lanes.  The title says when more were
    accepted than are shown.

    Args:
        events: the run's events table.
        workers: the pool size (one lane per slot).
        max_connections: how many of the first connections to draw.
        title: the title; give distinct runs distinct titles (the default
            names the run's label and strategy, which two runs of the same
            strategy share).
        ax: draw into this existing axes (the function returns its figure).
    """
    if ax is None:
        fig = Figure(figsize=(8, max(2.8, 1.4 + 0.45 * workers)), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    total = _draw_raster(ax, events, workers, max_connections)
    shown = f"first {max_connections} of {total}" if total > max_connections else f"{total}"
    _title(ax, title, f"Who accepted each connection ({_run_name(events)}, {shown} connections)")
    return fig


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


def _swatches(slots: Iterable[int], alpha: float = 1.0) -> tuple[Patch, ...]:
    """One patch per worker colour: a legend entry that looks like the bars it explains."""
    return tuple(Patch(facecolor=worker_colour(w), alpha=alpha) for w in slots)


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
    handles: list[Any] = [_swatches(slots, 0.25), _swatches(slots),
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
            wait_from = _ms_since(rows["t_wait_ns"], start)
            wait_to = _ms_since(rows["t_wake_ns"], start)
            wait_to = np.where(np.isnan(wait_to), end, wait_to)  # still waiting at the end
            ax.broken_barh(_widen(wait_from, wait_to - wait_from, shortest),
                           (worker - 0.35, 0.7), facecolors=colour, alpha=0.25)
            served = rows[(rows["outcome"] == "accepted") & rows["t_done_ns"].notna()]
            serve_from = _ms_since(served["t_accept_ns"], start)
            serve_to = _ms_since(served["t_done_ns"], start)
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
            ax.plot(_ms_since(born["t_wait_ns"], start), born["worker"], marker=">",
                    color="red", markersize=7, linestyle="none")
            handles.append(Line2D([], [], marker=">", color="red", linestyle="none"))
            labels.append("replacement starts waiting")
    else:
        _no_data(ax, "no events")
    ax.set_yticks(range(lanes))
    ax.set_ylim(lanes - 0.5, -0.5)  # worker 0 on top, like a list
    ax.set_xlabel("time since the first event (ms)")
    ax.set_ylabel("worker")
    _title(ax, title, f"What each worker was doing ({_run_name(events)})")
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


# --------------------------------------------------------------------------- what each connection cost


def wakeups_by_strategy(summary_df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Wakeups per accepted connection, against the returns and EAGAINs a worker could see.

    ``summary_df`` is :func:`acceptlab.views.analysis.summarize_runs`'s table (or
    ``acceptlab compare``'s summary), one row per run, labelled by its index:
    ``strategy/kind`` (the demo) or any name (a lesson's runs).  Strategies go
    down the side, in the table's order; each kind of worker is one horizontal
    bar, in its kind's colour, so processes and threads sit side by side:

    * the **bar** is the wakeups (``wakeups_per_accept``): voluntary context
      switches of the waiting workers per connection, how many times a worker
      was put to sleep and woken by the kernel for each connection;
    * a **diamond** marks the returns (``returns_per_accept``): waits that came
      back to Python;
    * a **cross** marks the EAGAINs (``eagain_per_accept``): returns that lost
      the race.

    The dashed line at 1 is the ideal: one wakeup per connection.  A
    thundering herd has a long bar with its diamond and cross near 1 and 0,
    because the kernel quietly puts most losers back to sleep.  "n/a" marks
    a run whose OS does not count context switches per thread.

    Args:
        summary_df: one row per run, with the columns above.
        title: the title; the default asks the figure's question.
    """
    labels = [str(label) for label in summary_df.index]
    kinds_column = summary_df["kind"] if "kind" in summary_df else pd.Series(None, summary_df.index)
    rows = []  # (strategy, kind or None, row label)
    for label, kind in zip(labels, kinds_column):
        strategy, _, named_kind = label.partition("/")
        rows.append((strategy, named_kind or (str(kind) if isinstance(kind, str) else None), label))
    strategies = list(dict.fromkeys(strategy for strategy, _, _ in rows))
    kinds = list(dict.fromkeys(kind for _, kind, _ in rows))

    def column(name: str) -> pd.Series:
        return pd.to_numeric(summary_df.get(name, pd.Series(np.nan, summary_df.index)))

    wakeups, returns, eagain = (column(name).set_axis(labels) for name in
                                ("wakeups_per_accept", "returns_per_accept", "eagain_per_accept"))
    band = 0.8 / max(len(kinds), 1)  # each strategy's row holds one bar per kind
    fig = Figure(figsize=(9.0, max(3.2, 1.6 + len(strategies) * (0.2 + 0.17 * len(kinds)))),
                 layout="constrained")
    ax = fig.subplots()
    tallest = 1.0
    for strategy, kind, label in rows:
        y = strategies.index(strategy) - 0.4 + band * (kinds.index(kind) + 0.5)
        colour = style.kind_colour(kind) if kind else style.series_colour(0)
        value = wakeups[label]
        if np.isnan(value):
            ax.text(0.02, y, "n/a", va="center", fontsize=8)
        else:
            ax.barh(y, value, band * 0.9, color=colour)
            tallest = max(tallest, value)
        ax.plot([returns[label]], [y], marker="D", markersize=6, color="black",
                markerfacecolor="white", linestyle="none")
        ax.plot([eagain[label]], [y], marker="x", markersize=7, color="black", linestyle="none")
        tallest = max(tallest, np.nan_to_num(returns[label]), np.nan_to_num(eagain[label]))
    ax.axvline(1, color=style.PREDICTION, linestyle="--", linewidth=1)
    ax.set_yticks(range(len(strategies)), strategies)
    ax.set_ylim(len(strategies) - 0.5, -0.5)  # the first strategy on top, like the table
    ax.set_xlim(0, tallest * 1.08)
    ax.set_xlabel("per accepted connection")
    ax.set_ylabel("strategy")
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    _title(ax, title, "How many wakeups did each connection cost?")
    handles = [Patch(facecolor=style.kind_colour(kind) if kind else style.series_colour(0),
                     label=f"wakeups, {kind} workers (context switches)" if kind
                     else "wakeups (voluntary context switches)") for kind in kinds]
    handles += [Line2D([], [], marker="D", color="black", markerfacecolor="white",
                       linestyle="none", label="returns (waits that came back to Python)"),
                Line2D([], [], marker="x", color="black", linestyle="none",
                       label="EAGAIN (returns that lost the race)"),
                Line2D([], [], color=style.PREDICTION, linestyle="--",
                       label="1 wakeup per connection (wake one)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    if not labels:
        _no_data(ax, "no runs")
    return fig


# --------------------------------------------------------------------------- the accept queue


def _queue_labels(names: list[str], owners: Mapping[str, Any]) -> dict[str, str]:
    """A reader's name for each socket: by its worker where known, else by order."""
    labels, unknown = {}, 0
    for name in names:
        if name in owners:
            labels[name] = f"worker {owners[name]}'s socket"
        elif name.startswith("inode:"):
            unknown += 1
            labels[name] = f"listener {unknown} (whose worker the data do not show)"
        else:
            labels[name] = "shared socket" if name == "shared" else name
    return labels


def queue_depth(queue: pd.DataFrame, *, events: pd.DataFrame | None = None,
                owners: Mapping[str, Any] | None = None, backlog_line: bool = True,
                title: str | None = None) -> Figure:
    """How many connections waited in the accept queue, over time.

    One step line per listening socket, x in milliseconds since the first
    sample.  With one shared socket, one line.  With ``reuseport`` each
    worker has a socket of its own, which the queue table knows only by
    its inode; a learner wants to know whose it is.  Pass the run's
    ``events`` and each socket whose owner shows in the data (see
    :func:`acceptlab.views.analysis.queue_owners`) is labelled by its worker and
    drawn in that worker's colour; the others are numbered "listener 1 (whose
    worker the data do not show)", … in inode order.  When one line peaks
    far above another (a closed loop's 4 beside an open loop's 69), the
    y axis stretches the small depths (linear to 2, logarithmic above), so
    both peaks show.  ``owners`` overrides that guess when
    the caller knows better.  With ``backlog_line`` the queue's limit (the
    ``backlog`` given to ``listen()``) is drawn dashed in the same colour:
    when the queue reaches it, Linux stops completing handshakes and
    clients wait or retry.  The limit is unknown (not drawn) where it was
    read from /proc.

    Args:
        queue: the run's queue table.
        events: the run's events, to tell which worker owns each socket.
        owners: ``{socket name: worker}``, when known for certain.
        backlog_line: draw each queue's limit.
        title: the title; the default says what is drawn.
    """
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    if len(queue):
        start = int(pd.to_numeric(queue["t_ns"]).min())
        sockets = queue["socket"].astype(str) if "socket" in queue \
            else pd.Series("shared", queue.index)
        known = dict(owners) if owners is not None else (
            analysis.queue_owners(queue.assign(socket=sockets), events)
            if events is not None else {})
        names = sorted(sockets.unique())
        labels = _queue_labels(names, known)
        unknown = 0
        peaks = []
        for name in names:
            rows = queue[sockets == name]
            if name in known:  # a worker's socket, in that worker's colour
                colour, line = worker_colour(known[name]), "-"
            else:  # a colour of the series palette, not a worker's, so nobody reads it as one
                colour, line = style.series_colour(unknown), ("-", "--", ":")[unknown // 8 % 3]
                unknown += 1
            depth = pd.to_numeric(rows["queue_len"])
            peaks.append(float(depth.max()) if len(depth) else 0.0)
            ax.step(_ms_since(rows["t_ns"], start), depth,
                    where="post", color=colour, linestyle=line, linewidth=1.5,
                    label=f"{labels[name]}: waiting for accept()")
            backlog = pd.to_numeric(rows["backlog"]).dropna() if "backlog" in rows else []
            if backlog_line and len(backlog):
                ax.axhline(int(backlog.max()), color=colour, linestyle="-.", linewidth=1,
                           label=f"{labels[name]}: backlog limit {int(backlog.max())}")
        ax.set_ylim(bottom=0)
        lit = [peak for peak in peaks if peak > 0]
        if len(lit) > 1 and max(lit) > 8 * min(lit):
            # A peak of 4 beside one of 69 would be a flat line: stretch the small depths.
            ax.set_yscale("symlog", linthresh=2, linscale=0.5)
            ax.yaxis.set_major_locator(ticker.FixedLocator(
                [v for v in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
                 if v <= max(lit) * 1.5]))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            ax.yaxis.set_minor_locator(ticker.NullLocator())
            ax.set_ylim(0, max(lit) * 1.5)
        fig.legend(loc="outside lower center", ncols=1 if len(names) > 2 else 2,
                   fontsize="small")
    else:
        _no_data(ax, "no queue samples (accept-queue depth is read on Linux only)")
    ax.set_xlabel("time since the first sample (ms)")
    ax.set_ylabel("connections in the accept queue" + (
        "\n(log scale above 2)" if ax.get_yscale() == "symlog" else ""))
    _title(ax, title, "Accept-queue depth: connections waiting for a worker")
    return fig


# --------------------------------------------------------------------------- latency


def _ms(value: float) -> str:
    """A latency for a legend: '0.42 ms', '33.0 ms', '1095 ms' (no 1.1e+03)."""
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def latency_cdf(clients: Mapping[str, pd.DataFrame], *, title: str | None = None) -> Figure:
    """The distribution of connection latency, one curve per labelled client table.

    Each curve is a cumulative distribution: at x milliseconds it gives the
    fraction of successful connections that took at most x (from the
    client starting to connect to its last answer:
    :func:`acceptlab.views.analysis.latency_ms`).  The x axis is logarithmic, so a
    long tail is visible next to a fast median.  Each label's p50 and p99
    come from :func:`acceptlab.views.analysis.latency`, the same numbers its
    table prints; the p99 is marked with a dot on the dotted 0.99 line:
    that is where a slow worker that keeps receiving connections
    (``reuseport``) shows.

    Args:
        clients: a label for each run, mapped to its client table.
        title: the title; the default says what is drawn.
    """
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for i, (label, client) in enumerate(clients.items()):
        ms = np.sort(analysis.latency_ms(client).dropna().to_numpy())
        ms = ms[ms > 0]  # a log axis cannot show 0
        if not len(ms):
            ax.plot([], [], " ", label=f"{label}: no successful connections")
            continue
        colour = style.series_colour(i)
        table = analysis.latency(client).iloc[0]
        fraction = np.arange(1, len(ms) + 1) / len(ms)
        ax.step(ms, fraction, where="post", color=colour,
                label=f"{label}: p50 {_ms(table['p50_ms'])}, p99 {_ms(table['p99_ms'])}")
        ax.plot([table["p99_ms"]], [0.99], "o", color=colour)
        drawn += 1
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
    if drawn:
        ax.set_xscale("log")
        style.plain_log_axis(ax.xaxis)  # 10, 30, 100, 300 (no 3×10¹)
    else:
        _no_data(ax, "no successful connections")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency: start of connect to last answer (ms, log scale)")
    ax.set_ylabel("fraction of connections at most this slow")
    _title(ax, title, "Latency distribution (dot = 99th percentile)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


# --------------------------------------------------------------------------- all strategies at once


def compare_strategies(runs: Mapping[str, Any], *, max_connections: int = ORDER_ZOOM,
                       title: str | None = None) -> Figure:
    """All strategies, one row each: who got each connection, and how all of them were split.

    Each run is a row of two panels.  Left, its accept raster (as
    :func:`accept_raster`: the first ``max_connections`` connections, so
    that taking turns and a fair die look different).  Right, every
    connection's split as one bar, each worker's share stacked in its
    colour, ticks at the even split, and beside it the strategy's prediction
    with a verdict computed from the run
    (:func:`acceptlab.views.shares.check_prediction`).  Rows read at the
    page's width however many strategies there are (a grid of small panels
    did not); the workers' colours are explained once, below.

    Args:
        runs: a label (usually the strategy's name) for each run, mapped to
            the run in any shape :func:`acceptlab.views.analysis.unpack_run` reads.
        max_connections: how many of the first connections the rasters draw.
        title: the overall title; the default says what the panels show.
    """
    from .shares import check_prediction, draw_share_bar

    labels = list(runs)
    count = max(len(labels), 1)
    fig = Figure(figsize=(9.0, max(3.4, 1.5 + 0.62 * count)), layout="constrained")
    axes = fig.subplots(count, 2, squeeze=False, sharex="col",
                        gridspec_kw={"width_ratios": [3, 2.6]})
    widest, totals = 1, []
    for i, label in enumerate(labels):
        events, _, workers = analysis.unpack_run(runs[label])
        widest = max(widest, workers)
        raster, split = axes[i]
        _draw_raster(raster, events, workers, max_connections, short=True)
        raster.set_yticks([])
        raster.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        raster.set_xlabel("")
        total = draw_share_bar(split, 0, events, workers, height=0.8)
        check = check_prediction(analysis.single_value(events, "strategy", default=label),
                                 events, workers)
        if check is not None:
            split.text(1.04, 0, f"{check.gist}:\n{check.verdict}", va="center", fontsize=8.5)
        split.set_ylim(-0.6, 0.6)
        split.set_yticks([])
        split.set_xlim(0, 1.75)
        split.spines[["top", "right", "left"]].set_visible(False)
        split.spines["bottom"].set_bounds(0, 1)
        split.set_xticks([0, 0.5, 1], ["0", "50 %", "100 %"])
        totals.append(total)
    if labels:
        axes[0, 0].set_title(f"who accepted each of the first {max_connections} connections",
                             fontsize=10)
        of = f"all {totals[0]}" if len(set(totals)) == 1 else "all of them"
        axes[0, 1].set_title(f"each worker's share of {of}; prediction", fontsize=10)
        axes[-1, 0].set_xlabel("connection number, in accept order")
        axes[-1, 1].set_xlabel("share of the connections (ticks: even split)")
        for row in axes[:-1]:
            for ax in row:
                ax.tick_params(labelbottom=False)
    else:
        _no_data(axes[0, 0], "no runs")
        axes[0, 0].set_xlabel("connection number, in accept order")
        axes[0, 0].set_ylabel("worker")
        axes[0, 1].set_xlabel("share of the connections")
        axes[0, 1].set_ylabel("run")
    fig.legend(handles=[Patch(facecolor=worker_colour(w), label=f"worker {w}")
                        for w in range(widest)],
               loc="outside lower center", ncols=min(widest, 8), fontsize=9)
    fig.suptitle(title if title is not None else
                 "How each strategy handed out connections: the order, then the split")
    return fig


# --------------------------------------------------------------------------- the fixes side by side


def sweep_heatmaps(table: pd.DataFrame, metrics: Iterable[str] | None = None, *,
                   title: str | None = None) -> Figure:
    """One heatmap per metric: strategies down, conditions across, the best cell of each column framed.

    ``table`` is :func:`acceptlab.lab.sweep.run_sweep`'s.  Colours run from good
    (light) to bad (dark) for every metric, whichever way "good" points, so a
    dark row is a strategy that loses everywhere.  Each cell prints its value.
    """
    from ..lab.sweep import METRICS

    metrics = list(metrics or METRICS)
    strategies = list(dict.fromkeys(table["strategy"]))
    conditions = list(dict.fromkeys(table["condition"]))
    columns = min(2, len(metrics))  # two panels a row: the page's width holds two readably
    rows = math.ceil(len(metrics) / columns)
    fig = Figure(figsize=(9.0, (0.3 * len(strategies) + 2.0) * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    for index, (ax, metric) in enumerate(zip(axes, metrics)):
        what, higher_better = METRICS[metric]
        grid = (table.pivot(index="strategy", columns="condition", values=metric)
                .reindex(index=strategies, columns=conditions).astype(float))
        badness = -grid if higher_better else grid
        # Rank within each condition, so one condition's large numbers do not wash out the rest.
        shade = badness.rank(axis=0, pct=True).to_numpy(dtype=float, na_value=np.nan)
        ax.imshow(shade, cmap="Greys", vmin=0, vmax=1.4, aspect="auto")
        for (row, col), value in np.ndenumerate(grid.to_numpy()):
            text = "—" if np.isnan(value) else (f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}")
            ax.text(col, row, text, ha="center", va="center", fontsize=8.5,
                    color="white" if shade[row, col] > 0.75 else "black")
        for col in range(len(conditions)):
            column = badness.iloc[:, col]
            if column.notna().any():
                best = strategies.index(column.idxmin())
                ax.add_patch(matplotlib.patches.Rectangle((col - 0.5, best - 0.5), 1, 1,
                                                          fill=False, lw=2.5,
                                                          color=style.WORKERS[2]))
        ax.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right", fontsize=9)
        ax.set_yticks(range(len(strategies)), strategies if index % columns == 0 else [],
                      fontsize=9)
        ax.set_xlabel("condition", fontsize=9)
        if index % columns == 0:
            ax.set_ylabel("strategy", fontsize=9)
        ax.set_title(f"{what}\n({'higher' if higher_better else 'lower'} is better)", fontsize=9)
    fig.suptitle(title or "which strategy wins where (green frame: best per condition)")
    return fig


def restart_losses(losses: Mapping[str, pd.DataFrame], *, title: str | None = None) -> Figure:
    """Connections lost or delayed per restart, one group of bars per design.

    ``losses`` maps a design ("shared socket", "reuseport", ...) to
    :func:`acceptlab.lab.restarts.restart_losses`'s table.  Bars are the mean per
    restart; the whiskers the range over the restarts.
    """
    kinds = [("refused", style.series_colour(2)), ("reset", style.series_colour(1)),
             ("delayed", style.series_colour(3))]
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(kinds)
    for offset, (kind, colour) in enumerate(kinds):
        for position, (design, table) in enumerate(losses.items()):
            values = table[kind].to_numpy(dtype=float) if len(table) else np.array([0.0])
            ax.bar(position + (offset - 1) * width, values.mean(), width, color=colour,
                   label=kind if position == 0 else None,
                   yerr=[[values.mean() - values.min()], [values.max() - values.mean()]],
                   capsize=3)
    ax.set_xticks(range(len(losses)), list(losses))
    ax.set_xlabel("design")
    ax.set_ylabel("connections per restart")
    ax.legend()
    _title(ax, title, "what one restart cost the clients")
    return fig
