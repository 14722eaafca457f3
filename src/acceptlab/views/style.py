"""One palette and one set of sizes for every figure of the kit: plots, films, the strategy map.

Worker *w* has the same colour in every bar, raster, timeline, film frame and legend
(:func:`worker_colour`).  The palette is Okabe and Ito's, chosen so that people with the
common colour-vision deficiencies can still tell the colours apart (Okabe & Ito, *Color
Universal Design*, 2002; the same eight colours matplotlib's docs recommend).  Things that
are not workers (runs, kinds, metrics) take their colours from :data:`SERIES`, Paul Tol's
"muted" scheme, also made for colour-blind readers, so nobody reads "the blue line" as
"worker 0" (https://personal.sron.nl/~pault/).  A prediction is always drawn in black.

The sizes are what a reader sees: the book's page is about 900 pixels wide, which is
:data:`TARGET_WIDTH_IN` inches at matplotlib's 100 dots per inch.  A wider figure is shrunk
to fit, its text with it, so a figure's text must be at least :data:`MIN_FONT_PT` points
*after* that shrinking (:func:`shown_size`).  ``tests/test_figures.py`` checks every figure.

Nothing here changes matplotlib's global settings: a learner's own figures stay as they were.
"""

from __future__ import annotations

from matplotlib import ticker
from matplotlib.axis import Axis
from matplotlib.colors import to_rgb, to_rgba

__all__ = ["WORKERS", "SERIES", "KINDS", "PREDICTION", "TARGET_WIDTH_IN", "MIN_FONT_PT",
           "MAX_ASPECT", "worker_colour", "series_colour", "kind_colour", "ink_on",
           "shown_size", "plain_log_axis"]

# Okabe-Ito, in the order workers take them (black is kept for predictions and marks).
WORKERS = ("#0072B2",  # blue
           "#E69F00",  # orange
           "#009E73",  # bluish green
           "#CC79A7",  # reddish purple
           "#D55E00",  # vermillion
           "#56B4E9",  # sky blue
           "#F0E442")  # yellow
# Tol's muted scheme, for series that are not workers (runs, metrics).
SERIES = ("#332288",  # indigo
          "#DDAA33",  # sand (Tol's high-contrast yellow: darker than muted's sand, reads on white)
          "#882255",  # wine
          "#44AA99",  # teal
          "#999933",  # olive
          "#AA4499",  # purple
          "#117733",  # green
          "#88CCEE")  # cyan
KINDS = {"process": SERIES[0], "thread": SERIES[1], "hybrid": SERIES[3]}
PREDICTION = "black"

TARGET_WIDTH_IN = 9.0  # the book's page: ~900 px at 100 dpi
MIN_FONT_PT = 8.0  # the smallest text a reader must read, at that width
MAX_ASPECT = 3.0  # width : height (and height : width) of any figure


def worker_colour(worker: int) -> tuple[float, float, float, float]:
    """The colour of ``worker`` in every figure of the kit (Okabe-Ito; repeats after 7)."""
    return to_rgba(WORKERS[int(worker) % len(WORKERS)])


def series_colour(index: int) -> tuple[float, float, float, float]:
    """The colour of the ``index``-th series that is not a worker (a run, a metric)."""
    return to_rgba(SERIES[int(index) % len(SERIES)])


def kind_colour(kind: str) -> tuple[float, float, float, float]:
    """The colour of a worker kind (process, thread, hybrid) wherever kinds are compared."""
    return to_rgba(KINDS.get(kind, SERIES[4]))


def ink_on(colour) -> str:
    """Black or white, whichever reads better on ``colour`` (by its relative luminance)."""
    red, green, blue = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
                        for c in to_rgb(colour))
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.25 else "white"


def shown_size(points: float, figure_width_in: float) -> float:
    """How big ``points`` of text look once the figure is shrunk to the page's width."""
    return points * min(1.0, TARGET_WIDTH_IN / figure_width_in)


def plain_log_axis(axis: Axis, unit: str = "") -> None:
    """A log axis labelled 1, 3, 10, 30, 100, 300 (no 3×10¹), each followed by ``unit``.

    Why: a learner reads "30 ms" at a glance; "3×10¹" is a puzzle.  Ticks at 1 and 3 of
    every decade keep a short axis (30 to 300) labelled, and a long one not crowded.
    """
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 3.0)))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_minor_formatter(ticker.NullFormatter())
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}{unit}"))
