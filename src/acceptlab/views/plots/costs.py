"""What each connection cost: wakeups per strategy, the accept queue, latency."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from ... import analysis
from .common import OTHER, ms_since, no_data, set_title, worker_colour

__all__ = ["wakeups_by_strategy", "queue_depth", "latency_cdf"]

# --------------------------------------------------------------------------- what each connection cost


def wakeups_by_strategy(summary_df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Wakeups per accepted connection, against the returns and EAGAINs a worker could see.

    ``summary_df`` is :func:`acceptlab.analysis.summarize_runs`'s table, one
    row per run, labelled by its index (typically the strategy's name).
    Three bars per run:

    * **wakeups** (``wakeups_per_accept``): voluntary context switches of
      the waiting workers per connection: how many times a worker was put
      to sleep and woken by the kernel for each connection;
    * **returns** (``returns_per_accept``): waits that came back to Python;
    * **EAGAIN** (``eagain_per_accept``): returns that lost the race.

    The dashed line at 1 is the ideal: one wakeup per connection.  A
    thundering herd has a tall wakeup bar and short return and EAGAIN bars,
    because the kernel quietly puts most losers back to sleep.  "n/a" marks
    a run whose OS does not count context switches per thread.

    Args:
        summary_df: one row per run, with the columns above.
        title: the title; the default asks the figure's question.
    """
    labels = [str(label) for label in summary_df.index]
    x = np.arange(len(labels))

    def column(name: str) -> pd.Series:
        return pd.to_numeric(summary_df.get(name, pd.Series(np.nan, summary_df.index)))

    bars = [("wakeups_per_accept", "wakeups (voluntary context switches)", 0.42, 0),
            ("returns_per_accept", "returns (waits that came back to Python)", 0.24, 1),
            ("eagain_per_accept", "EAGAIN (returns that lost the race)", 0.24, 2)]
    fig = Figure(figsize=(max(6.0, 1.2 + 1.0 * len(labels)), 4.4), layout="constrained")
    ax = fig.subplots()
    offsets = (-0.27, 0.06, 0.30)  # the wide wakeup bar first, the two lesser ones beside it
    tallest = 1.0
    for (name, label, width, colour), offset in zip(bars, offsets):
        values = column(name)
        ax.bar(x + offset, values.fillna(0), width, color=OTHER(colour), label=label)
        for i in np.flatnonzero(values.isna().to_numpy()):
            ax.text(x[i] + offset, 0, "n/a", ha="center", va="bottom", fontsize="x-small")
        if values.notna().any():
            tallest = max(tallest, float(values.max(skipna=True)))
    ax.axhline(1, color="black", linestyle="--", linewidth=1,
               label="1 wakeup per connection (wake-one)")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center")
    ax.set_ylim(0, tallest * 1.6)  # head room for the legend
    ax.set_xlabel("run")
    ax.set_ylabel("per accepted connection")
    set_title(ax, title, "How many wakeups did each connection cost?")
    ax.legend(fontsize="small", loc="upper left")
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
            labels[name] = f"socket {unknown} (worker not known)"
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
    drawn in that worker's colour; the others are numbered "socket 1 (worker
    not known)", … in inode order.  ``owners`` overrides that guess when
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
        for name in names:
            rows = queue[sockets == name]
            if name in known:  # a worker's socket, in that worker's colour
                colour, style = worker_colour(known[name]), "-"
            else:  # not a worker colour, so nobody reads it as one
                colour, style = str(0.2 + 0.2 * (unknown % 3)), ("-", "--", ":")[unknown // 3 % 3]
                unknown += 1
            ax.step(ms_since(rows["t_ns"], start), pd.to_numeric(rows["queue_len"]),
                    where="post", color=colour, linestyle=style,
                    label=f"{labels[name]}: waiting for accept()")
            backlog = pd.to_numeric(rows["backlog"]).dropna() if "backlog" in rows else []
            if backlog_line and len(backlog):
                ax.axhline(int(backlog.max()), color=colour, linestyle="-.", linewidth=1,
                           label=f"{labels[name]}: backlog limit {int(backlog.max())}")
        ax.set_ylim(bottom=0)
        fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    else:
        no_data(ax, "no queue samples (accept-queue depth is read on Linux only)")
    ax.set_xlabel("time since the first sample (ms)")
    ax.set_ylabel("connections in the accept queue")
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
        colour = OTHER(i % 8)
        table = analysis.latency(client).iloc[0]
        fraction = np.arange(1, len(ms) + 1) / len(ms)
        ax.step(ms, fraction, where="post", color=colour,
                label=f"{label}: p50 {_ms(table['p50_ms'])}, p99 {_ms(table['p99_ms'])}")
        ax.plot([table["p99_ms"]], [0.99], "o", color=colour)
        drawn += 1
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
    if drawn:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    else:
        no_data(ax, "no successful connections")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency: start of connect to last answer (ms, log scale)")
    ax.set_ylabel("fraction of connections at most this slow")
    set_title(ax, title, "Latency distribution (dot = 99th percentile)")
    ax.legend(fontsize="small", loc="lower right")
    return fig
