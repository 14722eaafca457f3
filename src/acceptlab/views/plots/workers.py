"""Who got the connections: bars with the prediction, the accept raster, strategies side by side."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.patches import Patch

from ... import analysis
from .common import ORDER_ZOOM, no_data, run_name, set_title, swatches, worker_colour

__all__ = ["per_worker_bars", "accept_raster", "compare_strategies"]

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
    handles[bars] = swatches(table.index)  # the legend's swatch in every worker's colour
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, handlelength=3,
              loc="upper right", fontsize="x-small" if short else "small")


def per_worker_bars(events: pd.DataFrame, workers: int, strategy: str | None = None, *,
                    ax: Axes | None = None, title: str | None = None) -> Figure:
    """How many connections each worker accepted, against the strategy's prediction.

    One bar per worker slot (zeros included), in the worker's colour.  Over
    the bars, what :func:`acceptlab.analysis.expected_share` predicts for
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
    set_title(ax, title, f"Connections accepted per worker: {strategy or 'unknown strategy'}\n"
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
        no_data(ax, "no accepted connections")
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
    set_title(ax, title, f"Who accepted each connection ({run_name(events)}, {shown} connections)")
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
            the run in any shape :func:`acceptlab.analysis.unpack_run` reads.
        max_connections: how many of the first connections the rasters draw.
        title: the overall title; the default says what the panels show.
    """
    from ..shares import check_prediction, draw_share_bar

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
        no_data(axes[0, 0], "no runs")
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
