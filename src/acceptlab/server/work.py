"""Service-time models: what a worker does for each request before it answers.

* ``none``      - answer at once; the cost of a connection is the kernel's and Python's.
* ``sleep:MS``  - wait MS milliseconds, the way a worker waits on a database or a disk
  (I/O-bound).  A sleeping thread releases the GIL, so threads overlap as well as processes.
* ``spin:MS``   - burn MS milliseconds of CPU in a Python loop (CPU-bound).  A spinning
  thread holds the GIL, so four threads serve no faster than one; four processes can use
  every core.  This is the GIL lesson of the book's thread-vs-process switch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..specs import read_work

__all__ = ["Work", "parse_work"]


@dataclass(frozen=True)
class Work:
    """A service time: call the object to do one request's worth of work."""

    kind: str = "none"
    ms: float = 0.0

    def __call__(self) -> None:
        """Do the work for one request: ``ms`` milliseconds asleep, or of CPU time."""
        if self.kind == "sleep":
            time.sleep(self.ms / 1000)
        elif self.kind == "spin":
            # CPU time of this thread, not wall time: a worker that waits for a core
            # (or for the GIL) still does its full share of computing.
            deadline = time.thread_time() + self.ms / 1000
            while time.thread_time() < deadline:  # busy on purpose: it must hold the CPU
                pass

    def __bool__(self) -> bool:
        """False for ``none``: there is nothing to call (the worker then skips the call)."""
        return self.kind != "none"

    def __str__(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{self.ms:g}"


def parse_work(spec: str | Work) -> Work:
    """Turn ``'none'``, ``'sleep:5'`` or ``'spin:2.5'`` into a :class:`Work`.

    The grammar is :func:`acceptlab.specs.read_work`'s (a pool's spec is checked with it).

    >>> parse_work('sleep:5')
    Work(kind='sleep', ms=5.0)
    """
    if isinstance(spec, Work):
        return spec
    return Work(*read_work(spec))
