"""The wait queue as a film: a recorded run replayed in slow motion, connection by connection.

Static figures show who got the connections; this shows *how*: the accept
queue filling, the workers asleep in the kernel's order, the one (or all) the
kernel wakes for each connection, the winner taking it and going back to wait.

Where each thing comes from
---------------------------
* **Arrival** of a connection: the kernel trace's ``SYN_RECV -> ESTABLISHED``
  of the server's side when the run has a ``trace`` table, else the client's
  ``t_start_ns`` (its connect began), else the winner's wake time.
* **The sleeping workers and their order**: a worker sleeps from its wait's
  ``t_wait_ns`` to its ``t_wake_ns`` (event log).  How the kernel orders them
  depends on the strategy (:data:`ORDER`): a blocking ``accept()`` queues
  waiters FIFO, woken from the head, so a winner goes back to the *tail*
  (order = wait start); ``epoll-exclusive`` wakes the first registration of
  the listener's wait queue, a fixed order (slot order), so its usual winner is
  back at the *head* at once; ``poll``/``epoll`` wake *all* of them (the order
  does not decide who is woken, only who wins the race; ``timeout`` is one of
  them, since CPython polls before it accepts); one epoll shared by threads
  puts new sleepers at the head (LIFO); ``reuseport`` gives
  each worker its own listener and its own accept queue.
* **Who was woken**: the kernel's ``sched_wakeup`` of waiting workers when the
  run has a trace (:func:`acceptlab.linux.tracing.cross_check`'s ``kernel_woken``),
  else the waits that *returned* (accepted or EAGAIN): without a trace, a
  waiter woken and put back to sleep inside the kernel cannot be seen.

:func:`replay` returns a :class:`matplotlib.animation.FuncAnimation` drawn on a
``Figure`` (no pyplot, no backend chosen); :func:`save_film` writes it as one
self-contained HTML file (``to_jshtml``: frames embedded as base64 PNG, the
player's JavaScript inline) or as a GIF (Pillow).  matplotlib's player links
its button icons from a CDN (font-awesome); :func:`offline_html` replaces that
link with a few inline CSS rules, so nothing is loaded from the network.  In a
notebook: ``HTML(offline_html(replay(run)))``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from .plots import worker_colour

__all__ = ["ORDER", "Frame", "script", "replay", "offline_html", "save_film"]

# How the kernel orders the sleeping workers of each strategy, and what the film says about it:
# "tail" FIFO (a winner goes back to the tail), "all" (everyone is woken; shown longest waiting
# first), "lifo" (a winner goes back to the head), "fixed" (registration order), "own" (a queue
# per worker).
ORDER = {
    "blocking": ("tail", "accept(): the kernel wakes ONE waiter, the head; the winner goes back "
                         "to the tail"),
    "locked": ("tail", "a lock around accept(): one waiter at a time; the winner goes back to "
                       "the tail"),
    "timeout": ("all", "accept() with a timeout: CPython polls first, so the kernel wakes ALL "
                       "waiters; one wins the accept()"),
    "epoll-exclusive": ("fixed", "EPOLLEXCLUSIVE: the kernel wakes the first registration that "
                                 "waits; the winner is back at the head"),
    "poll": ("all", "poll(): the kernel wakes ALL waiters; one wins the accept()"),
    "epoll": ("all", "epoll: the kernel wakes ALL waiters; one wins the accept()"),
    "shared-epoll": ("lifo", "one shared epoll: new sleepers go in at the head, so the most "
                             "recent waiter is woken"),
    "reuseport": ("own", "SO_REUSEPORT: each worker has its own listener and its own queue; "
                         "the kernel picks the listener by hashing the connection"),
}
PHASES = ("arrives", "wakes", "taken", "back")


@dataclass(frozen=True)
class Frame:
    """What one frame of the film shows."""

    connection: int  # 0-based, in accept order
    phase: str  # one of PHASES
    t_ns: int
    sleeping: tuple[int, ...]  # worker slots asleep, in the kernel's queue order (head first)
    woken: tuple[int, ...]  # workers flashing (phase "wakes")
    winner: int
    queued: tuple[int, ...]  # connections waiting in each listener's accept queue
    counts: tuple[int, ...]  # connections accepted so far, per worker


def _arrivals(run: Any, accepted: pd.DataFrame) -> np.ndarray:
    """Each accepted connection's arrival time: kernel trace, else client, else its wake."""
    times = accepted["t_wake_ns"].astype("int64").to_numpy().copy()
    ports = accepted["peer_port"].astype("int64").to_numpy()
    client = run.client.dropna(subset=["local_port"]) if len(run.client) else run.client
    if len(client):
        started = dict(zip(client["local_port"].astype("int64"),
                           client["t_start_ns"].astype("int64")))
        times = np.array([started.get(p, t) for p, t in zip(ports, times)], dtype=np.int64)
    trace = getattr(run, "trace", None)
    if trace is not None and len(trace):
        port = int(run.meta["port"])
        states = trace[(trace["event"] == "inet_sock_set_state") & (trace["sport"] == port)
                       & (trace["state"] == "ESTABLISHED")]
        arrived = dict(zip(states["dport"].astype("int64"), states["t_ns"].astype("int64")))
        times = np.array([arrived.get(p, t) for p, t in zip(ports, times)], dtype=np.int64)
    return np.minimum(times, accepted["t_accept_ns"].astype("int64").to_numpy())


def _woken(run: Any, accepted: pd.DataFrame, arrival: np.ndarray) -> list[tuple[int, ...]]:
    """Who was woken for each connection: the kernel's account if traced, else the returns."""
    trace = getattr(run, "trace", None)
    if trace is not None and len(trace):
        from ..linux.tracing import cross_check

        cross = cross_check(run).set_index("t_accept_ns")
        return [tuple(int(w) for w in str(cross.loc[t, "kernel_woken"]).split())
                if t in cross.index else (winner,)
                for t, winner in zip(accepted["t_accept_ns"].astype("int64"), accepted["worker"])]
    events = run.events
    returned = events[events["outcome"].isin(["accepted", "eagain"])]
    order = np.argsort(arrival, kind="stable")
    ends = np.append(arrival[order][1:], np.iinfo(np.int64).max)
    span = dict(zip(order, ends))
    result = []
    for index, start in enumerate(arrival):
        inside = returned[(returned["t_wake_ns"] >= start) & (returned["t_wake_ns"] < span[index])]
        slots = inside.sort_values("t_wake_ns")["worker"].astype(int).tolist()
        winner = int(accepted["worker"].iloc[index])
        result.append(tuple(dict.fromkeys(slots or [winner])))
    return result


def script(run: Any, *, max_connections: int = 24) -> list[Frame]:
    """The film's frames, as data: four per connection (arrives, wakes, taken, back).

    Why separate from drawing: what the film claims (who sleeps in which
    order, who is woken, who wins) can be checked against the run without
    looking at pixels.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run` (live or loaded from ``data/``).
        max_connections: how many connections, from the first accepted, to show.
    """
    events = run.events
    workers = int(run.meta.get("workers") or (int(events["worker"].max()) + 1))
    rule = ORDER.get(str(run.meta.get("strategy")), ("tail", ""))[0]
    accepted = events[events["outcome"] == "accepted"].sort_values("t_accept_ns", kind="stable")
    accepted = accepted.reset_index(drop=True)
    if not len(accepted):
        raise ValueError("this run accepted no connection: there is nothing to replay")
    arrival = _arrivals(run, accepted)
    accept_times = accepted["t_accept_ns"].astype("int64").to_numpy()
    winners = accepted["worker"].astype(int).to_numpy()
    woken = _woken(run, accepted, arrival)
    start = events["t_wait_ns"].astype("int64").to_numpy()
    end = events["t_wake_ns"].astype("float64").fillna(np.inf).to_numpy()
    slots = events["worker"].astype(int).to_numpy()

    def sleeping(t_ns: int) -> tuple[int, ...]:
        asleep = (start <= t_ns) & (t_ns < end)
        if rule in ("tail", "all"):  # FIFO: the one waiting longest is at the head
            ranked = sorted(zip(start[asleep], slots[asleep]))
        elif rule == "lifo":  # the most recent sleeper at the head
            ranked = sorted(zip(-start[asleep], slots[asleep]))
        else:  # fixed registration order (epoll-exclusive) or one queue each (reuseport)
            ranked = sorted((slot, slot) for slot in slots[asleep])
        return tuple(dict.fromkeys(int(slot) for _, slot in ranked))

    def queued(t_ns: int) -> tuple[int, ...]:
        waiting = (arrival <= t_ns) & (t_ns < accept_times)
        if rule == "own":  # each listener has its own queue; its worker takes from it
            return tuple(int(((winners == w) & waiting).sum()) for w in range(workers))
        return (int(waiting.sum()),)

    frames = []
    counts = [0] * workers
    shown = min(max_connections, len(accepted))
    for index in range(shown):
        winner = int(winners[index])
        t_arrive, t_accept = int(arrival[index]), int(accept_times[index])
        before = sleeping(t_arrive - 1)
        frames.append(Frame(index, "arrives", t_arrive, before, (), winner, queued(t_arrive),
                            tuple(counts)))
        frames.append(Frame(index, "wakes", t_arrive, before, woken[index], winner,
                            queued(t_arrive), tuple(counts)))
        counts[winner] += 1
        frames.append(Frame(index, "taken", t_accept, sleeping(t_accept), (), winner,
                            queued(t_accept), tuple(counts)))
        # Back: the winner's next wait, or the moment before the next connection, whichever first.
        later = start[(slots == winner) & (start > t_accept)]
        following = arrival[index + 1] - 1 if index + 1 < len(arrival) else t_accept + 10**9
        t_back = int(min(later.min() if len(later) else following, following))
        frames.append(Frame(index, "back", t_back, sleeping(t_back), (), winner, queued(t_back),
                            tuple(counts)))
    return frames


def replay(
    run: Any,
    *,
    max_connections: int = 24,
    interval: int = 700,
    figsize: tuple[float, float] = (8.0, 4.6),
    dpi: int = 72,
) -> FuncAnimation:
    """Animate a run: accept queue(s), the sleeping workers in order, who is woken, who wins.

    Why slow motion of a *recorded* run: the kernel's choices take microseconds;
    replaying the recorded times lets a learner watch the order the notebooks
    describe (blocking: the winner goes to the tail; EPOLLEXCLUSIVE: it is back
    at the head; poll/epoll: all wake, one wins).  Works on a run loaded from
    ``data/``, so no root and no live server are needed.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run`; with a ``trace`` table the
            woken workers are the kernel's account.
        max_connections: how many connections (the first accepted) to show.
        interval: milliseconds per frame (four frames per connection).
        figsize: the figure's size in inches.
        dpi: resolution of each frame (the HTML and GIF grow with its square).
    """
    frames = script(run, max_connections=max_connections)
    workers = len(frames[0].counts)
    strategy = str(run.meta.get("strategy"))
    rule, caption = ORDER.get(strategy, ("tail", strategy))
    traced = getattr(run, "trace", None) is not None and len(run.trace) > 0
    fig = Figure(figsize=figsize, dpi=dpi)  # a fixed layout: a layout engine per frame is slow
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.07, hspace=0.15)
    scene, bars = fig.subplots(2, 1, height_ratios=[2.2, 1])
    maximum = max(max(frames[-1].counts), 1)
    heights = bars.bar(range(workers), frames[0].counts,
                       color=[worker_colour(w) for w in range(workers)])
    bars.set_ylim(0, maximum * 1.15)
    bars.set_xticks(range(workers), [f"w{w}" for w in range(workers)])
    bars.set_ylabel("accepted", fontsize=8)
    bars.tick_params(labelsize=8)

    def draw(number: int) -> None:
        frame = frames[number]
        scene.clear()
        scene.set_xlim(0, 10)
        scene.set_ylim(0, 10)
        scene.axis("off")
        scene.set_title(f"{run.meta.get('label') or strategy}: connection {frame.connection + 1}"
                        f"/{len(frames) // 4} {frame.phase}   "
                        f"(woken: {'kernel trace' if traced else 'event log returns'})",
                        fontsize=10, loc="left")
        scene.text(0, 0.2, caption, fontsize=8, color="dimgrey")
        if rule == "own":
            _draw_own_queues(scene, frame, workers)
        else:
            _draw_shared_queue(scene, frame, workers, rule)
        for bar, count in zip(heights, frame.counts):
            bar.set_height(count)

    return FuncAnimation(fig, draw, frames=len(frames), interval=interval, repeat=False)


def _worker_box(ax: Any, x: float, y: float, slot: int, state: str) -> None:
    """One worker: its colour, and a thick outline when woken (yellow) or winning (black)."""
    edge = {"woken": "gold", "winner": "black"}.get(state, "white")
    ax.add_patch(FancyBboxPatch((x, y), 0.9, 1.2, boxstyle="round,pad=0.05",
                                facecolor=worker_colour(slot), edgecolor=edge,
                                linewidth=4 if state != "asleep" else 1,
                                alpha=1.0 if state != "asleep" else 0.55))
    ax.text(x + 0.45, y + 0.6, f"w{slot}", ha="center", va="center", color="white",
            fontsize=9, fontweight="bold")


def _connection_dots(ax: Any, x: float, y: float, count: int) -> None:
    """Queued connections as small squares (a number past 12)."""
    for k in range(min(count, 12)):
        ax.add_patch(Rectangle((x + 0.3 * k, y), 0.22, 0.5, facecolor="dimgrey"))
    if count > 12:
        ax.text(x + 3.7, y + 0.25, f"+{count - 12}", fontsize=8, va="center")


def _state(frame: Frame, slot: int) -> str:
    if frame.phase == "wakes" and slot in frame.woken:
        return "winner" if slot == frame.winner else "woken"
    return "asleep"


def _draw_shared_queue(ax: Any, frame: Frame, workers: int, rule: str) -> None:
    """One listener: its accept queue, then the wait queue (head first), then who is serving."""
    ax.text(0, 8.9, "accept queue", fontsize=9)
    _connection_dots(ax, 2.2, 8.7, frame.queued[0])
    label = {"all": "asleep\n(longest waiting first)",
             "fixed": "asleep in the kernel\n(registration order)"}.get(
                 rule, "asleep in the kernel\n(head first)")
    ax.text(0, 6.6, label, fontsize=9, va="center")
    for position, slot in enumerate(frame.sleeping):
        _worker_box(ax, 2.2 + 1.1 * position, 6.0, slot, _state(frame, slot))
    ax.text(0, 3.3, "serving", fontsize=9, va="center")
    awake = [slot for slot in range(workers) if slot not in frame.sleeping]
    for position, slot in enumerate(awake):
        state = "winner" if slot == frame.winner and frame.phase == "taken" else "serving"
        _worker_box(ax, 2.2 + 1.1 * position, 2.7, slot, state)
    if frame.phase == "arrives":
        ax.text(6.5, 8.9, "◀ a connection arrives", fontsize=9, color="firebrick")
    elif frame.phase == "taken":
        ax.text(6.5, 3.3, f"w{frame.winner} accepted it", fontsize=9, color="firebrick")
    elif frame.phase == "back":
        ax.text(6.5, 6.6, f"w{frame.winner} waits again", fontsize=9, color="firebrick")


def _draw_own_queues(ax: Any, frame: Frame, workers: int) -> None:
    """reuseport: one row per worker, its own accept queue and whether it sleeps."""
    height = 8.0 / max(workers, 1)
    for slot in range(workers):
        y = 9.0 - height * (slot + 1)
        ax.text(0, y + 0.5, f"listener {slot}", fontsize=8, va="center")
        _connection_dots(ax, 1.8, y + 0.3, frame.queued[slot])
        state = _state(frame, slot) if slot in frame.sleeping else "serving"
        if slot == frame.winner and frame.phase == "taken":
            state = "winner"
        _worker_box(ax, 6.0, y, slot, state)
        ax.text(7.1, y + 0.5, "asleep" if slot in frame.sleeping else "serving", fontsize=8,
                va="center")


# matplotlib's jshtml player draws its buttons with font-awesome, linked from a CDN; these
# rules draw the same buttons with plain Unicode symbols, so the page needs no network.
_ICONS = """<style>
.animation .fa { font-style: normal; display: inline-block; min-width: 1em; }
.animation .fa-minus::before { content: "\\2212"; }
.animation .fa-plus::before { content: "+"; }
.animation .fa-fast-backward::before { content: "\\23EE\\FE0E"; }
.animation .fa-step-backward::before { content: "\\25C1"; }
.animation .fa-play::before { content: "\\25B6\\FE0E"; }
.animation .fa-flip-horizontal { transform: scaleX(-1); }
.animation .fa-pause::before { content: "\\23F8\\FE0E"; }
.animation .fa-step-forward::before { content: "\\25B7"; }
.animation .fa-fast-forward::before { content: "\\23ED\\FE0E"; }
</style>"""
_CDN_LINK = re.compile(r"<link[^>]*font-awesome[^>]*>", re.S)


def offline_html(animation: FuncAnimation, *, fps: float | None = None) -> str:
    """The film as an HTML fragment that plays with no network: ``to_jshtml`` without its CDN link.

    Why: a notebook page, the book and a file opened from disk must play the
    film offline (a classroom may have no network; the book's test forbids
    any request).  Put it in a notebook with ``IPython.display.HTML(...)``.

    Args:
        animation: what :func:`replay` returned.
        fps: frames per second (default: from the animation's interval).
    """
    fps = fps or 1000.0 / animation.event_source.interval
    html, count = _CDN_LINK.subn(lambda _: _ICONS,
                                 animation.to_jshtml(fps=fps, default_mode="once"))
    if count != 1:  # matplotlib changed its template: fail loudly rather than ship a CDN link
        raise RuntimeError("matplotlib's jshtml no longer has the one font-awesome link "
                           "acceptlab.views.film replaces; update offline_html")
    return html


def save_film(animation: FuncAnimation, path: str | os.PathLike, *,
              fps: float | None = None) -> Path:
    """Write the film as one offline HTML page (``.html``) or a GIF (``.gif``); return the path.

    Why these two: the HTML (matplotlib's ``to_jshtml``) embeds every frame and
    the player's script, so it plays from a file, in the book, with no network;
    a GIF plays anywhere an image does (slides, an issue comment).

    Args:
        animation: what :func:`replay` returned.
        path: ``*.html``/``*.htm`` or ``*.gif``.
        fps: frames per second (default: from the animation's interval).
    """
    path = Path(path)
    fps = fps or 1000.0 / animation.event_source.interval
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        body = offline_html(animation, fps=fps)
        path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                        "<title>acceptlab replay</title></head>\n<body>\n" + body
                        + "\n</body></html>\n")
    elif suffix == ".gif":
        animation.save(path, writer=PillowWriter(fps=fps))
    else:
        raise ValueError(f"a film is written as .html or .gif, not {path.suffix or 'no suffix'!r}")
    return path
