"""Measuring this machine for the model: which live runs to make, and keeping the result.

The rules of :mod:`acceptlab.model.rules` say *who* may take a connection;
*when* each actor gets there is measured here, with small live runs of the
kit on loopback (:data:`FULL_RUNS`, a few seconds; :data:`QUICK_RUNS`, under
three).  Each run is read by :mod:`acceptlab.model.readings`:

* sequential runs, back to back (``busy``) and 1 ms apart (``idle``), of one
  strategy per way to a connection (:data:`~acceptlab.model.pools.PATHS`:
  ``blocking``, ``poll``, ``epoll``, ``locked``, ``handoff``, and
  ``shared-epoll`` with threads): the client's connect and talk, how soon a
  woken sleeper runs, how late the returning worker is, and (``poll``,
  ``epoll``, ``shared-epoll``) who of the woken wins;
* a closed loop of as many clients as workers: the times when every core is
  wanted, how uneven its conversations are, and the client's time per
  connection (``gil_us``);
* ``exact`` and ``busy-sleep`` back to back: herds whose winner takes a lock
  after ``poll()``, so their races (who wins, how many losers see EAGAIN)
  are their own, not ``poll``'s;
* ``spin`` work, with twice as many clients as workers, processes and then
  threads: the cores the kit's CPU-bound workers get (``cores``,
  ``thread_cores``), how unevenly (``spin_spread``), and how often a thread
  worker waits for the GIL (``thread_switches``);
* an open loop at 500 connections per second: the client's times with a
  thread per connection, and its time per connection (``open_gil_us``,
  fitted so that the model gives the run's median latency).

The calibration runs :data:`WORKERS` workers (:data:`HERD_WORKERS` for the races
of woken waiters), not the 4 of the lessons and of ``bench_model``'s grid, and
its loads are not the grid's: the model is always checked on runs of another
shape than the ones it was calibrated on.

The runs come in rounds, so that each kind is measured at more than one
moment of a shared machine, and each run is kept as its own pool (two:
its halves).  :func:`calibrate` measures; :func:`kept_with` adds the runs of
the last calibrations of this machine (a shared machine's states move faster
than one calibration follows); :func:`save` and :func:`load` keep the result
in the user's cache (:func:`cache_path`);
:func:`current` is what :func:`acceptlab.model.predict` uses: the saved
calibration, or :func:`default` (measured on the kit's reference machine, a
2-core VM; :mod:`acceptlab.model.defaults`) when there is none.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import readings
from .pools import VERSION, Calibration, HerdTable, Pool

__all__ = ["Pool", "HerdTable", "Calibration", "CalibrationRun", "calibrate", "save", "load",
           "current", "default", "cache_path", "kept_with", "FULL_RUNS", "QUICK_RUNS", "WORKERS",
           "timer_slack_us", "ATTEMPTS"]

WORKERS = 3
"""Workers of the calibration's runs: not the lessons' 4, so validation is out of sample."""

HERD_WORKERS = 5
"""Workers of the runs whose wakeups race (``poll``, ``epoll``, ``shared-epoll``): more than
twice the cores of the kit's reference machine, and again not the lessons' 4.  With fewer
workers than that a herd's losers seldom run before the winner accepts (they never come back
with EAGAIN); with more they sometimes all do, and one worker wins most: a state the model
can only replay if its calibration saw it."""

SPIN_MS, QUESTIONS = 1.0, 3  # the cores runs' spin per request, zen's questions per connection
OPEN_RATE = 500.0  # the open loop's connections per second (bench_model checks 1000)


@dataclass(frozen=True)
class CalibrationRun:
    """One live run of the calibration: what to run, and what to read from it.

    ``reads`` is ``'pool'`` (a sequential run: :func:`~acceptlab.model.readings.read_pools`,
    kept under ``name``), ``'herd'`` (a sequential run read for its herd table only),
    ``'loaded'``, ``'cores'``, ``'open'`` or ``'cpu'`` (its CPU time only); ``herd`` names
    the herd family to read as well (``'poll'``, ``'epoll'``, ``'shared'``, ``'exact'``).
    """

    name: str
    reads: str = "pool"
    options: Mapping[str, Any] = field(default_factory=dict)  # for run_experiment
    herd: str | None = None


def _sequential(path: str, strategy: str, regime: str, *, kind: str = "process",
                herd: str | None = None, **more: Any) -> CalibrationRun:
    gap = 0.0 if regime == "busy" else 0.001
    if herd:
        more.setdefault("workers", HERD_WORKERS)
    return CalibrationRun(f"{path}-{kind}-{regime}", "pool",
                          dict(strategy=strategy, kind=kind, gap=gap, **more), herd)


_LOADED = CalibrationRun("accept-process-loaded", "loaded",
                         dict(strategy="blocking", concurrency=WORKERS, connections=180))
_CORES = CalibrationRun("cores", "cores", dict(strategy="blocking", work=f"spin:{SPIN_MS:g}",
                                               concurrency=2 * WORKERS, connections=24))
_THREAD_CORES = CalibrationRun("thread_cores", "cores",
                               dict(strategy="blocking", work=f"spin:{SPIN_MS:g}", kind="thread",
                                    concurrency=2 * WORKERS, connections=24))
_OPEN = CalibrationRun("accept-process-open", "open",
                       dict(strategy="blocking", rate=OPEN_RATE, connections=80))
_EXACT = CalibrationRun("exact-process-busy", "herd",
                        dict(strategy="exact", kind="process", gap=0.0, workers=HERD_WORKERS),
                        herd="exact")

_BUSY_SLEEP = CalibrationRun("busy-sleep-process-busy", "herd",
                             dict(strategy="busy-sleep", kind="process", gap=0.0,
                                  workers=HERD_WORKERS), herd="busy-sleep")

_ROUND: tuple[CalibrationRun, ...] = (
    _sequential("accept", "blocking", "busy"),
    _sequential("accept", "blocking", "idle"),
    _sequential("poll", "poll", "busy", herd="poll"),
    _sequential("epoll", "epoll", "busy", herd="epoll"),
    _LOADED,
    _sequential("exclusive", "epoll-exclusive", "busy"),
    _sequential("accept", "blocking", "busy", kind="thread"),
    _sequential("poll", "poll", "idle", herd="poll"),
    _sequential("epoll", "epoll", "idle", herd="epoll"),
    _sequential("lock", "locked", "busy"),
    _sequential("lock", "locked", "idle"),
    _CORES,
    _sequential("dealer", "handoff", "busy"),
    _THREAD_CORES,
    _sequential("dealer", "handoff", "idle"),
    _sequential("shared", "shared-epoll", "busy", kind="thread", herd="shared"),
    _OPEN,
    _EXACT,
    _BUSY_SLEEP,
    # The races only these strategies run get a second run a round: whether one worker is
    # favoured, and how often a thread waits for the GIL, change from run to run, and a band
    # holds only what its calibration's runs saw (two validations in 2026-12-08 missed on a
    # state three runs had not shown: bench/bench_model.py)
    _sequential("shared", "shared-epoll", "busy", kind="thread", herd="shared"),
    _EXACT,
    _BUSY_SLEEP,
)

_SMALL = CalibrationRun("cpu", "cpu", dict(strategy="blocking", gap=0.0, connections=20))

FULL_RUNS: tuple[CalibrationRun, ...] = (*_ROUND, *_ROUND, *_ROUND, _SMALL)
"""The live runs of ``acceptlab calibrate``, in order: three rounds of :data:`WORKERS` workers,
70 connections a run (and a last run of 20: the CPU per connection is the slope between the
sizes, without what starting and stopping a pool costs, some 20 ms).  Each sequential run gives two pools, its first and its second half:
a shared machine's state moves within seconds, and each pool is one sample of it."""

QUICK_RUNS: tuple[CalibrationRun, ...] = (
    _sequential("accept", "blocking", "busy"), _sequential("accept", "blocking", "idle"),
    _sequential("poll", "poll", "busy", herd="poll"),
    _sequential("epoll", "epoll", "busy", herd="epoll"),
    _sequential("exclusive", "epoll-exclusive", "busy"),
    _sequential("accept", "blocking", "busy", kind="thread"),
    _LOADED, _CORES, _THREAD_CORES, _OPEN, _SMALL)
"""``acceptlab calibrate --quick`` (lesson 00): the race with and without a gap, the herds,
``EPOLLEXCLUSIVE``, threads, the loads, 60 connections a run; the rest (locks, dealers,
shared epoll, the idle herds) comes from the default calibration."""


def timer_slack_us() -> float:
    """This process's timer slack (how late a sleep may end by design), µs; Linux's 50 µs
    default elsewhere (prctl(2), PR_SET_TIMERSLACK)."""
    try:
        return int(Path("/proc/self/timerslack_ns").read_text()) / 1e3
    except (OSError, ValueError):
        return 50.0


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process (the client's threads) and of its reaped children
    (the worker processes, reaped when the pool stops)."""
    mine, children = (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    return mine.ru_utime + mine.ru_stime, children.ru_utime + children.ru_stime


class _Readings:
    """What the runs of one calibration have given so far."""

    def __init__(self) -> None:
        self.pools: dict[str, list[Pool]] = {}
        self.herds: dict[str, list[HerdTable]] = {}
        self.cores: dict[str, list[float]] = {"cores": [], "thread_cores": []}
        self.spread: list[float] = []
        self.switches: list[float] = []
        self.gil: list[float] = []
        self.open_runs: list[tuple[Pool, float, dict]] = []  # (pool, live p50 µs, options)
        self.cpu_use: list[tuple[int, float, float]] = []
        self.loads: list[tuple[float, float, float]] = []
        self.unread: dict[str, str] = {}  # the runs that could not be read: name -> why

    def read(self, spec: CalibrationRun, run: Any, used: tuple[float, float],
             options: dict) -> None:
        """Keep what ``run`` (made for ``spec`` with ``options``) says: all of it, or nothing
        (:class:`~acceptlab.model.readings.UnreadableRun` when it cannot be read)."""
        if spec.reads == "cpu" or spec.name == "accept-process-busy":
            # its CPU time, for the slope: getrusage's, whatever its tables hold
            self.cpu_use.append((len(run.client), *used))
        if spec.reads == "cpu":
            return
        if spec.reads == "pool":
            path, kind, regime = spec.name.split("-")
            pools = readings.read_pools(run, regime=regime, path=path, parts=2)
            herds = (readings.read_herds(run, family=spec.herd, regime=regime, parts=2)
                     if spec.herd else [])
            self.pools.setdefault(spec.name, []).extend(pools)
            if spec.herd:
                self.herds.setdefault(f"{spec.herd}-{regime}", []).extend(herds)
        elif spec.reads == "herd":  # a race of its own only (its times are poll's)
            regime = spec.name.split("-")[-1]
            herds = readings.read_herds(run, family=spec.herd, regime=regime, parts=2)
            self.herds.setdefault(f"{spec.herd}-{regime}", []).extend(herds)
        elif spec.reads == "loaded":
            pool = readings.read_loaded(run)
            self.pools.setdefault(spec.name, []).append(pool)
            self.gil.extend(round(float(1 / rate), 1) for rate in
                            readings.client_rates(run, segments=3) if rate > 0)
        elif spec.reads == "cores":
            cores = readings.read_cores(run, spin_ms=SPIN_MS, questions=QUESTIONS)
            spread = readings.read_spread(run)
            switches = readings.read_switches(run) if spec.name == "thread_cores" else None
            self.cores[spec.name].append(cores)
            self.spread.extend(spread)
            if switches is not None:
                self.switches.append(switches)
        elif spec.reads == "open":
            from .. import analysis

            pool = readings.read_open(run)
            p50 = float(analysis.latency(run.client).iloc[0]["p50_ms"]) * 1e3
            self.pools.setdefault(spec.name, []).append(pool)
            self.open_runs.append((pool, p50, options))
        else:
            raise ValueError(f"unknown reading {spec.reads!r}")


ATTEMPTS = 2
"""How many times a run whose readings cannot be taken is made (a busy moment passes)."""


def calibrate(*, quick: bool = False, workers: int = WORKERS, connections: int | None = None,
              runs: tuple[CalibrationRun, ...] | None = None,
              progress: Callable[[int, int, str], None] | None = None,
              run_experiment: Callable[..., Any] | None = None) -> Calibration:
    """Measure this machine with small live runs and return a :class:`Calibration`.

    Nothing is saved: :func:`save` does that (``acceptlab calibrate`` does both).

    Args:
        quick: the few runs of :data:`QUICK_RUNS` (under 3 s); the rest is
            the default calibration's (``note`` says what).
        workers: workers per run.
        connections: connections per sequential run (default 70, 60 quick).
        runs: the runs to make (default :data:`FULL_RUNS` or :data:`QUICK_RUNS`).
        progress: called as ``progress(done, total, name)`` after each run.
        run_experiment: the function that makes a run (the kit's by default;
            a test may pass a fake).

    A run too crowded to read (a busy machine: :class:`~acceptlab.model.readings.UnreadableRun`)
    is made again; if it is still unreadable after :data:`ATTEMPTS` tries, the calibration goes
    on without it, takes the default's readings in its place and keeps why in ``unread``
    (:meth:`~acceptlab.model.pools.Calibration.describe` names it).
    """
    from ..lab.experiment import machine

    if run_experiment is None:
        from ..lab.experiment import run_experiment
    runs = runs if runs is not None else (QUICK_RUNS if quick else FULL_RUNS)
    connections = connections or (60 if quick else 70)
    cpus = int(os.cpu_count() or 1)
    found = _Readings()
    for done, spec in enumerate(runs, 1):
        options = {"workers": workers, "kind": "process", "connections": connections,
                   **spec.options}
        for attempt in range(1, ATTEMPTS + 1):
            found.loads.append(os.getloadavg())
            before = _cpu_seconds()
            run = run_experiment(**options)
            after = _cpu_seconds()
            try:
                found.read(spec, run, (after[0] - before[0], after[1] - before[1]), options)
                break
            except readings.UnreadableRun as why:
                if attempt == ATTEMPTS:  # the default's readings stand in, and it is said why
                    found.unread[spec.name] = f"{why} ({ATTEMPTS} tries)"
        if progress is not None:
            progress(done, len(runs), spec.name)
    return _assemble(found, machine(), cpus, quick=quick, what=f"{len(runs)} live runs of "
                     f"{workers} workers x {connections} connections")


def _assemble(found: _Readings, facts: dict, cpus: int, *, quick: bool, what: str) -> Calibration:
    """The calibration from the readings; what they lack is the default's (and said so)."""
    fallback = _fallback()
    borrowed = []
    pools = {name: tuple(runs) for name, runs in found.pools.items()}
    herds = {name: tuple(runs) for name, runs in found.herds.items()}
    for name, runs in fallback.pools.items():
        if name not in pools:
            pools[name] = runs
            borrowed.append(name)
    for name, runs in fallback.herds.items():
        if name not in herds:
            herds[name] = runs
            borrowed.append(f"herd {name}")
    client_us, worker_us = (readings.per_connection(found.cpu_use) if found.cpu_use else
                            (fallback.client_cpu_us, fallback.worker_cpu_us))
    for label, mine in (("cores", found.cores["cores"]),
                        ("thread_cores", found.cores["thread_cores"]), ("gil_us", found.gil)):
        if not mine:
            borrowed.append(label)
    calibration = Calibration(
        source="measured", created=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=facts, load_average=tuple(round(float(x), 2) for x in
                                          np.mean(found.loads or [os.getloadavg()], axis=0)),
        cpus=cpus, client_cpu_us=round(client_us, 1), worker_cpu_us=round(worker_us, 1),
        cores=tuple(found.cores["cores"]) or fallback.cores,
        thread_cores=tuple(found.cores["thread_cores"]) or fallback.thread_cores,
        spin_spread=tuple(found.spread) or fallback.spin_spread,
        thread_switches=tuple(found.switches) or fallback.thread_switches,
        gil_us=tuple(found.gil) or fallback.gil_us,
        open_gil_us=fallback.open_gil_us, timer_slack_us=timer_slack_us(),
        pools=pools, herds=herds, mode="quick" if quick else "full", unread=dict(found.unread),
        note=what + (f"; from the default: {', '.join(sorted(borrowed))}" if borrowed else ""))
    if found.open_runs:
        fitted = tuple(_fit_open(calibration, pool, p50, options)
                       for pool, p50, options in found.open_runs)
        calibration = dataclasses.replace(calibration, open_gil_us=fitted)
    elif "open_gil_us" not in calibration.note:
        calibration = dataclasses.replace(calibration, note=calibration.note + (
            "; " if borrowed else "; from the default: ") + "open_gil_us")
    return calibration


def _fit_open(calibration: Calibration, pool: Pool, live_p50_us: float, options: dict) -> float:
    """The open loop's client time per connection that gives the live run's median latency.

    The model replays the calibration's open-loop run (its own pool, two
    seeds) for a guess of the time and halves the interval until the
    simulated median latency matches the live one within 3 % (or 10 steps).
    """
    from .bands import measure
    from .engine import Scenario, Simulation

    scenario = Scenario(strategy=options["strategy"], workers=options["workers"],
                        connections=options["connections"], rate=options["rate"])
    mine = dataclasses.replace(calibration, pools={**calibration.pools,
                                                   "accept-process-open": (pool,)})

    def simulated_p50(gil_us: float) -> float:
        trial = dataclasses.replace(mine, open_gil_us=(gil_us,))
        values = []
        for seed in range(2):
            events, client = Simulation(scenario, trial, np.random.default_rng(seed)).run()
            values.append(measure(events, client, scenario.workers)["p50_ms"] * 1e3)
        return float(np.median(values))

    low, high = 0.0, 2000.0
    if simulated_p50(low) >= live_p50_us:
        return 0.0
    for _ in range(10):
        middle = (low + high) / 2
        value = simulated_p50(middle)
        if abs(value - live_p50_us) <= 0.03 * live_p50_us:
            return round(middle, 1)
        low, high = (middle, high) if value < live_p50_us else (low, middle)
    return round((low + high) / 2, 1)


# --------------------------------------------------------------------------- keeping it


def cache_path() -> Path:
    """Where the calibration is kept: ``$ACCEPTLAB_CACHE/calibration.json`` when that is set
    (the test suite sets it, so that its calibrations never replace the learner's), else
    ``$XDG_CACHE_HOME/acceptlab/calibration.json`` (``~/.cache/acceptlab/...`` without it)."""
    folder = os.environ.get("ACCEPTLAB_CACHE")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "acceptlab")
    return Path(folder) / "calibration.json"


def save(calibration: Calibration, path: str | os.PathLike | None = None) -> Path:
    """Write ``calibration`` as JSON (to :func:`cache_path` unless ``path`` is given); return the path."""
    target = Path(path) if path is not None else cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(calibration.as_dict()) + "\n")
    temporary.replace(target)  # a reader never sees half a file
    return target


def _read(source: Path) -> dict:
    try:
        return json.loads(source.read_text())
    except ValueError as exc:
        raise ValueError(f"{source} is not a calibration the kit can read ({exc}); "
                         f"run `acceptlab calibrate` again") from None


def load(path: str | os.PathLike | None = None) -> Calibration | None:
    """The calibration saved at ``path`` (default :func:`cache_path`), or None if there is none.

    A file that cannot be read as a calibration (or one an older kit wrote)
    raises ``ValueError`` naming it.
    """
    source = Path(path) if path is not None else cache_path()
    if not source.exists():
        return None
    try:
        return Calibration.from_dict(_read(source))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source} is not a calibration the kit can read ({exc}); "
                         f"run `acceptlab calibrate` again") from None


def kept_with(found: Calibration, path: str | os.PathLike | None = None) -> Calibration:
    """``found`` with the runs of the calibration saved at ``path`` (default: the cache) added,
    when that one is of this machine (:meth:`~acceptlab.model.pools.Calibration.merged`).

    A saved file an older kit wrote, or none, leaves ``found`` as it is.
    """
    try:
        saved = load(path)
    except ValueError:
        return found
    if saved is None or saved.source != "measured":
        return found
    return found.merged(saved)


def current() -> Calibration:
    """The calibration :func:`acceptlab.model.predict` uses: the saved one, else :func:`default`.

    A calibration an older kit saved (another format) is passed over for the
    default, as if none were saved; ``acceptlab calibrate`` replaces it.
    """
    source = cache_path()
    if source.exists() and _read(source).get("version") != VERSION:
        return default()
    return load() or default()


def _fallback() -> Calibration:
    """The default, or (while the kit's default is being remade) an empty stand-in."""
    try:
        return default()
    except (ValueError, OSError):
        return Calibration(source="none", created="", machine={}, load_average=(0, 0, 0), cpus=1,
                           client_cpu_us=100.0, worker_cpu_us=100.0, cores=(1.0,),
                           thread_cores=(1.0,), spin_spread=(1.0,), thread_switches=(0.0,),
                           gil_us=(200.0,), open_gil_us=(0.0,), timer_slack_us=50.0,
                           pools={}, herds={})


def default() -> Calibration:
    """The documented default: the reference machine's numbers (see :mod:`acceptlab.model.defaults`)."""
    from .defaults import DEFAULT

    return Calibration.from_dict(DEFAULT)
