"""What the clients of one load share: when to stop, the progress count, and each process's part.

* :class:`StopFlag`: when the load stops.  0 while it runs, else the ``now()``
  at which the connections still in flight are cut; no connection starts
  once it is set.
* :class:`LoadControl`: the stop flag, the progress counter, and the start
  line where client processes wait for each other.
* :class:`LoadPart`: one client process's part of a load, as plain values
  (it travels to a spawned process).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..basics import now

__all__ = ["GRACE", "GRACE_NS", "SLICE", "StopFlag", "LoadControl", "LoadPart"]

GRACE = 0.25
"""Seconds after the duration (or a stop) that connections in flight get to finish before they
are cut: on loopback a conversation under way ends within milliseconds, unless the server is
stuck, and then waiting longer would only break the promise of the duration."""
GRACE_NS = int(GRACE * 1e9)

SLICE = 0.1  # a client thread blocked in recv() looks at the stop flag this often (seconds)


class StopFlag:
    """When the load stops: :attr:`cut_ns` is 0 while it runs, else when connections are cut.

    Within one process it is a plain attribute; across client processes a
    shared word (``multiprocessing`` ``RawValue('q')``, aligned: no lock needed).
    Anyone may set it: the end of the duration, a protocol mismatch ("now"),
    or the caller's ``event`` (the CLI sets one on Ctrl-C), which counts as a
    stop :data:`GRACE` seconds ahead, so that conversations under way get the
    same grace as at the end of the duration.
    """

    __slots__ = ("_local", "_shared", "event")

    def __init__(self, event: threading.Event | None = None, *, shared: Any = None) -> None:
        self._local, self._shared, self.event = 0, shared, event

    @property
    def cut_ns(self) -> int:
        moment = self._shared.value if self._shared is not None else self._local
        if not moment and self.event is not None and self.event.is_set():
            moment = self.cut_ns = now() + GRACE_NS
        return moment

    @cut_ns.setter
    def cut_ns(self, moment: int) -> None:
        if self._shared is not None:
            self._shared.value = moment
        else:
            self._local = moment

    def cut_now(self) -> None:
        """Stop at once: no grace (a mismatch, or a second Ctrl-C)."""
        self.cut_ns = now()


class LoadControl:
    """What every client thread (and, with processes, every client process) of one load shares.

    ``counter``: connections finished, for the progress bar.  ``stop``: the
    :class:`StopFlag`.  ``start_line``: where client processes wait for each
    other so that they start firing together; ``started``: how many of them got
    past it (the parent need not wait for the others).
    """

    def __init__(self, counter: Any, stop: StopFlag, start_line: Any = None,
                 started: Any = None) -> None:
        self.counter, self.stop, self.start_line, self.started = counter, stop, start_line, started

    def report(self, done: int) -> None:
        """Add ``done`` finished connections to the progress counter."""
        if self.counter is not None and done:
            with self.counter.get_lock():
                self.counter.value += done


@dataclass(frozen=True)
class LoadPart:
    """One client process's part of a load (plain values: it travels to a spawned process)."""

    address: tuple[str, int]
    protocol: str
    numbers: range
    concurrency: int
    rate: float | None
    gap: float
    timeout: float
    retries: int
    seed: int | None
    lean: bool
    stop_ns: int  # no connection starts at or after this now()
    cut_ns: int  # connections still going at this now() are cut

    def may_start(self, control: LoadControl) -> bool:
        """May a new connection (or retry) start now?"""
        return now() < self.stop_ns and not control.stop.cut_ns
