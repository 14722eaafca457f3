"""How many cores *other* work used while a run lasted: ``machine_busy``.

A lesson's race (who wakes first, who gets the next connection) is decided by
the scheduler, so a run on a crowded machine can look as if the kernel had
changed its rule.  On a shared JupyterHub twenty students' runs crowd one
machine.  So every run measures the crowd::

    busy = BusySampler().start()
    ...                                   # the run: workers, clients
    print(busy.stop())                    # other work used 1.62 of 2 cores for 3.1 s

The measurement is two readings, one before and one after, of two counters
the kernel keeps anyway:

* ``/proc/stat``: CPU time spent busy by the whole machine, every core;
* ``/proc/PID/stat``: CPU time of the run's own processes (``utime`` +
  ``stime``), plus that of their children already reaped (``cutime`` +
  ``cstime``).

Other work = machine busy time - the run's own time, divided by the wall time
between the readings: cores used by everything that is not this run.

Why the reaped children count: when a worker or a client process exits and
its parent reaps it, the kernel adds its CPU time to the parent's ``cutime``.
Summed over a tree of processes, "own time + reaped children's time" therefore
does not change when a process of the tree exits; it only grows by the CPU
the tree uses.  Two readings are enough, with no sampling thread, whatever
processes come and go between them.

The run's own processes are, by default, this process and every process below
it (the pool's workers, the client processes): what ``run_experiment`` starts.
A caller may name them instead (``own=lambda: [os.getpid(), *pool.pids()]``).
Times are in clock ticks (``os.sysconf('SC_CLK_TCK')``, usually 100 per
second), so a run of a second is measured to a few hundredths of a core.
Linux only: elsewhere :meth:`BusySampler.start` raises :class:`BusyUnavailable`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["Busy", "BusySampler", "BusyUnavailable", "machine_ticks", "process_ticks"]


class BusyUnavailable(OSError):
    """This machine has no ``/proc/stat`` (not Linux): how busy it was cannot be measured."""


@dataclass(frozen=True)
class Busy:
    """What the two readings gave, in cores (CPU seconds per wall-clock second).

    Args:
        seconds: wall-clock time between the readings.
        machine: cores the whole machine kept busy.
        own: cores the run's own processes used.
        cpus: the machine's cores (``os.cpu_count()``).
    """

    seconds: float
    machine: float
    own: float
    cpus: int

    @property
    def other(self) -> float:
        """Cores used by other work: the machine's minus the run's, between zero and the
        machine's cores (both counters tick in hundredths of a second, read at two slightly
        different moments: over a run of a tenth of a second the difference can overshoot
        either end by a tick or two)."""
        return min(max(self.machine - self.own, 0.0), float(self.cpus))

    def as_meta(self) -> dict:
        """The entries a run's ``meta`` keeps: ``machine_busy`` (other work, cores) and the rest."""
        return {"machine_busy": round(self.other, 2),
                "machine_busy_seconds": round(self.seconds, 3), "own_cores": round(self.own, 2)}

    def __str__(self) -> str:
        return (f"other work used {self.other:.2f} of {self.cpus} cores for {self.seconds:.1f} s "
                f"(the run itself {self.own:.2f})")


# -- the two counters, as text in, ticks out ------------------------------------------------------

def machine_ticks(stat_text: str) -> int:
    """Busy clock ticks of all cores together, from the first line of ``/proc/stat``.

    ``cpu  user nice system idle iowait irq softirq steal guest guest_nice``:
    busy is everything but ``idle`` and ``iowait`` among the first eight
    (``guest`` time is already inside ``user``).  ``steal``, time a virtual
    machine's core waited for the host, counts as busy: other work had it.
    """
    first = stat_text.split("\n", 1)[0].split()
    if not first or first[0] != "cpu":
        raise ValueError(f"not /proc/stat's first line: {stat_text[:40]!r}")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return user + nice + system + irq + softirq + steal


def process_ticks(stat_text: str) -> int:
    """CPU clock ticks of one process and of its children already reaped, from ``/proc/PID/stat``.

    Fields 14-17 (``utime stime cutime cstime``), counted after the command
    name, which may hold spaces and parentheses: the fields start after the
    *last* ``)``.
    """
    fields = stat_text.rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime + cutime + cstime


# -- the sampler ----------------------------------------------------------------------------------

def _this_tree(proc: Path) -> list[int]:
    """This process and every process below it (``/proc/*/stat``'s parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, level = [os.getpid()], [os.getpid()]
    while level:
        level = [child for parent in level for child in parents.get(parent, ())]
        tree.extend(level)
    return tree


class BusySampler:
    """Two readings of the machine's and the run's CPU time; :meth:`stop` returns a :class:`Busy`.

    Args:
        own: a function returning the run's own process ids now; None means
            this process and all its descendants.  It is called at both
            readings, so workers replaced in between are counted.
        proc: where procfs is mounted (tests point it at fixture files).
        clock: the wall clock, in seconds (tests pass a fake one).
    """

    def __init__(self, own: Callable[[], Iterable[int]] | None = None, *,
                 proc: str | os.PathLike = "/proc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proc = Path(proc)
        self.own = own if own is not None else (lambda: _this_tree(self.proc))
        self.clock = clock
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: tuple[float, int, int] | None = None
        self.result: Busy | None = None  # set when used as a context manager

    def _reading(self) -> tuple[float, int, int]:
        """(wall seconds, machine busy ticks, the run's ticks), read as close together as may be."""
        own = 0
        for pid in dict.fromkeys(self.own()):  # each pid once, in order
            try:
                own += process_ticks((self.proc / str(pid) / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # exited and reaped: its time is in its parent's cutime now
        try:
            machine = machine_ticks((self.proc / "stat").read_text())
        except OSError as exc:
            raise BusyUnavailable(f"cannot read {self.proc / 'stat'}: {exc.strerror} "
                                  f"(how busy the machine is is measured on Linux only)") from None
        return self.clock(), machine, own

    def start(self) -> "BusySampler":
        """Take the first reading; return self."""
        self._start = self._reading()
        return self

    def stop(self) -> Busy:
        """Take the second reading and return what happened in between."""
        if self._start is None:
            raise RuntimeError("BusySampler.stop() before start()")
        (t0, machine0, own0), (t1, machine1, own1) = self._start, self._reading()
        seconds = max(t1 - t0, 1e-9)
        cores = lambda ticks: max(ticks, 0) / self.tick / seconds  # noqa: E731
        return Busy(seconds, cores(machine1 - machine0), cores(own1 - own0), os.cpu_count() or 1)

    def __enter__(self) -> "BusySampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.result = self.stop()
