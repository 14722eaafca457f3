"""One simulated run: clients, workers, the accept queue(s) and a clock, in microseconds.

A run is a sequence of events on one clock.  The kernel's part (who is woken,
who may take a connection) is the strategy's :class:`~acceptlab.model.rules.Rule`;
everything else happens here, the same for every strategy:

1. a client **starts** a connection; ``connect`` microseconds later the
   connection **arrives** in an accept queue (``lead`` before the client's
   ``t_connected_ns``: connect() returns a little after the kernel queued it);
2. the rule wakes someone, who **runs** a wake-up latency later and takes the
   connection if it is still queued (``Simulation.take``);
3. the worker **converses**: its work (``sleep`` releases everything; ``spin``
   needs a core, or with threads the one GIL) plus the talk the calibration
   measured; then the client is **done**;
4. the worker comes **back** to wait.  Whether it is back before the client's
   next connection arrives is the race the calibration measured: prompt,
   or late (its CPU was taken) and then it either takes that connection
   without sleeping (late-win) or finds a woken sleeper got there first.

Every wait is one row of an events table with the kit's own columns
(``worker, t_wait_ns, t_wake_ns, t_accept_ns, t_done_ns, outcome, nvcsw``),
and every connection one row of a client table (``t_start_ns, t_done_ns,
ok``), so :mod:`acceptlab.analysis` measures a simulated run exactly as it
measures a live one.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..server.work import Work, parse_work
from .calibration import Calibration, HerdTable, Pool
from .rules import NotModelled, Rule, rule_for

__all__ = ["Scenario", "Simulation", "IDLE_AFTER_US", "QUESTIONS"]

IDLE_AFTER_US = 300.0
"""A connection that starts this long after the last activity finds the CPUs asleep (the
'idle' pools).  An assumption: an idle vCPU halts after a short poll (KVM's default
``halt_poll_ns`` is 200 µs), and waking it costs what the gap runs measured."""

QUESTIONS = {"zen": 3, "lancelot": 3}
"""Requests per connection of the protocols the model covers (their conversations are alike;
the calibration holds ``zen``'s).  ``http`` closes from the server's side after one reply,
a different race the calibration does not measure."""

AWAY, ASLEEP, WOKEN, BUSY = range(4)  # a worker's state


@dataclass(frozen=True)
class Scenario:
    """What to simulate: the pool, the load and the work, as ``acceptlab run`` takes them.

    Args:
        strategy: a strategy of :data:`acceptlab.model.rules.RULES`.
        workers: worker slots.
        connections: connections the clients make.
        gap: seconds each client pauses between connections.
        concurrency: closed-loop clients (1: sequential).
        rate: open loop: Poisson arrivals per second (instead of a closed loop).
        work: ``'none'``, ``'sleep:MS'``, ``'spin:MS'``, or one per worker
            (``work[slot % len(work)]``, as ``WorkerPool`` does).
        kind: ``'process'`` or ``'thread'``.
        protocol: ``'zen'`` or ``'lancelot'``.
    """

    strategy: str
    workers: int
    connections: int
    gap: float = 0.0
    concurrency: int = 1
    rate: float | None = None
    work: tuple[str, ...] = ("none",)
    kind: str = "process"
    protocol: str = "zen"

    def __post_init__(self) -> None:
        if isinstance(self.work, str):
            object.__setattr__(self, "work", (self.work,))
        object.__setattr__(self, "work", tuple(str(parse_work(w)) for w in self.work))
        if self.workers < 1 or self.connections < 1 or self.concurrency < 1 or self.gap < 0 \
                or (self.rate is not None and self.rate <= 0):
            raise ValueError("a scenario needs workers >= 1, connections >= 1, concurrency >= 1, "
                             "gap >= 0 and, if given, rate > 0")
        if self.kind not in ("process", "thread"):
            raise NotModelled(f"kind {self.kind!r} is not modelled (process and thread are)")
        if self.protocol not in QUESTIONS:
            raise NotModelled(f"protocol {self.protocol!r} is not modelled ({QUESTIONS.__doc__ or ''}"
                              f"the model covers {', '.join(QUESTIONS)})")
        rule_for(self.strategy, self.kind)  # raises NotModelled when there is no rule

    def work_of(self, slot: int) -> Work:
        return parse_work(self.work[slot % len(self.work)])


class _Draw:
    """Values drawn with replacement from one pool of samples, a batch at a time (fast)."""

    def __init__(self, values: tuple[float, ...], rng: np.random.Generator,
                 fallback: tuple[float, ...] = (0.0,)) -> None:
        self.values = np.asarray(values if len(values) else fallback, dtype=float)
        self.rng = rng
        self.batch: list[float] = []

    def __call__(self) -> float:
        if not self.batch:
            self.batch = self.values[self.rng.integers(0, len(self.values), 512)].tolist()
        return self.batch.pop()


class _Times:
    """The draws of one calibration pool (one live run's state of the machine)."""

    def __init__(self, pool: Pool, rng: np.random.Generator) -> None:
        self.pool = pool
        self.lead = pool.lead
        self.connects = np.asarray(pool.connect, dtype=float)
        self.talks = np.asarray(pool.talk, dtype=float)
        self.wokes = np.asarray(pool.woke, dtype=float)
        self.profile = _Draw(tuple(range(len(self.connects))), rng)  # a live connection's index
        self.wake = _Draw(tuple(self.wokes[np.isfinite(self.wokes)]), rng)
        self.lag_prompt = _Draw(pool.lag_prompt, rng, pool.lag_late or (0.0,))
        self.lag_late = _Draw(pool.lag_late, rng, pool.lag_prompt or (0.0,))
        self.ret = _Draw(pool.ret, rng)
        self.pause = _Draw(pool.pause, rng)
        self.off_win = _Draw(pool.off_win, rng, (0.0,))
        self.off_lose = _Draw(pool.off_lose, rng, (0.0,))



@dataclass
class _Client:
    """One closed-loop client (a thread of the client process)."""

    number: int
    ahead: tuple[str, int] | None = None  # the next connection's (regime, live profile), drawn early
    connect_wait: float | None = None  # its wait for a core, when it asked before its worker
    priority_until: float = -1.0  # a late-win worker of this client's last connection returns then


class Simulation:
    """One simulated run of ``scenario`` with times from ``calibration`` (see the module docstring).

    Use :meth:`run`, which returns ``(events, client)`` DataFrames in the
    kit's format.  The rule calls back the small methods below (``wake``,
    ``take``, ``asleep``, ...), which are the only ways it changes the run.
    """

    def __init__(self, scenario: Scenario, calibration: Calibration,
                 rng: np.random.Generator) -> None:
        self.scenario, self.calibration, self.rng = scenario, calibration, rng
        self.workers = scenario.workers
        self.now = 0.0
        self._events: list = []
        self._seq = itertools.count()
        # One live run's state of the machine per simulated run: the spread between runs.
        self.times = {regime: _Times(self._pick(calibration.pools_for(scenario.kind, regime)), rng)
                      for regime in ("busy", "idle")}
        self.overshoot = self.times["idle"].pause  # what a sleep adds to its nominal length
        self.loaded_lag = _Draw(self._pick(calibration.loaded_lag), rng) if \
            calibration.loaded_lag else self.times["busy"].lag_late
        self.regime = "busy"
        # Rows of the events table (one per wait) and each worker's current row.
        self.r_worker: list[int] = []
        self.r_wait: list[float] = []
        self.r_wake: list[float] = []
        self.r_accept: list[float] = []
        self.r_done: list[float] = []
        self.r_outcome: list[str] = []
        self.r_nvcsw: list[int] = []
        self.row = [-1] * self.workers
        self.state = [AWAY] * self.workers
        self.serving: list[int] = [-1] * self.workers  # the connection each worker holds
        # Connections: their client, times and regime.
        n = scenario.connections
        self.c_client = [-1] * n
        self.c_start = [np.nan] * n
        self.c_done = [np.nan] * n
        self.c_regime = ["busy"] * n
        self.c_profile = [0] * n  # which live connection's times this one follows
        self.started = 0
        self.queues: list[collections.deque[int]] = [collections.deque()
                                                     for _ in range(self.workers + 1)]
        self.last_activity = -1e9
        self.arrival_client = -1  # the client whose connection is being handed out now
        self.arrival_conn = -1
        self.clients: list[_Client] = []
        self.work = [scenario.work_of(slot) for slot in range(self.workers)]
        self._share_the_cpu(calibration)
        self.rule: Rule = rule_for(scenario.strategy, scenario.kind)(self)

    # ------------------------------------------------------------------ the run

    def run(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Simulate until every connection is done; return ``(events, client)``."""
        for worker in range(self.workers):  # each worker starts waiting, in slot order
            self.later(-10.0 * (self.workers - worker), self.back, worker)
        if self.scenario.rate is None:
            for number in range(min(self.scenario.concurrency, self.scenario.connections)):
                self.clients.append(_Client(number))
                self.later(0.0, self.start, number)
        else:
            gaps = self.rng.exponential(1e6 / self.scenario.rate, self.scenario.connections)
            for moment in np.cumsum(gaps) - gaps[0]:
                self.later(float(moment), self.start, -1)
        while self._events:
            self.now, _, action, argument = heapq.heappop(self._events)
            action(argument) if argument is not None else action()
        return self._tables()

    def later(self, moment: float, action: Callable, argument: int | None = None) -> None:
        """Do ``action(argument)`` at ``moment`` (µs)."""
        heapq.heappush(self._events, (moment, next(self._seq), action, argument))

    # ------------------------------------------------------------------ clients

    def start(self, client: int) -> None:
        """A client starts its next connection (``client`` -1: an open-loop arrival)."""
        if self.started >= self.scenario.connections:
            return
        conn = self.started
        self.started += 1
        regime = "idle" if self.now - self.last_activity >= IDLE_AFTER_US else "busy"
        ahead = self.clients[client].ahead if client >= 0 else None
        if ahead is not None:  # drawn when the previous connection's worker raced this one
            regime, profile = ahead
            self.clients[client].ahead = None
        else:
            profile = int(self.times[regime].profile())
        times = self.times[regime]
        connect = float(times.connects[profile])
        if self.contended:  # the client's part of connecting needs its GIL and a core
            asked = self.clients[client].connect_wait if client >= 0 else None
            connect += asked if asked is not None else self.cpu(self.now, self.cpu_connect,
                                                                gil=True)
            if client >= 0:
                self.clients[client].connect_wait = None
        connected = self.now + connect
        self.c_client[conn], self.c_start[conn], self.c_regime[conn] = client, self.now, regime
        self.c_profile[conn] = profile
        self.later(max(self.now, connected - times.lead), self.arrive, conn)

    def arrive(self, conn: int) -> None:
        """The connection is in an accept queue: the rule decides whom the kernel wakes."""
        queue = self.rule.queue_of_new()
        self.queues[queue].append(conn)
        self.regime, self.arrival_client = self.c_regime[conn], self.c_client[conn]
        self.arrival_conn = conn  # the first worker woken for it wakes as its live model did
        self.rule.arrived(queue)
        self.arrival_client = self.arrival_conn = -1

    def done(self, conn: int) -> None:
        """The client has its last reply and hangs up; its worker's return is decided here."""
        self.c_done[conn] = self.now
        self.last_activity = max(self.last_activity, self.now)
        worker = self._worker_of(conn)
        client = self.c_client[conn]
        times = self.times[self.c_regime[conn]]
        gap = self.scenario.gap * 1e6
        next_start = None
        if client >= 0 and self.started < self.scenario.connections:
            # a closed-loop client pauses (its gap, or only the time to reconnect), then goes on
            pause = gap + self.overshoot() if gap > 0 else times.pause()
            next_start = self.now + max(0.0, pause)
            self.later(next_start, self.start, client)
            if self.contended and gap == 0:
                # The client thread goes straight on to connect, holding its CPU; the worker
                # its hang-up woke must first be given one: the client asks first.
                self.clients[client].connect_wait = self.cpu(self.now, self.cpu_connect,
                                                             gil=True)
        self._return(worker, times, client, next_start)

    def _return(self, worker: int, times: _Times, client: int, next_start: float | None) -> None:
        """When the worker is back in its wait (the race of the module docstring, step 4).

        A sequential client: the scheduler may leave the worker without a CPU
        when its client hangs up (``p_late``, as often as the calibration's
        runs saw it).  The client's next connection then arrives first, and
        the calibration says how far after it the worker is back, and whether
        it beat the woken sleepers (late-win) or not (late-lose).  With a gap
        the client sleeps and the worker nearly always gets its CPU at once
        (the gap runs measure how rarely it does not).  Concurrent loads: the
        worker's last bit of CPU waits for a core like everyone's.
        """
        back = None
        if self.contended:  # every core wanted: as late as a closed loop's workers were
            self.cpu(self.now, self.cpu_return, gil=self._worker_gil)  # it uses a core, too
            back = self.now + self.loaded_lag() + times.ret()
            late = False
        else:
            late = self.rng.random() < times.pool.p_late
        if late and next_start is not None and self.scenario.concurrency == 1:
            profile = int(times.profile())  # the next connection's, drawn now
            self.clients[client].ahead = (times.pool.regime, profile)
            connected = next_start + float(times.connects[profile])
            if self.rng.random() * times.pool.p_late < times.pool.p_late_win:
                back = connected + times.off_win()
                self.clients[client].priority_until = back
            else:
                back = connected + times.off_lose()
        elif late:
            back = self.now + times.lag_late() + times.ret()
        if back is None:
            back = self.now + times.lag_prompt() + times.ret()
        back = max(self.now + 0.5, back)
        self.r_done[self.row[worker]] = back - 0.5
        self.rule.finished(worker)
        self.later(back, self.back, worker)

    def _worker_of(self, conn: int) -> int:
        return self.serving.index(conn)

    # ------------------------------------------------------------------ workers

    def back(self, worker: int) -> None:
        """The worker starts a new wait (a new row) and the rule says what it finds."""
        self.serving[worker] = -1
        self.state[worker] = AWAY
        self.last_activity = max(self.last_activity, self.now)
        self._new_row(worker)
        self.rule.returned(worker)

    def _new_row(self, worker: int) -> None:
        self.row[worker] = len(self.r_worker)
        self.r_worker.append(worker)
        self.r_wait.append(self.now)
        self.r_wake.append(np.nan)
        self.r_accept.append(np.nan)
        self.r_done.append(np.nan)
        self.r_outcome.append("waiting")
        self.r_nvcsw.append(0)

    def run_woken(self, worker: int) -> None:
        if self.state[worker] == WOKEN:
            self.rule.run(worker)

    def take(self, worker: int, queue: int) -> None:
        """``worker`` accepts the oldest connection of ``queue`` now, and converses."""
        conn = self.queues[queue].popleft()
        row = self.row[worker]
        self.r_wake[row] = self.now
        self.r_accept[row] = self.now + 0.5
        self.r_outcome[row] = "accepted"
        self.state[worker] = BUSY
        self.serving[worker] = conn
        self.rule.accepted(worker)
        work = self.work[worker]
        if work.kind == "spin":
            self._spin(worker, conn, self.scenario_questions())
        else:
            pause = 0.0
            if work.kind == "sleep":
                pause = sum(work.ms * 1e3 + self.overshoot()
                            for _ in range(self.scenario_questions()))
            self._talk(conn, self.now + pause)

    def scenario_questions(self) -> int:
        return QUESTIONS[self.scenario.protocol]

    def _spin(self, worker: int, conn: int, left: int) -> None:
        """One request's ``spin``: a core (processes) or the pool's GIL (threads), then the next."""
        if left == 0:
            self._talk(conn, self.now)
            return
        spin = self.work[worker].ms * 1e3
        stretch = 1 / max(0.05, self.calibration.cpu_share)  # what other programs leave us
        delay = self.cpu(self.now, spin, gil=self._worker_gil, stretch=stretch)
        self.later(self.now + delay + spin * stretch, lambda: self._spin(worker, conn, left - 1))

    def _talk(self, conn: int, moment: float) -> None:
        """The rest of the conversation, as the calibration measured it without work."""
        if self.contended:
            self.later(moment, self._talk_contended, conn)
        else:
            talk = float(self.times[self.c_regime[conn]].talks[self.c_profile[conn]])
            self.later(moment + talk, self.done, conn)

    def _talk_contended(self, conn: int, step: int = 0) -> None:
        """The talk, one question at a time, each waiting for a core (and a GIL) under load.

        A question is a round trip: the worker answers (a core; the GIL too for a thread),
        then the client reads it and asks the next (its GIL and a core).  Under a
        concurrent load each of those waits its turn, so the talk stretches with the load.
        """
        questions = self.scenario_questions()
        talk = float(self.times[self.c_regime[conn]].talks[self.c_profile[conn]]) / questions
        waits = (self.cpu(self.now, self.cpu_worker_talk / questions, gil=self._worker_gil)
                 + self.cpu(self.now, self.cpu_client_talk / questions, gil=True))
        if step + 1 < questions:
            self.later(self.now + talk + waits, lambda: self._talk_contended(conn, step + 1))
        else:
            self.later(self.now + talk + waits, self.done, conn)

    # ------------------------------------------------------------------ the CPU

    RETURN_SHARE, WAKE_SHARE = 0.15, 0.10
    """The shares of a worker's CPU per connection spent after its client hangs up (seeing the
    end, logging, coming back to wait) and on being woken and accepting: estimates; the rest
    goes with the talk."""

    def _share_the_cpu(self, calibration: Calibration) -> None:
        """Set up the CPU the actors share: ``cpus`` cores, and the client process's GIL.

        Only concurrent loads (a closed loop of several clients, an open loop)
        wait for them: a sequential run's measured times already hold the CPU
        its two actors used.  ``spin`` work always takes a core (processes) or
        the GIL (threads: a thread pool lives in the client's process).  Each
        connection costs the client ``client_cpu_us`` (a share before it is
        queued, as connect is of the sequential run's time) and the worker
        ``worker_cpu_us``; bursts take ``cpus / cores`` times their CPU time,
        the cores other programs left the kit in the calibration's closed loop.
        How late a returning worker is under such a load is not left to this
        first-come-first-served approximation (Linux lets the running client
        threads go on while the woken worker waits): it is drawn from what the
        calibration's closed loop measured (``loaded_lag``).
        """
        self.contended = self.scenario.concurrency > 1 or self.scenario.rate is not None
        self.gil_free = 0.0
        self.cores_free = [0.0] * max(1, calibration.cpus)
        self.stretch = calibration.cpus / max(0.1, min(float(calibration.cpus), calibration.cores))
        self._worker_gil = self.scenario.kind == "thread"
        busy = self.times["busy"]
        connect, talk = np.median(busy.connects), np.median(busy.talks)
        before = connect / (connect + talk) if connect + talk > 0 else 0.3
        self.cpu_connect = calibration.client_cpu_us * before
        self.cpu_client_talk = calibration.client_cpu_us - self.cpu_connect
        self.cpu_return = calibration.worker_cpu_us * self.RETURN_SHARE
        self.cpu_wake = calibration.worker_cpu_us * self.WAKE_SHARE
        self.cpu_worker_talk = calibration.worker_cpu_us - self.cpu_return - self.cpu_wake

    def cpu(self, moment: float, duration: float, *, gil: bool, stretch: float | None = None
            ) -> float:
        """Run ``duration`` µs of CPU from ``moment`` on the first free core (and the GIL).

        First come, first served.  Returns the wait before it could start.
        """
        core = min(range(len(self.cores_free)), key=self.cores_free.__getitem__)
        begin = max(moment, self.cores_free[core], self.gil_free if gil else moment)
        end = begin + duration * (self.stretch if stretch is None else stretch)
        self.cores_free[core] = end
        if gil:
            self.gil_free = end
        return begin - moment

    # ------------------------------------------------------------------ what a rule may call

    def queued(self, queue: int) -> int:
        """How many connections wait in ``queue``."""
        return len(self.queues[queue])

    def move(self, source: int, target: int) -> None:
        """Move the oldest connection of ``source`` to ``target`` (a dealer's hand-off)."""
        self.queues[target].append(self.queues[source].popleft())
        self.rule.arrived(target)

    def is_asleep(self, worker: int) -> bool:
        return self.state[worker] == ASLEEP

    def asleep(self, worker: int) -> None:
        """``worker`` sleeps in its wait (the rule keeps its place in line)."""
        self.state[worker] = ASLEEP

    def row_wait(self, worker: int) -> float:
        """When ``worker``'s current wait began (its row's ``t_wait``)."""
        return self.r_wait[self.row[worker]]

    def wake_latency(self, after_arrival: bool = True) -> float:
        """A wake-up latency (µs from the waker's action to the woken running)."""
        times = self.times[self.regime if after_arrival else "busy"]
        if after_arrival and self.arrival_conn >= 0:
            woke = times.wokes[self.c_profile[self.arrival_conn]]
            self.arrival_conn = -1
            if np.isfinite(woke):
                return max(1.0, times.lead + float(woke))
        return max(1.0, times.lead + times.wake())

    def wake(self, worker: int, *, after_arrival: bool = True) -> None:
        """The kernel wakes ``worker``: a wakeup counted; it runs a wake-up latency later.

        A worker woken for a connection whose client's previous worker is
        returning late-win runs after that worker is back (they waited for the
        same CPU, and the returning worker was first in line).
        """
        self.state[worker] = WOKEN
        self.count_wakeup(worker)
        moment = self.now + self.wake_latency(after_arrival)
        if self.contended:  # running takes a core, like everyone's CPU under this load
            moment += self.cpu(moment, self.cpu_wake, gil=self._worker_gil)
        if after_arrival and self.arrival_client >= 0 and self.rule.late_first:
            moment = max(moment, self.clients[self.arrival_client].priority_until + 1.0)
        self.later(moment, self.run_woken, worker)

    def count_wakeup(self, worker: int) -> None:
        """One more voluntary context switch in ``worker``'s current wait."""
        self.r_nvcsw[self.row[worker]] += 1

    def eagain(self, worker: int, *, now: bool = False) -> None:
        """``worker``'s wait comes back to Python with EAGAIN (now, or once it has run)."""
        self.state[worker] = AWAY
        moment = self.now if now else self.now + self.wake_latency()
        row = self.row[worker]
        self.r_outcome[row], self.r_wake[row] = "eagain", moment
        self.later(moment + self.times[self.regime].ret(), self.back, worker)

    def eagain_losers(self, losers: list[int], p_eagain: float) -> list[int]:
        """Which of a herd's ``losers`` come back with EAGAIN."""
        if not losers or p_eagain <= 0:
            return []
        lucky = self.rng.random(len(losers)) < p_eagain
        return [worker for worker, yes in zip(losers, lucky) if yes]

    def herd_table(self, family: str) -> "_Herd":
        tables = {regime: self._pick(self.calibration.herd_for(family, regime))
                  for regime in ("busy", "idle")}
        return _Herd(tables, self)

    def draw_rank(self, table: "_Herd") -> float:
        ranks = table.ranks
        return float(ranks[self.rng.integers(len(ranks))]) if len(ranks) else self.rng.random()

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick_uniform(self, n: int) -> int:
        return int(self.rng.integers(n))

    def _pick(self, choices: tuple):
        return choices[int(self.rng.integers(len(choices)))]

    # ------------------------------------------------------------------ the tables

    def _tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        nvcsw = np.asarray(self.r_nvcsw, dtype=float)
        outcome = np.asarray(self.r_outcome, dtype=object)
        waiting = outcome == "waiting"
        nvcsw[waiting] = np.nan  # a wait that never ended never logged its switches (as live)
        accepted = np.flatnonzero(outcome == "accepted")
        stray = self.times["idle"].pool.stray
        if stray > 0 and len(accepted):  # switches the rules do not explain, as the gap runs saw
            extra = self.rng.binomial(len(accepted), min(1.0, stray))
            np.add.at(nvcsw, self.rng.choice(accepted, extra), 1)

        def ns(values: list[float]) -> np.ndarray:
            return np.round(np.asarray(values, dtype=float) * 1e3 + 1e9)  # from 1 s: all positive

        events = pd.DataFrame({
            "worker": np.asarray(self.r_worker, dtype="int64"),
            "t_wait_ns": ns(self.r_wait), "t_wake_ns": ns(self.r_wake),
            "t_accept_ns": ns(self.r_accept), "t_done_ns": ns(self.r_done),
            "outcome": outcome.astype(str), "nvcsw": nvcsw,
        })
        client = pd.DataFrame({"conn": np.arange(len(self.c_start)),
                               "t_start_ns": ns(self.c_start), "t_done_ns": ns(self.c_done),
                               "ok": np.isfinite(np.asarray(self.c_done, dtype=float))})
        return events, client


class _Herd:
    """A herd's table for the arrival being handled: the busy or the idle run's."""

    def __init__(self, tables: dict[str, HerdTable], sim: Simulation) -> None:
        self.tables, self.sim = tables, sim
        self.arrays = {regime: np.asarray(t.ranks, dtype=float) for regime, t in tables.items()}

    @property
    def ranks(self) -> np.ndarray:
        return self.arrays[self.sim.regime]

    @property
    def p_eagain(self) -> float:
        return self.tables[self.sim.regime].p_eagain
