"""What each connection cost: wakeups per strategy, the accept queue, latency."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ... import analysis
from .. import style
from .common import ms_since, no_data, set_title, worker_colour

__all__ = ["wakeups_by_strategy", "queue_depth", "latency_cdf"]

# --------------------------------------------------------------------------- what each connection cost


def wakeups_by_strategy(summary_df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Wakeups per accepted connection, against the returns and EAGAINs a worker could see.

    ``summary_df`` is :func:`acceptlab.analysis.summarize_runs`'s table (or
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
    set_title(ax, title, "How many wakeups did each connection cost?")
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
        no_data(ax, "no runs")
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
    :func:`acceptlab.analysis.queue_owners`) is labelled by its worker and
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
            ax.step(ms_since(rows["t_ns"], start), depth,
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
        no_data(ax, "no queue samples (accept-queue depth is read on Linux only)")
    ax.set_xlabel("time since the first sample (ms)")
    ax.set_ylabel("connections in the accept queue" + (
        "\n(log scale above 2)" if ax.get_yscale() == "symlog" else ""))
    set_title(ax, title, "Accept-queue depth: connections waiting for a worker")
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
    :func:`acceptlab.analysis.latency_ms`).  The x axis is logarithmic, so a
    long tail is visible next to a fast median.  Each label's p50 and p99
    come from :func:`acceptlab.analysis.latency`, the same numbers its
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
        no_data(ax, "no successful connections")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency: start of connect to last answer (ms, log scale)")
    ax.set_ylabel("fraction of connections at most this slow")
    set_title(ax, title, "Latency distribution (dot = 99th percentile)")
    ax.legend(fontsize="small", loc="lower right")
    return fig
