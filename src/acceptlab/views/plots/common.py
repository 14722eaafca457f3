"""What every figure shares: one colour per worker, titles, an empty panel."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ... import analysis
from .. import style

__all__ = ["worker_colour", "ORDER_ZOOM"]

# Where order is the point (who got connection 1, 2, 3, ...), two dozen connections show it:
# six turns of four workers.  Two hundred look like four dotted lines whatever the order.
ORDER_ZOOM = 24


def worker_colour(worker: int) -> tuple[float, float, float, float]:
    """The colour of ``worker`` in every figure of the kit (:func:`acceptlab.views.style.worker_colour`)."""
    return style.worker_colour(worker)


def ms_since(values: pd.Series, start: int) -> np.ndarray:
    """Nanosecond timestamps as milliseconds after ``start`` (NaN where missing)."""
    ns = pd.to_numeric(values).astype("Int64") - start
    return ns.to_numpy(dtype=float, na_value=np.nan) / 1e6


def no_data(ax: Axes, message: str) -> None:
    """Write ``message`` in the middle of an empty plot, so an empty figure explains itself."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="grey")



def set_title(ax: Axes, title: str | None, default: str) -> None:
    """``title`` if the caller gave one (distinct runs deserve distinct titles), else ``default``."""
    ax.set_title(default if title is None else title)


def run_name(events: pd.DataFrame) -> str:
    """The run's label and strategy for a default title: 'blocking/process, blocking'."""
    strategy = analysis.single_value(events, "strategy", default="unknown strategy")
    label = analysis.single_value(events, "run")
    return f"{label}, {strategy}" if label and label != strategy else strategy


def swatches(slots: Iterable[int], alpha: float = 1.0) -> tuple[Patch, ...]:
    """One patch per worker colour: a legend entry that looks like the bars it explains."""
    return tuple(Patch(facecolor=worker_colour(w), alpha=alpha) for w in slots)
