"""The course's answer in one figure: every strategy placed by what it costs and how it shares.

Each strategy × kind that ran is a point: across, what one connection cost in
wakeups (log scale: one wakeup is the ideal, a herd costs one per idle worker);
up, the busiest worker's share of the connections (the even share and "one
worker takes all" are marked).  Beside each point, hollow, the position its
model predicts, joined to it by a thin line: a long line is a surprise worth a
question.  Colours are the families the course meets them in: taking turns, the
thundering herd, one worker takes all, the hash, and the ecosystem's fixes.

    from acceptlab.views.strategy_map import strategy_map
    strategy_map(runs)          # {label: Run}, e.g. what compare() returned
    strategy_map(table)         # or analysis.summarize_runs(runs)

Where the predictions come from
-------------------------------
* **Busiest share**: :func:`acceptlab.analysis.expected_share`, for this
  many workers and connections: exact turns give ``high / connections``; a
  fair die or a race, the top of its 99 % band; "one worker takes most", 1.
* **Wakeups per connection** (:func:`predicted_wakeups`): each strategy's
  registry record (:mod:`acceptlab.registry`): a wake-one strategy wakes 1
  worker; a herd wakes every idle worker (all of them, under the light load of
  ``compare``); a lock around ``accept()`` and the shared epoll cost about 2;
  a hand-off wakes the one worker it deals to (the acceptor is not a worker,
  so its own wakeups are not counted).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .. import analysis
from ..registry import strategy_record
from .style import PREDICTION, series_colour

__all__ = ["GROUPS", "strategy_group", "predicted_wakeups", "predicted_busiest",
           "strategy_map"]

# The families, in the order the course meets them, and the colour each keeps on the map.
GROUPS = {
    "turns": "taking turns (a FIFO queue)",
    "herd": "the thundering herd",
    "one takes all": "one worker takes all",
    "recent waiters": "recent waiters win (one shared epoll)",
    "hash": "the hash (SO_REUSEPORT)",
    "the fixes": "the ecosystem's fixes",
}
# A kernel strategy's family is the model its registry record predicts with.
_FAMILY_OF_MODEL = {"Turns": "turns", "Herd": "herd", "OneWorker": "one takes all",
                    "RecentWaiters": "recent waiters", "FairDie": "hash"}
_MARKERS = {"process": "o", "thread": "^", "hybrid": "s"}


def strategy_group(strategy: str) -> str:
    """The family of ``strategy`` on the map (a key of :data:`GROUPS`), from its registry record.

    The ecosystem's fixes are one family, whatever they predict (the course
    meets them together); a kernel strategy's family is its prediction's model.
    """
    record = strategy_record(strategy)
    if record.family == "fix":
        return "the fixes"
    return _FAMILY_OF_MODEL[type(record.prediction).__name__]


def predicted_wakeups(strategy: str, workers: int) -> float:
    """Wakeups per connection under light load (every worker idle): the record's ``wakeups``."""
    return strategy_record(strategy).wakeups.per_connection(workers)


def predicted_busiest(strategy: str, workers: int, connections: int) -> float:
    """The busiest worker's share that ``strategy`` predicts (see above); NaN if none."""
    if connections < 1:
        return math.nan
    guess = analysis.expected_share(strategy, workers, connections)
    return 1.0 if guess.kind == "one-worker" else guess.high / connections


def _table(runs: Mapping[str, Any] | pd.DataFrame) -> pd.DataFrame:
    table = runs if isinstance(runs, pd.DataFrame) else analysis.summarize_runs(runs)
    wanted = {"strategy", "kind", "workers", "accepted", "busiest_share", "wakeups_per_accept"}
    missing = wanted - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks {sorted(missing)}: pass runs, or "
                         f"analysis.summarize_runs(runs)")
    return table


def strategy_map(runs: Mapping[str, Any] | pd.DataFrame, *, title: str | None = None) -> Figure:
    """Every strategy × kind by cost (wakeups per connection) and sharing (busiest share).

    Args:
        runs: ``{label: Run}`` (as :func:`acceptlab.lab.experiment.compare` returns),
            or :func:`acceptlab.analysis.summarize_runs`'s table of them.
        title: the title; the default says what is drawn.
    """
    table = _table(runs)
    fig = Figure(figsize=(9.0, 6.2), layout="constrained")
    ax = fig.subplots()
    colours = {group: series_colour(i) for i, group in enumerate(GROUPS)}
    shown, missing, labels = [], [], {}
    workers_seen = set()
    for label, row in table.iterrows():
        strategy, kind = str(row["strategy"]), str(row["kind"])
        x, y = float(row["wakeups_per_accept"]), float(row["busiest_share"])
        if not (np.isfinite(x) and np.isfinite(y) and x > 0):
            missing.append(str(label))
            continue
        workers = int(row["workers"])
        workers_seen.add(workers)
        group = strategy_group(strategy)
        colour = colours[group]
        px = predicted_wakeups(strategy, workers)
        py = predicted_busiest(strategy, workers, int(row["accepted"]))
        if np.isfinite(py):
            ax.plot([px, x], [py, y], color=colour, linewidth=1, linestyle=":", zorder=1)
            ax.plot([px], [py], marker=_MARKERS.get(kind, "o"), markersize=9, color=colour,
                    markerfacecolor="white", markeredgewidth=1.5, linestyle="none", zorder=2)
        ax.plot([x], [y], marker=_MARKERS.get(kind, "o"), markersize=9, color=colour,
                markeredgecolor="white", linestyle="none", zorder=3)
        labels.setdefault(strategy, []).append((x, y))
        shown.append((x, y, px, py))

    xs = [value for point in shown for value in (point[0], point[2])] or [1.0]
    low, high = min(xs + [1.0]) / 1.6, max(xs + [2.0]) * 1.6
    _label_points(ax, labels, math.log10(high / low) / 7.6)  # the axes are ~7.6 in wide
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ticks = [t for t in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if low <= t <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_ylim(0, 1.12)
    for workers in sorted(workers_seen):
        ax.axhline(1 / workers, color=PREDICTION, linestyle="--", linewidth=1, zorder=0)
        ax.text(low * 1.03, 1 / workers + 0.012, f"even share: 1/{workers}",
                ha="left", va="bottom", fontsize=9)
    ax.axhline(1.0, color=PREDICTION, linestyle="-.", linewidth=1, zorder=0)
    ax.text(low * 1.03, 1.012, "one worker takes all", ha="left", va="bottom", fontsize=9)
    ax.axvline(1.0, color="0.6", linewidth=1, zorder=0)
    ax.set_xlabel("cost: wakeups per connection (log scale; 1 = wake one worker)")
    ax.set_ylabel("sharing: the busiest worker's share of the connections")
    ax.set_title(title if title is not None else
                 "Each strategy by what a connection costs and how the connections are shared\n"
                 "filled: measured in this run; hollow: its model's prediction")
    handles = [Line2D([], [], marker="o", linestyle="none", markersize=9, color=colours[g],
                      label=words) for g, words in GROUPS.items()]
    handles += [Line2D([], [], marker=_MARKERS[k], linestyle="none", markersize=9, color="0.3",
                       label=f"{k} workers") for k in sorted({str(k) for k in table["kind"]})
                if k in _MARKERS]
    handles += [Line2D([], [], marker="o", linestyle=":", markersize=9, color="0.3",
                       markerfacecolor="white", label="predicted (joined to its measurement)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    if missing:
        ax.text(0.01, 0.01, "not drawn (no wakeup counts on this OS): " + ", ".join(missing),
                transform=ax.transAxes, fontsize=8, color="0.3", wrap=True)
    if not shown:
        ax.text(0.5, 0.5, "no run with wakeup counts to place", transform=ax.transAxes,
                ha="center", va="center", color="0.3")
    return fig


def _label_points(ax: Any, labels: Mapping[str, list[tuple[float, float]]],
                  decades_per_inch: float) -> None:
    """Name the strategies beside their points: one list for points that sit together.

    Strategies whose points nearly coincide (the many that take turns at one wakeup and an
    even share) share one label, a name per line, so no name drifts away from its point.
    """
    spots = sorted((max(p[0] for p in points), float(np.mean([p[1] for p in points])), name)
                   for name, points in labels.items())
    clusters: list[list[tuple[float, float, str]]] = []
    for spot in spots:
        for cluster in clusters:
            if any(abs(math.log10(spot[0] / x)) < 0.05 and abs(spot[1] - y) < 0.035
                   for x, y, _ in cluster):
                cluster.append(spot)
                break
        else:
            clusters.append([spot])
    placed: list[tuple[float, float, float, float]] = []  # left, right, bottom, top
    line = 0.034  # a 9-point line, in units of busiest share (the axes are ~4.6 in tall)
    for cluster in sorted(clusters, key=lambda c: -max(y for _, y, _ in c)):
        x = max(x for x, _, _ in cluster)
        y = float(np.mean([y for _, y, _ in cluster]))
        names = sorted(name for _, _, name in cluster)
        left = math.log10(x) + 0.12 * decades_per_inch  # the 9-point offset, in decades
        right = left + max(len(n) for n in names) * 9 * 0.6 / 72 * decades_per_inch
        half = line * len(names) / 2
        while any(left < r and l < right and y - half < t and b < y + half
                  for l, r, b, t in placed):
            y -= line
        placed.append((left, right, y - half, y + half))
        ax.annotate("\n".join(names), (x, y), xytext=(9, 0), textcoords="offset points",
                    va="center", fontsize=9, linespacing=1.05,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.5})
