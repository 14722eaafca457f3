"""The wait queue as a film: a recorded run replayed in slow motion, connection by connection.

Static figures show who got the connections; this shows *how*: a connection
arriving in the accept queue, the workers asleep in the kernel's queue (head and
tail marked), the one (or all) the kernel wakes, the winner taking it and going
back to wait.  Three frames per connection, each with a caption in plain words::

    film = replay(run, max_connections=8)      # a Film: frames and captions, drawn once
    HTML(offline_html(film))                   # a notebook: plays offline, first frame shown
    save_film(film, "film.html")               # or "film.gif", for slides
    still_strip(run)                           # 6 frames side by side: a Figure for print

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
* **The captions** are computed from each frame (who is where in the queue),
  not from what the strategy should do, so a film of an odd run says so.

Behind the first screen: :mod:`acceptlab.views.film_scene` draws one frame (the same
picture in the film and in the still strip) and :mod:`acceptlab.views.film_player` is the
HTML player, whose first frame is in the page itself, so it shows before any click in
JupyterLab, in the book and in a file opened from disk.
"""

from __future__ import annotations

import base64
import html as html_text
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .film_player import player_html
from .film_scene import Look, draw_scene
from .style import MIN_FONT_PT, worker_colour

__all__ = ["ORDER", "PHASES", "Frame", "Film", "script", "caption", "replay", "still_strip",
           "offline_html", "save_film"]

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
# What happens to one connection, one frame each: it arrives and the kernel wakes a sleeper;
# a worker takes it; the worker waits again.
PHASES = ("wakes", "taken", "back")


@dataclass(frozen=True)
class Frame:
    """What one frame of the film shows."""

    connection: int  # 0-based, in accept order
    phase: str  # one of PHASES
    t_ns: int
    sleeping: tuple[int, ...]  # worker slots asleep, in the kernel's queue order (head first)
    woken: tuple[int, ...]  # workers the kernel woke for this connection (phase "wakes")
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
    """The film's frames, as data: three per connection (wakes, taken, back).

    Why separate from drawing: what the film claims (who sleeps in which
    order, who is woken, who wins) can be checked against the run without
    looking at pixels.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run` (live or loaded from ``data/``).
        max_connections: how many connections, from the first accepted, to show.
    """
    events = run.events
    workers = int(run.meta.get("workers") or (int(events["worker"].max()) + 1))
    rule = _rule(run)
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
        frames.append(Frame(index, "wakes", t_arrive, sleeping(t_arrive - 1), woken[index],
                            winner, queued(t_arrive), tuple(counts)))
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


def _rule(run: Any) -> str:
    return ORDER.get(str(run.meta.get("strategy")), ("tail", ""))[0]


# --------------------------------------------------------------------------- captions


def _names(slots: Sequence[int]) -> str:
    """'worker 1', 'workers 0 and 2', 'workers 0, 1 and 3'."""
    numbers = [str(slot) for slot in slots]
    if len(numbers) == 1:
        return f"worker {numbers[0]}"
    return f"workers {', '.join(numbers[:-1])} and {numbers[-1]}"


def caption(frame: Frame, rule: str) -> str:
    """What ``frame`` shows, in one or two plain sentences, computed from the frame itself.

    The words follow what the data say (who was at the head, where the winner
    went back), so a run that breaks its strategy's rule is captioned as it
    happened, not as the textbook says.
    """
    number, winner = frame.connection + 1, frame.winner
    if frame.phase == "wakes":
        if rule == "own":
            return (f"Connection {number} arrives in worker {winner}'s own accept queue (the "
                    f"kernel hashed it to listener {winner}); the kernel wakes worker {winner}.")
        if not frame.sleeping:
            return (f"Connection {number} arrives and waits in the accept queue: no worker is "
                    f"asleep, all are serving.")
        woken = sorted(slot for slot in frame.woken if slot in frame.sleeping) \
            or sorted(frame.woken)
        if len(woken) > 1:
            return (f"Connection {number} arrives; the kernel wakes {_names(woken)}: "
                    f"they race for it.")
        who = woken[0] if woken else winner
        if who == frame.sleeping[0]:
            why = {"tail": "the longest sleeper, at the head of the queue",
                   "fixed": "the first registered, at the head of the queue",
                   "lifo": "the newest sleeper, at the head of the queue",
                   "all": "the only sleeper it woke"}.get(rule, "at the head of the queue")
            return f"Connection {number} arrives; the kernel wakes worker {who}, {why}."
        place = (frame.sleeping.index(who) + 1) if who in frame.sleeping else None
        where = f"number {place} in the queue" if place else "not asleep in the queue"
        return f"Connection {number} arrives; the kernel wakes worker {who} ({where})."
    if frame.phase == "taken":
        lost = sorted(slot for slot in frame.woken if slot != winner)
        text = f"Worker {winner} accepts connection {number} and serves it."
        if lost:
            text += f" {_names(lost).capitalize()} found nothing to accept."
        return text
    # back
    if rule == "own":
        return f"Worker {winner} waits again on its own listener."
    if rule == "all" and winner in frame.sleeping:
        return (f"Worker {winner} waits again; the next connection wakes every sleeper, "
                f"whatever their order.")
    if winner not in frame.sleeping:
        return f"Worker {winner} is still serving connection {number}."
    place = frame.sleeping.index(winner)
    if len(frame.sleeping) == 1:
        return f"Worker {winner} waits again, alone in the queue."
    if place == len(frame.sleeping) - 1:
        return f"Worker {winner} waits again: it joins the tail of the queue."
    if place == 0:
        return f"Worker {winner} waits again, back at the head of the queue: it is next."
    return f"Worker {winner} waits again, number {place + 1} in the queue."


# --------------------------------------------------------------------------- the film


@dataclass
class Film:
    """A run replayed: its frames as data, their captions, and the figure that draws them.

    Each frame is drawn and encoded once (:meth:`pngs`), then reused by
    :func:`offline_html`, :func:`save_film` and a notebook's display
    (``_repr_html_``: a ``Film`` as a cell's last expression plays itself).
    """

    frames: list[Frame]
    captions: list[str]
    title: str
    figure: Figure
    draw: Callable[[int], None]
    interval: int = 1200  # milliseconds per frame
    _pngs: list[bytes] | None = field(default=None, repr=False)

    def pngs(self) -> list[bytes]:
        """Every frame as PNG bytes (drawn on the first call, kept after)."""
        if self._pngs is None:
            canvas = FigureCanvasAgg(self.figure)
            pngs = []
            for number in range(len(self.frames)):
                self.draw(number)
                canvas.draw()
                image = Image.frombuffer("RGBA", canvas.get_width_height(),
                                         canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
                # A frame has few colours: a 64-colour palette PNG is a quarter the size.
                small = image.convert("RGB").quantize(64, method=Image.Quantize.FASTOCTREE)
                buffer = io.BytesIO()
                small.save(buffer, format="PNG", compress_level=6)
                pngs.append(buffer.getvalue())
            self._pngs = pngs
        return self._pngs

    def _repr_html_(self) -> str:
        return offline_html(self)


def replay(
    run: Any,
    *,
    max_connections: int = 8,
    interval: int = 1200,
    figsize: tuple[float, float] = (9.0, 5.0),
    dpi: int = 100,
) -> Film:
    """Replay a run: the accept queue, the sleepers in the kernel's order, who is woken, who wins.

    Why slow motion of a *recorded* run: the kernel's choices take microseconds;
    replaying the recorded times lets a learner watch the order the notebooks
    describe (blocking: the winner goes to the tail; EPOLLEXCLUSIVE: it is back
    at the head; poll/epoll: all wake, one wins).  Works on a run loaded from
    ``data/``, so no root and no live server are needed.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run`; with a ``trace`` table the
            woken workers are the kernel's account.
        max_connections: how many connections (the first accepted) to show; three
            frames each.
        interval: milliseconds per frame when playing.
        figsize: a frame's size in inches; at ``dpi`` 100 the default is 900 px wide,
            the book's page.
        dpi: pixels per inch of each frame (the page grows with its square).
    """
    frames = script(run, max_connections=max_connections)
    workers = len(frames[0].counts)
    strategy = str(run.meta.get("strategy"))
    rule = _rule(run)
    traced = getattr(run, "trace", None) is not None and len(run.trace) > 0
    kind = run.meta.get("kind")
    title = f"{strategy}" + (f", {workers} {kind} workers" if kind else f", {workers} workers")
    captions = [caption(frame, rule) for frame in frames]
    look = Look(text=10, box=13)
    fig = Figure(figsize=figsize, dpi=dpi)  # a fixed layout: a layout engine per frame is slow
    scene = fig.add_axes((0.01, 0.02, 0.70, 0.72))
    bars = fig.add_axes((0.78, 0.2, 0.20, 0.45))
    heights = bars.bar(range(workers), frames[0].counts,
                       color=[worker_colour(w) for w in range(workers)])
    bars.set_ylim(0, max(max(frames[-1].counts), 1) * 1.15)
    bars.set_xticks(range(workers), [str(w) for w in range(workers)])
    bars.yaxis.get_major_locator().set_params(integer=True)
    bars.set_xlabel("worker", fontsize=look.text)
    bars.set_ylabel("connections", fontsize=look.text)
    bars.set_title("accepted so far", fontsize=look.text)
    bars.tick_params(labelsize=look.text)
    bars.spines[["top", "right"]].set_visible(False)
    header = fig.text(0.01, 0.975, "", fontsize=look.text, color="0.3", va="top")
    line = fig.text(0.01, 0.925, "", fontsize=12.5, fontweight="bold", va="top",
                    linespacing=1.3)
    source = "who was woken: the kernel's trace" if traced else \
        "who was woken: the waits that returned (no kernel trace)"
    fig.text(0.99, 0.015, source, fontsize=MIN_FONT_PT + 1, color="0.3", ha="right")

    def draw(number: int) -> None:
        frame = frames[number]
        header.set_text(f"{title} · connection {frame.connection + 1} of "
                        f"{len(frames) // len(PHASES)} · step {number + 1} of {len(frames)}")
        line.set_text("\n".join(textwrap.wrap(captions[number], 80)))
        draw_scene(scene, frame, workers, rule, look)
        for bar, count in zip(heights, frame.counts):
            bar.set_height(count)

    draw(0)
    return Film(frames, captions, title, fig, draw, interval)


def still_strip(
    run: Any,
    *,
    steps: Sequence[int] | None = None,
    columns: int = 2,
    max_connections: int = 2,
) -> Figure:
    """A few frames of the film side by side, each with its caption: for the book, a handout, slides.

    By default the first two connections, three frames each: a connection
    arrives and the kernel wakes someone; a worker takes it; it waits again
    (at the tail for ``blocking``, at the head for ``epoll-exclusive``).

    Args:
        run: as for :func:`replay`.
        steps: which frames (0-based, as in the film's "step" counter) to show,
            4 to 6 of them reads best; default all frames of the first
            ``max_connections`` connections.
        columns: panels per row.
        max_connections: how many connections the default ``steps`` cover.
    """
    frames = script(run, max_connections=max(max_connections,
                                             (max(steps) // len(PHASES) + 1) if steps else 1))
    steps = list(steps) if steps is not None else list(range(len(frames)))
    if not steps or any(not 0 <= step < len(frames) for step in steps):
        raise ValueError(f"steps must be frame numbers from 0 to {len(frames) - 1}")
    rule = _rule(run)
    workers = len(frames[0].counts)
    rows = -(-len(steps) // columns)
    look = Look(text=MIN_FONT_PT + 0.5, box=11)
    fig = Figure(figsize=(9.0, 2.7 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, step in zip(axes, steps):
        draw_scene(ax, frames[step], workers, rule, look)
        words = textwrap.fill(caption(frames[step], rule), 52)
        ax.set_title(f"{step + 1}. {words}", fontsize=look.text + 0.5, loc="left")
    for ax in axes[len(steps):]:
        ax.set_visible(False)
    strategy = str(run.meta.get("strategy"))
    fig.suptitle(f"{strategy}: what the kernel does with each connection, step by step",
                 fontsize=12)
    return fig


def offline_html(film: Film, *, fps: float | None = None) -> str:
    """The film as an HTML fragment that shows its first frame at once and plays with no network.

    Why a player of its own: the picture is in the page from the start
    (JupyterLab's default windowing, the book and a file opened from disk all
    show it before any click), its buttons are inline SVG (no icon font), and
    one click on play plays.  Put it in a notebook with
    ``IPython.display.HTML(...)``, or make the film the cell's last expression.

    Args:
        film: what :func:`replay` returned.
        fps: frames per second (default: from the film's interval).
    """
    pngs = film.pngs()
    width, height = Image.open(io.BytesIO(pngs[0])).size
    sources = ["data:image/png;base64," + base64.b64encode(png).decode("ascii") for png in pngs]
    return player_html(sources, film.captions, width=width, height=height,
                       interval=int(1000 / fps) if fps else film.interval)


def save_film(film: Film, path: str | os.PathLike, *, fps: float | None = None) -> Path:
    """Write the film as one offline HTML page (``.html``) or a GIF (``.gif``); return the path.

    Why these two: the HTML embeds every frame and the player's script, so it
    plays from a file, in the book, with no network; a GIF plays anywhere an
    image does (slides, an issue comment).

    Args:
        film: what :func:`replay` returned.
        path: ``*.html``/``*.htm`` or ``*.gif``.
        fps: frames per second (default: from the film's interval).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        body = offline_html(film, fps=fps)
        path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                        f"<title>acceptlab replay: {html_text.escape(film.title)}</title>"
                        "</head>\n<body>\n" + body + "\n</body></html>\n")
    elif suffix == ".gif":
        images = [Image.open(io.BytesIO(png)).convert("RGB") for png in film.pngs()]
        duration = int(1000 / fps) if fps else film.interval
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration,
                       loop=0)
    else:
        raise ValueError(f"a film is written as .html or .gif, not {path.suffix or 'no suffix'!r}")
    return path
