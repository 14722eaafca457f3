"""What this machine's scheduler does, measured by the kit's own runs: the model's time parameters.

The rules of :mod:`acceptlab.model.rules` say *who* may take a connection;
*when* each actor gets there is measured here, from small live runs on
loopback, and kept as samples (microseconds), not means, because the race
that decides ``blocking`` without a gap lives in the tails:

* **the wake-up latency**: from a connection's arrival (the client's
  ``t_connected_ns``) to the woken worker running (its ``t_wake_ns``),
  measured where only a sleeper can take it; in a connection ``lead`` before
  ``t_connected_ns`` the connection is already queued (connect() returns a
  little after the kernel queued it, so a fast sleeper can wake "before" it);
* **the returning worker**: from its client's hang-up (client ``t_done_ns``)
  to the end of its conversation (``t_done_ns``: the *lag*), and from there
  to being back in ``accept()`` (the next row's ``t_wait_ns``: the *return*);
* **the client**: the connect (``t_connected_ns - t_start_ns``), the talk
  (``t_done_ns - t_accept_ns``), the pause before its next connection;
* **the race without a gap**: after each connection, was the worker that
  served it back before the client's next connection arrived (*prompt*), or
  later, and then did it take that connection without sleeping (*late-win*)
  or did a woken sleeper get there first (*late-lose*)?  Whether it is late
  is the scheduler's choice (is there a free CPU for it when its client hangs
  up?), so it is kept as a probability per run, with the run-to-run spread.

Each live run becomes one :class:`Pool` (one state of the machine); a
simulated run draws all its times from one pool, so the model's bands carry
the spread between runs as well as within them.  The herd's race (who of
the woken pollers wins) is kept as a :class:`HerdTable` per run.

:func:`calibrate` measures (a few seconds); :func:`save` and :func:`load`
keep the result in the user's cache (``$XDG_CACHE_HOME/acceptlab/
calibration.json``); :func:`current` is what :func:`acceptlab.model.predict`
uses: the saved calibration, or :func:`default` (numbers measured on the
kit's reference machine, a 2-core VM) when there is none.
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
import pandas as pd

__all__ = ["Pool", "HerdTable", "Calibration", "calibrate", "save", "load", "current",
           "default", "cache_path", "measure_pool", "measure_herd", "CALIBRATION_RUNS"]

SAMPLES = tuple[float, ...]


def _us(nanoseconds: Any) -> np.ndarray:
    """A nanosecond column or array as float microseconds (missing values become NaN)."""
    values = pd.to_numeric(pd.Series(nanoseconds), errors="coerce").astype("Float64")
    return (values.to_numpy(dtype=float, na_value=np.nan)) / 1e3


def _kept(values: Any) -> SAMPLES:
    """Finite values, rounded to 0.1 µs (the clock's real resolution is coarser), as a tuple."""
    array = np.asarray(values, dtype=float)
    return tuple(float(v) for v in np.round(array[np.isfinite(array)], 1))


def _aligned(values: Any) -> SAMPLES:
    """Every value (NaN kept, so that columns stay aligned), rounded to 0.1 µs, as a tuple."""
    return tuple(float(v) for v in np.round(np.asarray(values, dtype=float), 1))


@dataclass(frozen=True)
class Pool:
    """What one live run measured about time, in microseconds (see the module docstring).

    ``regime`` is ``'busy'`` (back-to-back connections: the CPUs are awake)
    or ``'idle'`` (a gap between connections: a woken worker's CPU may have
    to wake up first); ``kind`` is the workers' kind.
    """

    kind: str
    regime: str
    # One entry per connection, aligned: a simulated connection takes all three from one live
    # connection, so a hiccup that hit one phase of one connection is not copied into three.
    connect: SAMPLES  # client t_connected - t_start
    talk: SAMPLES  # client t_done - the worker's t_accept
    woke: SAMPLES  # t_wake - t_connected where a sleeper took it, else NaN
    lead: float  # how long before t_connected a connection is already queued (>= 0)
    lag_prompt: SAMPLES  # worker t_done - client t_done, when it was back before the next arrival
    lag_late: SAMPLES  # the same, when it was back after it
    ret: SAMPLES  # the worker's next t_wait - its t_done
    pause: SAMPLES  # client: next t_start - t_done - gap (the pause's overshoot, or the reconnect)
    p_late_win: float = 0.0  # returning worker late, and it took the next connection unslept
    p_late_lose: float = 0.0  # late, and a woken sleeper took it
    off_win: SAMPLES = ()  # late-win: the worker's t_wait - the next connection's t_connected
    off_lose: SAMPLES = ()  # late-lose: the same
    stray: float = 0.0  # wakeups per accept beyond what the rule explains (gap runs)

    @property
    def p_late(self) -> float:
        return self.p_late_win + self.p_late_lose


@dataclass(frozen=True)
class HerdTable:
    """Who wins a herd's race, from one live run of a strategy that wakes every idle waiter.

    ``ranks``: for each connection a sleeper won among two or more, the
    winner's place among the sleepers, from 0 (first) to 1 (last), in the
    order of the family's wait queue: for ``poll`` the order they began to
    wait (its ``norm_rank``, :func:`acceptlab.analysis.wake_order_ranks`:
    each poll() queues its waiter anew), for ``epoll`` the order the workers
    registered their epolls (slot order, fixed at start-up); ``p_eagain``: the share of the woken
    losers whose wait came back to Python with EAGAIN (the others went back
    to sleep inside the kernel, a wakeup without a return).
    """

    family: str
    regime: str
    ranks: SAMPLES
    p_eagain: float


@dataclass(frozen=True)
class Calibration:
    """The model's time parameters for one machine, and where they came from.

    Args (fields):
        source: ``'measured'`` (by :func:`calibrate`) or ``'default'``.
        created: when (ISO 8601).
        machine: :func:`acceptlab.lab.experiment.machine` of the machine measured.
        load_average: the 1, 5 and 15-minute load averages while measuring.
        cpus: the machine's cores.
        cpu_share: the share of those cores a CPU-bound worker got (other
            programs take the rest): measured with ``spin`` work.
        client_cpu_us: CPU time of the client process per connection (its
            threads share one GIL), from ``getrusage`` around the sequential runs.
        worker_cpu_us: CPU time of the worker processes per connection.
        cores: how many cores the kit's own work got in a closed loop of 8
            clients: (client + worker CPU per connection) x connections per second.
        loaded_lag: per closed-loop run, each worker's lag (its ``t_done`` less
            its client's): how late a returning worker is when every core is
            wanted (it waits for one while the client threads go on).
        pools: ``'process-busy'``, ``'process-idle'``, ``'thread-busy'``: the
            runs measured in each state, one :class:`Pool` each.
        herds: ``'poll-busy'``, ``'poll-idle'``, ``'epoll-busy'``,
            ``'epoll-idle'``: one :class:`HerdTable` per run.
        note: anything worth knowing about how it was measured.
    """

    source: str
    created: str
    machine: Mapping[str, Any]
    load_average: tuple[float, float, float]
    cpus: int
    cpu_share: float
    client_cpu_us: float
    worker_cpu_us: float
    cores: float
    loaded_lag: tuple[SAMPLES, ...]
    pools: Mapping[str, tuple[Pool, ...]]
    herds: Mapping[str, tuple[HerdTable, ...]]
    note: str = ""

    def pools_for(self, kind: str, regime: str) -> tuple[Pool, ...]:
        """The pools of ``kind`` in ``regime``; threads without idle runs borrow the processes'."""
        return (self.pools.get(f"{kind}-{regime}") or self.pools.get(f"process-{regime}")
                or self.pools["process-busy"])

    def herd_for(self, family: str, regime: str) -> tuple[HerdTable, ...]:
        return self.herds.get(f"{family}-{regime}") or self.herds[f"poll-{regime}"]

    def describe(self) -> str:
        """One line: which calibration this is."""
        load = ", ".join(f"{x:.2f}" for x in self.load_average)
        return (f"{self.source} calibration of {self.created} ({self.machine.get('cpus')} cores, "
                f"kernel {self.machine.get('kernel')}, load average {load})")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        pools = {name: tuple(Pool(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in pool.items()}) for pool in runs)
                 for name, runs in data["pools"].items()}
        herds = {name: tuple(HerdTable(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in table.items()}) for table in runs)
                 for name, runs in data["herds"].items()}
        return cls(source=data["source"], created=data["created"], machine=dict(data["machine"]),
                   load_average=tuple(data["load_average"]), cpus=int(data["cpus"]),
                   cpu_share=float(data["cpu_share"]), client_cpu_us=float(data["client_cpu_us"]),
                   worker_cpu_us=float(data["worker_cpu_us"]), cores=float(data["cores"]),
                   loaded_lag=tuple(tuple(lags) for lags in data["loaded_lag"]),
                   pools=pools, herds=herds, note=data.get("note", ""))


# --------------------------------------------------------------------------- reading a live run


def _next_wait_after(events: pd.DataFrame, workers: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """For each (worker, moment): that worker's first ``t_wait_ns`` after the moment (NaN: none)."""
    result = np.full(len(moments), np.nan)
    for worker in np.unique(workers):
        waits = np.sort(_us(events.loc[events["worker"] == worker, "t_wait_ns"]))
        mine = workers == worker
        index = np.searchsorted(waits, moments[mine], side="right")
        found = index < len(waits)
        picked = np.full(mine.sum(), np.nan)
        picked[found] = waits[index[found]]
        result[mine] = picked
    return result


def measure_pool(run: Any, *, regime: str) -> Pool:
    """One :class:`Pool` from a live run of ``blocking`` with a sequential client.

    The run's client must be sequential (``concurrency=1``), so that
    connection ``k + 1`` follows ``k``; its ``gap`` (in ``run.meta``) is
    subtracted from the pauses.

    Args:
        run: an :class:`acceptlab.lab.experiment.Run` (or anything with ``events``,
            ``client`` and ``meta``).
        regime: ``'busy'`` for a run without a gap, ``'idle'`` with one.
    """
    from .. import analysis

    joined = analysis.join_client_events(run.client, run.events)
    joined = joined.sort_values("t_start_ns", kind="stable").reset_index(drop=True)
    if len(joined) < 8:
        raise ValueError(f"a calibration run needs at least 8 joined connections, "
                         f"not {len(joined)}")
    gap_us = float(run.meta.get("gap") or 0.0) * 1e6
    start, connected = _us(joined["t_start_ns"]), _us(joined["t_connected_ns"])
    wake_at, accept = _us(joined["t_wake_ns"]), _us(joined["t_accept_ns"])
    client_done, worker_done = _us(joined["t_done_ns_client"]), _us(joined["t_done_ns_event"])
    worker = pd.to_numeric(joined["worker_event"]).to_numpy(dtype="int64")
    slept = pd.to_numeric(joined["nvcsw"]).fillna(0).to_numpy() >= 1

    woke = np.where(slept, wake_at - connected, np.nan)
    wake = woke[slept]
    # A sleeper on an awake CPU runs a few µs after the connection is queued, so the earliest
    # wake-ups (their 10th percentile: robust to a client descheduled for milliseconds) say
    # how long before t_connected the kernel had queued it.
    lead = max(0.0, -float(np.nanpercentile(wake, 10))) if len(wake) else 0.0
    back = _next_wait_after(run.events, worker, worker_done)  # R: the worker back in accept()
    lag = worker_done - client_done

    # The race after connection k: where was its worker when connection k+1 arrived?
    took_next_unslept = (worker[1:] == worker[:-1]) & ~slept[1:]
    after_arrival = back[:-1] >= connected[1:]
    late_win = took_next_unslept
    late_lose = ~took_next_unslept & after_arrival
    prompt = ~late_win & ~late_lose
    pairs = max(1, len(late_win))
    offset = back[:-1] - connected[1:]

    accepted = int((run.events["outcome"] == "accepted").sum())
    switches = pd.to_numeric(run.events["nvcsw"]).dropna()
    stray = max(0.0, float(switches[switches >= 0].sum()) / accepted - 1) if regime == "idle" else 0.0
    return Pool(
        kind=str(run.meta.get("kind", "process")), regime=regime,
        connect=_aligned(connected - start), talk=_aligned(client_done - accept),
        woke=_aligned(woke), lead=round(lead, 1),
        lag_prompt=_kept(lag[:-1][prompt]), lag_late=_kept(lag[:-1][late_win | late_lose]),
        ret=_kept(back - worker_done), pause=_kept(start[1:] - client_done[:-1] - gap_us),
        p_late_win=round(float(late_win.sum()) / pairs, 4),
        p_late_lose=round(float(late_lose.sum()) / pairs, 4),
        off_win=_kept(offset[late_win]), off_lose=_kept(offset[late_lose]),
        stray=round(stray, 4))


def measure_herd(run: Any, *, family: str, regime: str) -> HerdTable:
    """One :class:`HerdTable` from a live run of a herd strategy (``poll``, ``epoll``...).

    Args:
        run: the live run.
        family: ``'poll'`` (the waiters re-register on every wait) or
            ``'epoll'`` (registered once, per worker).
        regime: ``'busy'`` or ``'idle'`` (see :class:`Pool`).
    """
    from .. import analysis

    events = run.events
    ranks = analysis.wake_order_ranks(events)
    won = analysis.accepted(events)
    slept = pd.to_numeric(won["nvcsw"]).fillna(0).to_numpy() >= 1
    raced = slept & (ranks["n_waiting"].to_numpy() >= 2)
    place = (ranks["norm_rank"].to_numpy() if family == "poll" else
             _place_by_slot(events, won))
    switches = pd.to_numeric(events["nvcsw"]).dropna()
    losers = float(switches[switches >= 0].sum()) - float(slept.sum())
    eagain = float((events["outcome"] == "eagain").sum())
    return HerdTable(family=family, regime=regime,
                     ranks=_kept(place[raced]),
                     p_eagain=round(min(1.0, eagain / losers) if losers > 0 else 0.0, 4))


def _place_by_slot(events: pd.DataFrame, won: pd.DataFrame) -> np.ndarray:
    """Each winner's place (0 to 1) among the workers waiting when it woke, in slot order.

    A worker waits at the winner's ``t_wake`` when one of its rows began at or
    before it and had not yet ended (the winner counts itself); NaN for a lone waiter.
    """
    when = _us(won["t_wake_ns"])
    winner = pd.to_numeric(won["worker"]).to_numpy(dtype="int64")
    slots = np.unique(pd.to_numeric(events["worker"]).to_numpy(dtype="int64"))
    waiting = np.zeros((len(won), len(slots)), dtype=bool)
    for j, slot in enumerate(slots):
        rows = events[events["worker"] == slot].sort_values("t_wait_ns", kind="stable")
        begin, end = _us(rows["t_wait_ns"]), _us(rows["t_wake_ns"])
        end = np.where(np.isnan(end), np.inf, end)
        last = np.searchsorted(begin, when, side="right") - 1
        waiting[:, j] = (last >= 0) & (when < end[np.maximum(last, 0)])
    waiting[np.arange(len(won)), np.searchsorted(slots, winner)] = True
    ahead = (waiting & (slots[None, :] < winner[:, None])).sum(axis=1)
    n = waiting.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, ahead / np.maximum(n - 1, 1), np.nan)


def measure_lag(run: Any) -> SAMPLES:
    """Each connection's worker lag (worker ``t_done`` - client ``t_done``, µs) in any run."""
    from .. import analysis

    joined = analysis.join_client_events(run.client, run.events)
    return _kept(_us(joined["t_done_ns_event"]) - _us(joined["t_done_ns_client"]))


def measure_rate(run: Any) -> float:
    """Connections per µs of a run: its ok connections over their span."""
    ok = run.client[run.client["ok"].astype(bool)]
    span = float(_us(ok["t_done_ns"]).max() - _us(ok["t_start_ns"]).min())
    return len(ok) / span if span > 0 else float("nan")


def per_connection(use: list[tuple[int, float, float]]) -> tuple[float, float]:
    """CPU µs per connection of the client and of the workers, from ``(connections, client s,
    workers s)`` of runs of two or more sizes: the slope, so a pool's start and stop drop out
    (a slope the noise made no larger than zero falls back to the plain ratio)."""
    n = np.array([u[0] for u in use], dtype=float)
    ratios = [float(np.sum([u[k] for u in use]) / n.sum() * 1e6) for k in (1, 2)]
    if len(set(n)) < 2:
        return ratios[0], ratios[1]
    slopes = [float(np.polyfit(n, [u[k] for u in use], 1)[0] * 1e6) for k in (1, 2)]
    return tuple(slope if slope > 0 else ratio for slope, ratio in zip(slopes, ratios))


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process (the client's threads) and of its reaped children
    (the worker processes, reaped when the pool stops)."""
    mine, children = (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    return mine.ru_utime + mine.ru_stime, children.ru_utime + children.ru_stime


def measure_cpu_share(run: Any, *, spin_ms: float, questions: int) -> float:
    """The share of the machine's cores that ``spin`` work got in a saturated run (0-1]."""
    ok = run.client[run.client["ok"].astype(bool)]
    span = float(_us(ok["t_done_ns"]).max() - _us(ok["t_start_ns"]).min())
    busy = len(ok) * questions * spin_ms * 1e3  # µs of CPU the workers spun
    cpus = int(run.meta.get("cpus") or os.cpu_count() or 1)
    workers = int(run.meta.get("workers", cpus))
    return round(min(1.0, busy / span / min(cpus, workers)), 4) if span > 0 else 1.0


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class CalibrationRun:
    """One live run of the calibration: what to run, and what to read from it."""

    name: str  # pool or table it feeds: 'process-busy', 'poll-idle', 'client', 'cpu'...
    options: Mapping[str, Any] = field(default_factory=dict)  # for run_experiment


_ROUND: tuple[CalibrationRun, ...] = (
    CalibrationRun("process-busy", dict(strategy="blocking", gap=0.0)),
    CalibrationRun("process-idle", dict(strategy="blocking", gap=0.001)),
    CalibrationRun("thread-busy", dict(strategy="blocking", kind="thread", gap=0.0)),
    CalibrationRun("poll-busy", dict(strategy="poll", gap=0.0)),
    CalibrationRun("poll-idle", dict(strategy="poll", gap=0.001)),
    CalibrationRun("epoll-busy", dict(strategy="epoll", gap=0.0)),
    CalibrationRun("epoll-idle", dict(strategy="epoll", gap=0.001)),
    CalibrationRun("process-busy", dict(strategy="blocking", gap=0.0, connections=300)),
)
_LOADED: tuple[CalibrationRun, ...] = (
    CalibrationRun("client", dict(strategy="blocking", concurrency=8, connections=300)),
    CalibrationRun("cpu", dict(strategy="blocking", concurrency=8, work="spin:1", connections=32)),
)
CALIBRATION_RUNS: tuple[CalibrationRun, ...] = (*_ROUND, *_LOADED, *_ROUND, *_LOADED, *_ROUND[1:7])
"""The live runs :func:`calibrate` makes, in order (4 process workers, loopback, ``zen``).

In rounds, so that the runs of each kind are spread over the seconds calibrating takes
and their pools see the machine in more than one state (a shared machine's load moves).

Sequential ``blocking`` runs with and without a 1 ms gap give the time pools (the runs
without a gap come in two sizes, so that the CPU per connection is the slope between
them, without what starting and stopping a pool costs); ``poll`` and ``epoll`` runs give
the herd's race; a closed loop of 8 clients gives the cores the kit's work gets; ``spin``
work gives the share of a core a CPU-bound worker gets."""

_SPIN_MS, _QUESTIONS = 1.0, 3  # the 'cpu' run's spin per request, zen's questions per connection


def calibrate(*, workers: int = 4, connections: int = 150, runs: tuple[CalibrationRun, ...]
              = CALIBRATION_RUNS, progress: Callable[[int, int, str], None] | None = None,
              run_experiment: Callable[..., Any] | None = None) -> Calibration:
    """Measure this machine with small live runs (a few seconds) and return a :class:`Calibration`.

    Nothing is saved: :func:`save` does that (``acceptlab calibrate`` does both).

    Args:
        workers: process workers per run.
        connections: connections per run (the ``cpu`` run makes fewer).
        runs: the runs to make (default :data:`CALIBRATION_RUNS`).
        progress: called as ``progress(done, total, name)`` after each run.
        run_experiment: the function that makes a run (the kit's by default;
            a test may pass a fake).
    """
    from ..lab.experiment import machine

    if run_experiment is None:
        from ..lab.experiment import run_experiment
    pools: dict[str, list[Pool]] = {}
    herds: dict[str, list[HerdTable]] = {}
    rates, cpu_share, cpu_use, loaded_lag = [], [], [], []
    loads = []
    for done, spec in enumerate(runs, 1):
        options = {"workers": workers, "kind": "process", "connections": connections,
                   **spec.options}
        loads.append(os.getloadavg())
        before = _cpu_seconds()
        run = run_experiment(**options)
        after = _cpu_seconds()
        kind_regime = spec.name.split("-")
        if spec.name == "process-busy":
            cpu_use.append((len(run.client), after[0] - before[0], after[1] - before[1]))
        if spec.name == "client":
            rates.append(measure_rate(run))
            loaded_lag.append(measure_lag(run))
        elif spec.name == "cpu":
            cpu_share.append(measure_cpu_share(run, spin_ms=_SPIN_MS, questions=_QUESTIONS))
        elif kind_regime[0] in ("poll", "epoll"):
            herds.setdefault(spec.name, []).append(
                measure_herd(run, family=kind_regime[0], regime=kind_regime[1]))
        else:
            pools.setdefault(spec.name, []).append(measure_pool(run, regime=kind_regime[1]))
        if progress is not None:
            progress(done, len(runs), spec.name)
    facts = machine()
    fallback = default() if not (pools and herds and rates and cpu_share and cpu_use) else None
    cpus = int(facts.get("cpus") or 1)
    client_us, worker_us = (per_connection(cpu_use) if cpu_use else
                            (fallback.client_cpu_us, fallback.worker_cpu_us))
    cores = (min(float(cpus), (client_us + worker_us) * float(np.median(rates))) if rates
             else fallback.cores)
    return Calibration(
        source="measured", created=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=facts, load_average=tuple(round(float(x), 2) for x in np.mean(loads, axis=0)),
        cpus=cpus,
        cpu_share=round(float(np.median(cpu_share)), 3) if cpu_share else fallback.cpu_share,
        client_cpu_us=round(client_us, 1), worker_cpu_us=round(worker_us, 1),
        cores=round(cores, 3),
        loaded_lag=tuple(loaded_lag) if loaded_lag else fallback.loaded_lag,
        pools={name: tuple(found) for name, found in pools.items()} or dict(fallback.pools),
        herds={name: tuple(found) for name, found in herds.items()} or dict(fallback.herds),
        note=f"{len(runs)} live runs of {workers} process workers x {connections} connections"
             + ("" if fallback is None else "; what they did not measure is the default's"))


# --------------------------------------------------------------------------- keeping it


def cache_path() -> Path:
    """Where the calibration is kept: ``$XDG_CACHE_HOME/acceptlab/calibration.json``
    (``~/.cache/acceptlab/calibration.json`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "acceptlab" / "calibration.json"


def save(calibration: Calibration, path: str | os.PathLike | None = None) -> Path:
    """Write ``calibration`` as JSON (to :func:`cache_path` unless ``path`` is given); return the path."""
    target = Path(path) if path is not None else cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(calibration.as_dict()) + "\n")
    temporary.replace(target)  # a reader never sees half a file
    return target


def load(path: str | os.PathLike | None = None) -> Calibration | None:
    """The calibration saved at ``path`` (default :func:`cache_path`), or None if there is none.

    A file that cannot be read as a calibration raises ``ValueError`` naming it.
    """
    source = Path(path) if path is not None else cache_path()
    if not source.exists():
        return None
    try:
        return Calibration.from_dict(json.loads(source.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source} is not a calibration the kit can read ({exc}); "
                         f"run `acceptlab calibrate` again") from None


def current() -> Calibration:
    """The calibration :func:`acceptlab.model.predict` uses: the saved one, else :func:`default`."""
    return load() or default()


def default() -> Calibration:
    """The documented default: the reference machine's numbers (see :mod:`acceptlab.model.defaults`)."""
    from .defaults import DEFAULT

    return Calibration.from_dict(DEFAULT)
