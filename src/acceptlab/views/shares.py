"""How the connections were split, one bar per run: each worker's share stacked, the prediction beside.

One horizontal bar per run, each worker's share of the connections in that worker's
colour, left to right: an even split is four equal blocks, "one worker takes all" one
long block.  Thin black ticks mark the even split; beside the bar, the matched
strategy's prediction in words and a verdict computed from the run (the criteria of
lesson 09: taking turns asks for a round-robin score of at least 0.9, one worker for
a busiest share of at least one half, a fair die for every count inside its 99 % band;
a race is not judged, its split being predicted only as "roughly even").

:func:`real_server_shares` is lesson 09's figure: the real servers down the side, a
bar per load, and where the verdict is "not as predicted", the reason in a note.
:func:`acceptlab.views.plots.compare_strategies` draws the same bars for the kit's own
strategies.
"""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import analysis
from .style import PREDICTION, ink_on, worker_colour

__all__ = ["Check", "check_prediction", "draw_share_bar", "real_server_shares",
           "SURPRISES", "LIGHT_LOADS"]

LIGHT_LOADS = ("sequential",)  # the loads a strategy's light-load prediction is judged on

# Why a real server can part from the strategy its layout matches, in the kit's words
# (lesson 09 tells each story with its sources).  Keyed by the server's name.
SURPRISES = {
    "nginx": "nginx ≥ 1.21.6 re-adds its listener to its epoll every 16 accepts, so "
             "EPOLLEXCLUSIVE's favourite moves on: blocks of 16 in turn, not one worker",
    "nginx-accept-mutex": "nginx's accept mutex: the holder keeps it while it is idle, so "
                          "one worker takes most while it keeps up",
}


class Check:
    """A prediction in words and its verdict on one run: 'as predicted', 'NOT as predicted',
    or 'not judged' (a race)."""

    def __init__(self, gist: str, verdict: str) -> None:
        self.gist, self.verdict = gist, verdict

    @property
    def surprising(self) -> bool:
        return self.verdict.startswith("NOT")


def check_prediction(strategy: str | None, events: pd.DataFrame, workers: int) -> Check | None:
    """What ``strategy`` predicts for this run's split, and whether the run bears it out."""
    if not strategy:
        return None
    counts = analysis.per_worker(events, workers)["accepts"]
    total = int(counts.sum())
    try:
        guess = analysis.expected_share(strategy, workers, total)
    except ValueError:
        return Check(f"no prediction for {strategy}", "")
    gist = {"binomial": "a fair die", "racy": "a race, roughly even",
            "one-worker": "one worker takes most"}.get(guess.kind, guess.note.split(":")[0])
    if not total:
        return Check(gist, "nothing accepted")
    if guess.kind == "racy":
        return Check(gist, "not judged")
    if guess.kind == "one-worker":
        held = counts.max() / total >= 0.5
    elif strategy in analysis.TAKE_TURNS:
        order = analysis.accepted(events)["worker"].tolist()
        held = analysis.round_robin_score(order, workers) >= 0.9
    else:  # a fair die, or blocks of 16: every count inside the predicted range
        held = bool(counts.between(guess.low, guess.high).all())
    return Check(gist, "as predicted" if held else "NOT as predicted")


def draw_share_bar(ax: Axes, y: float, events: pd.DataFrame, workers: int, *,
                   height: float = 0.7, label_shares: bool = True) -> int:
    """One stacked bar at ``y``: each worker's share, in its colour; even-split ticks over it.

    Returns the number of connections the bar stands for.
    """
    counts = analysis.per_worker(events, workers)["accepts"].to_numpy(dtype=float)
    total = counts.sum()
    left = 0.0
    for worker, count in enumerate(counts):
        share = count / total if total else 0.0
        ax.barh(y, share, height, left=left, color=worker_colour(worker), edgecolor="white",
                linewidth=0.5)
        if label_shares and share >= 0.12:
            ax.text(left + share / 2, y, f"{share:.0%}", ha="center", va="center",
                    fontsize=8.5, color=ink_on(worker_colour(worker)))
        left += share
    for k in range(1, workers):  # the even split
        ax.plot([k / workers] * 2, [y - height / 2 - 0.08, y + height / 2 + 0.08],
                color=PREDICTION, linewidth=1.2, solid_capstyle="butt")
    return int(total)


def _model(run: Any) -> str | None:
    """The strategy whose prediction a real server's run is judged by (lesson 09's rule)."""
    model = run.meta.get("strategy") or None
    if "mutex" in str(run.meta.get("prediction", "")):
        model = "epoll-exclusive"  # the accept mutex predicts what EPOLLEXCLUSIVE does
    return model


def real_server_shares(servers: Mapping[str, Mapping[str, Any]], *,
                       loads: Sequence[str] | None = None,
                       surprises: Mapping[str, str] | None = None,
                       title: str | None = None) -> Figure:
    """Lesson 09 at a glance: each real server's split per load, its prediction, the surprises.

    Args:
        servers: ``{server name: {load name: Run}}`` (lesson 09's ``runs``).
        loads: which loads to draw, in order (default: every load, as first seen).
        surprises: why a server may part from its prediction, by server name
            (default :data:`SURPRISES`); shown in a note where the verdict says so.
        title: the title; the default says what is drawn.
    """
    surprises = SURPRISES if surprises is None else surprises
    loads = list(loads or dict.fromkeys(load for by_load in servers.values() for load in by_load))
    rows = [(name, load, by_load[load]) for name, by_load in servers.items()
            for load in loads if load in by_load]
    words, notes = [], []
    for name, load, run in rows:  # the verdicts first: the notes need their place
        check = check_prediction(_model(run), run.events, run.workers)
        if check is None:
            words.append("")
        elif load not in LIGHT_LOADS:
            words.append("")  # a light-load prediction says nothing about a busy server
        else:
            text = f"{check.gist}: {check.verdict}"
            if check.surprising and name in surprises:
                notes.append(textwrap.fill(f"[{len(notes) + 1}] {surprises[name]}", 100))
                text += f" [{len(notes)}]"
            words.append(text)
    height = 1.7 + 0.36 * len(rows) + 0.25 * len(servers)
    note_lines = sum(note.count("\n") + 1 for note in notes)
    fig = Figure(figsize=(9.0, max(3.5, height + 0.2 * note_lines)), layout="constrained")
    if notes:
        ax, below = fig.subplots(2, 1, height_ratios=[height, 0.2 * note_lines + 0.1])
        below.axis("off")
        below.text(0, 1, "\n".join(notes), va="top", fontsize=9, transform=below.transAxes)
    else:
        ax = fig.subplots()
    positions, labels, y, previous = [], [], 0.0, None
    widest = max([int(run.workers) for *_, run in rows] or [1])
    for (name, load, run), text in zip(rows, words):
        if previous is not None and name != previous:
            y += 0.5  # a gap between servers
        previous = name
        draw_share_bar(ax, y, run.events, run.workers)
        ax.text(1.03, y, text, va="center", fontsize=8.5)
        positions.append(y)
        labels.append(f"{name} · {load}")
        y += 1.0
    ax.set_yticks(positions, labels, fontsize=9)
    ax.set_ylim(y - 0.4, -0.9)
    ax.set_xlim(0, 2.0)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25 %", "50 %", "75 %", "100 %"])
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel("each worker's share of the connections (ticks: an even split)")
    ax.spines["bottom"].set_bounds(0, 1)
    ax.text(1.03, -0.75, f"prediction, judged on the {' and '.join(LIGHT_LOADS)} load",
            fontsize=9, fontweight="bold", va="bottom")
    ax.set_ylabel("server · load")
    ax.set_title(title if title is not None else
                 "Which real server spreads its connections how, against its prediction")
    handles = [Patch(facecolor=worker_colour(w), label=f"worker {w}") for w in range(widest)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(widest, 8), fontsize=9)
    return fig
