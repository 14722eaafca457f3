"""How one frame of the film is drawn: the accept queue(s), the sleepers as a queue, who serves.

:mod:`acceptlab.views.film` decides what a frame shows (a :class:`~acceptlab.views.film.Frame`);
this module only draws it, into any axes, so the film's frames and the still strip's panels
are the same picture at two sizes (:class:`Look`).  The sleepers are a lane of worker boxes,
head on the left, tail on the right; a worker keeps its colour (:mod:`acceptlab.views.style`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch, Rectangle

from .style import PREDICTION, ink_on, worker_colour

__all__ = ["Look", "draw_scene"]


@dataclass(frozen=True)
class Look:
    """Sizes of a scene, so a frame of the film and a panel of the strip both read at 8 pt+."""

    text: float  # labels, in points
    box: float  # a worker's number inside its box


def _queue_words(rule: str) -> tuple[str, str, str]:
    """(label of the wait queue, label of its head, label of its tail), per strategy."""
    return {
        "tail": ("asleep in accept(),\nin the kernel's queue", "head:\nwoken next",
                 "tail:\nnew sleepers join"),
        "fixed": ("asleep in epoll_wait(),\nin registration order", "head:\nwoken next",
                  "tail"),
        "lifo": ("asleep in one shared\nepoll (newest first)", "head: newest,\nwoken next",
                 "tail:\noldest"),
        "all": ("asleep in poll()/epoll\n(all are woken)", "longest\nasleep",
                "newest\nasleep"),
    }.get(rule, ("asleep", "head", "tail"))


# The word over a highlighted worker: woken by the kernel (dashed); woken and winning the race
# of a herd (solid); woken alone (solid); accepting the connection.
_MARKS = {"woken": "woken", "winner": "wins", "alone": "woken", "accepts": "accepts"}


def _worker_box(ax: Axes, x: float, y: float, slot: int, state: str, look: Look,
                width: float = 1.0, height: float = 1.3) -> None:
    """One worker: a box in its colour; woken ones outlined dashed, the winner outlined solid."""
    colour = worker_colour(slot)
    line = {"woken": (3.0, "--"), "winner": (3.5, "-"), "alone": (3.5, "-"),
            "accepts": (3.5, "-")}.get(state, (0.8, "-"))
    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.04",
                                facecolor=colour, edgecolor=PREDICTION if state != "asleep"
                                else "white", linewidth=line[0], linestyle=line[1]))
    ax.text(x + width / 2, y + height / 2, str(slot), ha="center", va="center",
            color=ink_on(colour), fontsize=look.box, fontweight="bold")
    if state in _MARKS:
        ax.text(x + width / 2, y + height + 0.15, _MARKS[state], ha="center", va="bottom",
                fontsize=look.text, fontweight="bold")


def _connections(ax: Axes, x: float, y: float, count: int, look: Look, limit: int = 8) -> None:
    """Queued connections as small dark squares (a number past ``limit``)."""
    for k in range(min(count, limit)):
        ax.add_patch(Rectangle((x + 0.38 * k, y), 0.28, 0.7, facecolor="0.25"))
    if count > limit:
        ax.text(x + 0.38 * limit + 0.1, y + 0.35, f"+{count - limit}", fontsize=look.text,
                va="center")
    if count == 0:
        ax.text(x, y + 0.35, "empty", fontsize=look.text, va="center", color="0.35")


def _state(frame: Any, slot: int) -> str:
    """How a sleeping worker is drawn: asleep, woken, woken alone, or woken and winning."""
    if frame.phase == "wakes" and slot in frame.woken:
        if slot != frame.winner:
            return "woken"
        return "winner" if len(frame.woken) > 1 else "alone"
    return "asleep"


def draw_scene(ax: Axes, frame: Any, workers: int, rule: str, look: Look) -> None:
    """The accept queue(s), the sleepers in the kernel's order, and who is serving."""
    for artist in [*ax.patches, *ax.texts]:  # cheaper than ax.clear(), which rebuilds the axes
        artist.remove()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    if rule == "own":
        _draw_own_queues(ax, frame, workers, look)
    else:
        _draw_shared_queue(ax, frame, workers, rule, look)


def _draw_shared_queue(ax: Axes, frame: Any, workers: int, rule: str, look: Look) -> None:
    """One listener: its accept queue; the wait queue as a lane, head left, tail right; serving."""
    left = 3.3
    ax.text(0, 9.1, "accept queue\n(connections)", fontsize=look.text, va="center")
    _connections(ax, left, 8.75, frame.queued[0], look)
    label, head, tail = _queue_words(rule)
    ax.text(0, 5.6, label, fontsize=look.text, va="center")
    step = min(1.3, (9.9 - left) / max(workers, 1))
    width = step * 0.8
    lane = max(len(frame.sleeping), 1) * step + 0.1
    ax.add_patch(FancyBboxPatch((left - 0.1, 4.7), lane, 1.8, boxstyle="round,pad=0.05",
                                facecolor="0.93", edgecolor="0.55", linewidth=1))
    for position, slot in enumerate(frame.sleeping):
        _worker_box(ax, left + step * position, 4.95, slot, _state(frame, slot), look,
                    width=width)
    if frame.sleeping:
        ax.text(left + width / 2, 4.45, head, ha="center", va="top", fontsize=look.text)
        if len(frame.sleeping) > 1:
            last = left + step * (len(frame.sleeping) - 1) + width / 2
            ax.text(last, 4.45, tail, ha="center", va="top", fontsize=look.text)
    else:
        ax.text(left + 0.1, 5.6, "nobody", fontsize=look.text, va="center", color="0.35")
    ax.text(0, 1.4, "serving a\nconnection", fontsize=look.text, va="center")
    awake = [slot for slot in range(workers) if slot not in frame.sleeping]
    for position, slot in enumerate(awake):
        state = "accepts" if slot == frame.winner and frame.phase == "taken" else "serving"
        _worker_box(ax, left + step * position, 0.75, slot, state, look, width=width)
    if not awake:
        ax.text(left + 0.1, 1.4, "nobody", fontsize=look.text, va="center", color="0.35")


def _draw_own_queues(ax: Axes, frame: Any, workers: int, look: Look) -> None:
    """reuseport: one row per worker, its own listener's accept queue and whether it sleeps."""
    height = 8.4 / max(workers, 1)
    ax.text(3.0, 9.6, "its own accept queue", fontsize=look.text, va="center")
    ax.text(6.7, 9.6, "asleep", fontsize=look.text, va="center", ha="center")
    ax.text(8.7, 9.6, "serving", fontsize=look.text, va="center", ha="center")
    for slot in range(workers):
        y = 9.0 - height * (slot + 1)
        box = min(1.2, height * 0.8)
        ax.text(0, y + box / 2, f"listener {slot}", fontsize=look.text, va="center")
        _connections(ax, 3.0, y + box / 2 - 0.35, frame.queued[slot], look, limit=6)
        asleep = slot in frame.sleeping
        state = _state(frame, slot) if asleep else "serving"
        if slot == frame.winner and frame.phase == "taken":
            state = "accepts"
        _worker_box(ax, 6.2 if asleep else 8.2, y, slot, state, look, width=1.0, height=box)
