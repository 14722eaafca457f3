"""Figures that show how the kernel handed out the connections.

Each function takes the kit's DataFrames (and a few options) and returns a
:class:`matplotlib.figure.Figure`.  In a notebook the returned figure shows
itself; in a script, save it with ``fig.savefig("name.png")``.

Two habits run through the module:

* **One colour per worker**, everywhere: worker *w* is colour *w* of
  matplotlib's ``tab10`` palette, so worker 2 is the same green in the bar
  chart, the raster, the timeline and its legend.
* **The kit's vocabulary**: a *wakeup* is a voluntary context switch (the
  kernel woke a sleeping worker); a *return* is a wait that came back to
  Python.  :mod:`acceptlab.analysis` explains why they differ.
* **Figures are made with** ``Figure(...)`` **rather than** ``plt.subplots()``.
  A figure made by pyplot is also remembered by pyplot: Jupyter would then
  draw it twice (once because pyplot has an open figure, once because the
  cell returned it), and a loop of plots would keep every figure in memory.
  ``Figure`` is the same object-oriented API (``ax = fig.subplots()``,
  ``ax.bar(...)``) without that global state, and draws with any backend,
  ``Agg`` included.  Layout is ``"constrained"``, so labels do not overlap.
"""

from __future__ import annotations

from .common import ORDER_ZOOM, worker_colour
from .costs import latency_cdf, queue_depth, wakeups_by_strategy
from .fixes import restart_losses, sweep_heatmaps
from .timeline import worker_timeline
from .workers import accept_raster, compare_strategies, per_worker_bars

__all__ = [
    "worker_colour",
    "ORDER_ZOOM",
    "per_worker_bars",
    "accept_raster",
    "worker_timeline",
    "wakeups_by_strategy",
    "queue_depth",
    "latency_cdf",
    "compare_strategies",
    "sweep_heatmaps",
    "restart_losses",
]
