"""What a calibration keeps: samples of time per live run, and the few numbers beside them.

A :class:`Pool` is one live run's times (one state of the machine), a
:class:`HerdTable` one run's herd race, and a :class:`Calibration` all of them
with the machine they were measured on.  A simulated run draws all its times
from one pool of each kind, so the model's bands carry the spread between
runs as well as within them.  :mod:`acceptlab.model.readings` makes these from
live runs, :mod:`acceptlab.model.calibration` decides which runs to make.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import numpy as np

__all__ = ["SAMPLES", "Pool", "HerdTable", "Calibration", "VERSION", "PATHS", "STALL_FACTOR"]

SAMPLES = tuple[float, ...]

VERSION = 2
"""The calibration format; a saved calibration of another version is measured again."""

PATHS = ("accept", "exclusive", "poll", "epoll", "lock", "dealer", "shared")
"""The ways to a connection that cost (and race) differently, each measured by runs of its
own (a rule's ``path``): ``accept()`` alone, an ``EPOLLEXCLUSIVE`` epoll then ``accept()``,
``poll()`` then ``accept()``, an epoll herd, ``flock()`` around ``accept()``, a dealer's
hand-off over a Unix socket, and threads sharing one epoll."""


STALL_FACTOR = 4.0
"""A connection that took this many times its run's median (connect + talk) was stalled:
another program, or a page fault, held up the client or its worker for a while."""


@dataclass(frozen=True)
class Pool:
    """What one live run measured about time, in microseconds.

    ``path`` is the way to a connection the run measured (:data:`PATHS`);
    ``regime`` is ``'busy'`` (back-to-back connections: the CPUs are awake),
    ``'idle'`` (a gap between connections: a woken worker's CPU may have to
    wake up first), ``'loaded'`` (a closed loop: every core wanted) or
    ``'open'`` (an open loop: a client thread per connection); ``kind`` is
    the workers' kind.  ``pairs`` is how many consecutive connections the
    race fields were read from.
    """

    kind: str
    regime: str
    # One entry per connection, aligned: a simulated connection takes all three from one live
    # connection, so a hiccup that hit one phase of one connection is not copied into three.
    connect: SAMPLES  # client t_connected - t_start
    talk: SAMPLES  # client t_done - the worker's t_accept
    woke: SAMPLES  # t_accept - t_connected where a sleeper took it, else NaN
    lead: float  # how long before t_connected a connection is already queued (>= 0)
    lag_prompt: SAMPLES  # worker t_done - client t_done, when it was back before the next arrival
    lag_late: SAMPLES  # the same, when it was back after it
    ret: SAMPLES  # the worker's next t_wait - its t_done
    pause: SAMPLES  # client: next t_start - t_done - gap (the pause's overshoot, or the reconnect)
    p_late_win: float = 0.0  # returning worker late, and it took the next connection unslept
    p_late_lose: float = 0.0  # late, and a woken sleeper took it
    off_win: SAMPLES = ()  # late-win: the worker's t_wait - the next connection's t_connected
    off_lose: SAMPLES = ()  # late-lose: the same
    # wakeups per accept beyond those the path's rule explains (readings._stray): the
    # machine's own (idle runs) and, in thread pools, the waits for the GIL (busy thread runs)
    stray: float = 0.0
    # a wait that found its connection queued (no switch): its t_wake - t_wait, the wait
    # call's own cost (accept() makes the socket before it returns), which the log shows
    enter: SAMPLES = ()
    path: str = "accept"
    pairs: int = 0
    # EAGAIN returns per late-win (None: not read): a woken sleeper that ran once the
    # returning worker had taken the connection, and saw it queued first (path exclusive)
    eagain_per_win: float | None = None

    @property
    def p_late(self) -> float:
        return self.p_late_win + self.p_late_lose

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @cached_property
    def stalled(self) -> np.ndarray:
        """For each connection: was it stalled (:data:`STALL_FACTOR`)?"""
        latency = np.asarray(self.connect, dtype=float) + np.asarray(self.talk, dtype=float)
        finite = latency[np.isfinite(latency)]
        if not len(finite):
            return np.zeros(len(latency), dtype=bool)
        with np.errstate(invalid="ignore"):
            return latency > STALL_FACTOR * np.median(finite)

    @cached_property
    def stall_lengths(self) -> np.ndarray:
        """How much longer than the median each stalled connection took (µs)."""
        latency = np.asarray(self.connect, dtype=float) + np.asarray(self.talk, dtype=float)
        finite = latency[np.isfinite(latency)]
        return latency[self.stalled] - np.median(finite) if len(finite) else np.zeros(0)


PLAIN_HERDS = ("poll", "epoll")
"""The herd families whose EAGAIN share is one fact of the machine, pooled over their runs
(whether a loser runs while the connection is still queued is the scheduler's timing, not the
system call's).  ``shared`` (one epoll for threads) and ``exact`` (a herd decided under a
lock) race otherwise and keep their own."""


@dataclass(frozen=True)
class HerdTable:
    """Who wins a race of woken waiters, from one live run.

    ``ranks``: for each connection a sleeper won among two or more, the
    winner's place among the sleepers, from 0 (first) to 1 (last), in the
    order of the family's wait queue: for ``poll`` and ``shared`` the order
    they began to wait (its ``norm_rank``, :func:`acceptlab.analysis.wake_order_ranks`),
    for ``epoll`` the order the workers registered their epolls (slot order,
    fixed at start-up).  ``p_eagain``: for a herd, the share of the woken
    losers whose wait came back to Python with EAGAIN (the others went back
    to sleep inside the kernel, a wakeup without a return); for ``shared``,
    EAGAIN returns per connection handed on.  ``p_switch``: the share of a
    herd's loser wakeups that cost the loser a switch of its own (on a busy
    machine a loser may not even have run before the next wake-up, which
    then costs it nothing); for ``exact`` (a herd decided under a lock), the
    switches per race lost, above 1 when losers slept on the lock too, and
    ``p_eagain`` per race lost.  ``woken``: sleepers woken per connection.
    ``favoured``: how strongly the run favoured one worker of its own (0: a
    fair draw by rank; 1: it won every race it was woken for; the same for
    each part of one run; :func:`acceptlab.model.readings.read_herds`).
    """

    family: str
    regime: str
    ranks: SAMPLES
    p_eagain: float
    p_switch: float = 1.0
    woken: float = 1.0
    favoured: float = 0.0


@dataclass(frozen=True)
class Calibration:
    """The model's time parameters for one machine, and where they came from.

    Args (fields):
        source: ``'measured'`` (by :func:`acceptlab.model.calibrate`) or ``'default'``.
        created: when (ISO 8601).
        machine: :func:`acceptlab.lab.experiment.machine` of the machine measured.
        load_average: the 1, 5 and 15-minute load averages while measuring.
        cpus: the machine's cores.
        client_cpu_us, worker_cpu_us: CPU time per connection of the client
            process and of the workers (``getrusage`` around sequential runs).
        cores: per ``spin`` run of process workers, how many cores the kit's
            CPU-bound workers got together (other programs, and the client,
            take the rest).
        thread_cores: the same for thread workers (one spins at a time: the GIL).
        spin_spread: each spinning connection's hold time over the median, from
            those runs: how unevenly CPU-bound workers progress.
        thread_switches: per thread-worker accept in those runs (the GIL always
            wanted), the voluntary switches counted: waits for the GIL.
        gil_us: per stretch of the closed-loop runs, the client process's time
            per connection when its threads take turns (one over its rate: its
            GIL and its share of the cores limit it).
        open_gil_us: per open-loop run, the same for an open loop's client (a
            thread per connection), fitted so that the model gives that run's
            median latency.
        timer_slack_us: how late a ``sleep`` may end by design (the kernel's
            timer slack, ``/proc/self/timerslack_ns``; 50 µs by default).
        pools: ``'PATH-KIND-REGIME'`` (``'accept-process-busy'``...): one
            :class:`Pool` per run.
        herds: ``'FAMILY-REGIME'`` (``'poll-busy'``, ``'shared-busy'``...): one
            :class:`HerdTable` per run.
        mode: ``'full'``, or ``'quick'`` (fewer runs; what they did not measure
            is the default's: ``note`` says which).
        calibrations: how many calibrations of this machine its runs come from
            (:meth:`merged`), newest first.
        note: how it was measured.
        unread: the runs whose readings could not be taken, even made again (a
            machine too busy for them), and why: their name -> the reason.  What
            they would have measured is the default's (``note`` lists it).
        version: :data:`VERSION`.
    """

    source: str
    created: str
    machine: Mapping[str, Any]
    load_average: tuple[float, float, float]
    cpus: int
    client_cpu_us: float
    worker_cpu_us: float
    cores: tuple[float, ...]
    thread_cores: tuple[float, ...]
    spin_spread: tuple[float, ...]
    thread_switches: tuple[float, ...]
    gil_us: tuple[float, ...]
    open_gil_us: tuple[float, ...]
    timer_slack_us: float
    pools: Mapping[str, tuple[Pool, ...]]
    herds: Mapping[str, tuple[HerdTable, ...]]
    mode: str = "full"
    note: str = ""
    calibrations: int = 1
    unread: Mapping[str, str] = dataclasses.field(default_factory=dict)
    version: int = VERSION

    def merged(self, older: "Calibration", *, keep: int = 3) -> "Calibration":
        """This calibration with the runs of an older one of the same machine added.

        A shared machine moves between states faster than one calibration can
        follow: every calibration kept adds the states it saw, and a simulated
        run picks among them all.  The result holds the runs of at most
        ``keep`` calibrations (this one and the newest of ``older``'s); the
        machine's facts, the CPU per connection and the load average are this
        one's.  A calibration of another machine (or format) is not merged.
        """
        if older.machine.get("system") != self.machine.get("system") \
                or older.cpus != self.cpus or older.version != self.version or keep < 2:
            return self
        taken = min(older.calibrations, keep - 1)  # how many of the older ones to keep

        def joined(mine: tuple, theirs: tuple) -> tuple:
            per = len(theirs) / older.calibrations  # one older calibration's share
            return tuple(mine) + tuple(theirs)[:round(per * taken)]

        def joined_map(mine: Mapping, theirs: Mapping) -> dict:
            return {key: joined(mine.get(key, ()), theirs.get(key, ()))
                    for key in {*mine, *theirs}}

        return dataclasses.replace(
            self, pools=joined_map(self.pools, older.pools),
            herds=joined_map(self.herds, older.herds),
            cores=joined(self.cores, older.cores),
            thread_cores=joined(self.thread_cores, older.thread_cores),
            spin_spread=joined(self.spin_spread, older.spin_spread),
            thread_switches=joined(self.thread_switches, older.thread_switches),
            gil_us=joined(self.gil_us, older.gil_us),
            open_gil_us=joined(self.open_gil_us, older.open_gil_us),
            calibrations=1 + taken)

    def pools_for(self, path: str, kind: str, regime: str) -> tuple[Pool, ...]:
        """The pools of ``path``, ``kind`` and ``regime``, or the nearest measured ones.

        Another path falls back to ``accept`` (the same regime and kind),
        threads to processes, and a regime without runs to ``busy``.
        """
        for key in (f"{path}-{kind}-{regime}", f"accept-{kind}-{regime}",
                    f"{path}-process-{regime}", f"accept-process-{regime}",
                    f"{path}-{kind}-busy", "accept-process-busy"):
            if self.pools.get(key):
                return self.pools[key]
        raise KeyError(f"no pools for {path}-{kind}-{regime} in this calibration")

    @cached_property
    def stalls(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Every sequential run's share of stalled connections, and every stall's length (µs).

        How often a stall happens is the machine's state of the moment: a
        simulated run takes one run's share, any run's.  How long a stall
        lasts is pooled over them all (one run sees a handful).
        """
        rates, lengths = [], []
        for name, runs in self.pools.items():
            if name.endswith(("-busy", "-idle")):
                for pool in runs:
                    if len(pool.stalled):
                        rates.append(float(pool.stalled.mean()))
                        lengths.extend(float(x) for x in pool.stall_lengths)
        return tuple(rates), tuple(lengths)

    @cached_property
    def herd_wake_us(self) -> float:
        """What each extra sleeper a herd wakes costs the connecting client (µs).

        ``poll``'s connect against ``accept()``'s (each woke one sleeper), back
        to back, over how many more sleepers ``poll`` woke: waking a task is
        work for the CPU that queued the connection (on loopback, the client's).
        """
        def connect(name: str) -> float:
            values = [v for pool in self.pools.get(name, ()) for v in pool.connect]
            return float(np.nanmedian(values)) if values else float("nan")

        woken = [t.woken for t in self.herds.get("poll-busy", ())]
        extra = (float(np.mean(woken)) - 1) if woken else 0.0
        cost = connect("poll-process-busy") - connect("accept-process-busy")
        return round(max(0.0, cost / extra), 2) if extra > 0.5 and np.isfinite(cost) else 0.0

    @cached_property
    def speeds(self) -> dict[int, float]:
        """Each sequential pool's speed: its median connection time (connect + talk) over the
        median of the pools of its path, kind and regime (``id(pool)`` -> factor).

        Together they are the states of the machine the calibration saw: a simulated run
        takes the shape of its times from one pool and its speed from any (:meth:`all_speeds`).
        """
        found: dict[int, float] = {}
        for name, runs in self.pools.items():
            if not name.endswith(("-busy", "-idle")):
                continue
            medians = [float(np.nanmedian(np.add(p.connect, p.talk))) for p in runs]
            reference = float(np.nanmedian(medians))
            for pool, median in zip(runs, medians):
                if reference > 0 and np.isfinite(median):
                    found[id(pool)] = median / reference
        return found

    @cached_property
    def all_speeds(self) -> tuple[float, ...]:
        """Every sequential pool's speed (:attr:`speeds`): the spread of the machine's states."""
        return tuple(self.speeds.values()) or (1.0,)

    def herds_of(self, regime: str) -> tuple[HerdTable, ...]:
        """Every table of the plain herds (:data:`PLAIN_HERDS`) of ``regime``."""
        return tuple(t for family in PLAIN_HERDS
                     for t in self.herds.get(f"{family}-{regime}", ()))

    def herd_for(self, family: str, regime: str) -> tuple[HerdTable, ...]:
        """The herd tables of ``family`` in ``regime`` (or busy, or poll's)."""
        for key in (f"{family}-{regime}", f"{family}-busy", f"poll-{regime}", "poll-busy"):
            if self.herds.get(key):
                return self.herds[key]
        raise KeyError(f"no herd tables for {family}-{regime} in this calibration")

    def describe(self) -> str:
        """One line: which calibration this is."""
        load = ", ".join(f"{x:.2f}" for x in self.load_average)
        quick = " (quick)" if self.mode == "quick" else ""
        more = (f", with the runs of {self.calibrations - 1} earlier calibration(s)"
                if self.calibrations > 1 else "")
        unread = (f"; {len(self.unread)} run(s) could not be read, the default's stand in: "
                  f"{', '.join(sorted(self.unread))}" if self.unread else "")
        return (f"{self.source}{quick} calibration of {self.created} "
                f"({self.machine.get('cpus')} cores, kernel {self.machine.get('kernel')}, "
                f"load average {load}{more}{unread})")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        """The calibration a dict of :meth:`as_dict` (or its JSON) describes."""
        if data.get("version") != VERSION:
            raise ValueError(f"a calibration of format {data.get('version', 1)}, not {VERSION}")

        def samples(fields: Mapping[str, Any]) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}

        pools = {name: tuple(Pool(**samples(pool)) for pool in runs)
                 for name, runs in data["pools"].items()}
        herds = {name: tuple(HerdTable(**samples(table)) for table in runs)
                 for name, runs in data["herds"].items()}
        return cls(source=data["source"], created=data["created"], machine=dict(data["machine"]),
                   load_average=tuple(data["load_average"]), cpus=int(data["cpus"]),
                   client_cpu_us=float(data["client_cpu_us"]),
                   worker_cpu_us=float(data["worker_cpu_us"]),
                   cores=tuple(float(x) for x in data["cores"]),
                   thread_cores=tuple(float(x) for x in data["thread_cores"]),
                   spin_spread=tuple(float(x) for x in data["spin_spread"]),
                   thread_switches=tuple(float(x) for x in data["thread_switches"]),
                   gil_us=tuple(float(x) for x in data["gil_us"]),
                   open_gil_us=tuple(float(x) for x in data["open_gil_us"]),
                   timer_slack_us=float(data["timer_slack_us"]), pools=pools, herds=herds,
                   mode=data.get("mode", "full"), note=data.get("note", ""),
                   calibrations=int(data.get("calibrations", 1)),
                   unread=dict(data.get("unread", {})), version=int(data["version"]))
