"""The two things a simulated run's actors wait for besides each other: the GIL and the cores.

Both are small on purpose; each says which measurement it rests on.

* :class:`Gil`: one Python process runs one thread at a time.  The kit's
  client is one process, whatever the number of client threads, and a
  pool of thread workers lives in that same process.  The model holds the
  GIL first come, first served, for bursts it books at the moment they are
  asked for (never ahead: a booking in the future would leave the lock idle
  before it and make everyone else wait for nothing).
* :class:`Cores`: ``spin`` work needs a core.  The kit's CPU-bound workers
  share the cores the calibration measured them getting (other programs
  take the rest, and a container or a cgroup may cap them), evenly:
  processor sharing, the completely fair scheduler's goal, approximated by
  fixing each burst's share when it starts.
"""

from __future__ import annotations

__all__ = ["Gil", "Cores"]


class Gil:
    """One lock, held for bursts of CPU, first come, first served (CPython's GIL).

    A thread that finds it held waits on a condition variable: it sleeps, and
    its kernel counts a voluntary context switch (CPython's ``take_gil`` in
    ``Python/ceval_gil.c``).  :meth:`held_at` tells a rule whether that happens.
    """

    def __init__(self) -> None:
        self.free = 0.0  # when the last burst booked so far ends (µs)

    def hold(self, now: float, duration: float, *, holder: bool = False) -> float:
        """Hold the GIL for ``duration`` µs as soon as it is free; the wait before it (µs).

        ``holder``: the thread holds it already (it goes on without releasing
        it), so it waits for nobody and the others wait ``duration`` longer.
        """
        if holder:
            self.free = max(now, self.free) + duration
            return 0.0
        begin = max(now, self.free)
        self.free = begin + duration
        return begin - now

    def held_at(self, now: float) -> bool:
        """Is some thread holding it (or booked to) at ``now``?"""
        return self.free > now


class Cores:
    """The cores the kit's CPU-bound work gets, shared evenly by whoever spins at once.

    ``cores`` is what the calibration's ``spin`` run measured: CPU time the
    kit's workers got per second of wall time, all cores busy.  A burst of
    ``duration`` µs started while ``n`` bursts run (itself included) gets
    ``min(1, cores / n)`` of a core, so it lasts ``duration / share``.
    """

    def __init__(self, cores: float) -> None:
        self.cores = max(0.05, float(cores))
        self.spinning = 0

    def begin(self, duration: float) -> float:
        """A burst starts now: how long it lasts (µs).  Call :meth:`end` when it has."""
        self.spinning += 1
        return duration / min(1.0, self.cores / self.spinning)

    def end(self) -> None:
        self.spinning = max(0, self.spinning - 1)
