"""The fixes side by side: the sweep's heatmaps and what each restart cost."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import style
from .common import set_title

__all__ = ["sweep_heatmaps", "restart_losses"]

# --------------------------------------------------------------------------- the fixes side by side


def sweep_heatmaps(table: pd.DataFrame, metrics: Iterable[str] | None = None, *,
                   title: str | None = None) -> Figure:
    """One heatmap per metric: strategies down, conditions across, the best cell of each column framed.

    ``table`` is :func:`acceptlab.lab.sweep.run_sweep`'s.  Colours run from good
    (light) to bad (dark) for every metric, whichever way "good" points, so a
    dark row is a strategy that loses everywhere.  Each cell prints its value.
    """
    from ...lab.sweep import METRICS

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
    set_title(ax, title, "what one restart cost the clients")
    return fig
