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

Every time comes from the calibration's pools of the rule's ``path`` (the
runs of a strategy that takes the same way to a connection), in the regime
of the load: ``busy`` and ``idle`` for a sequential client, ``loaded`` for a
closed loop of several clients (whose threads also take turns on the
client's GIL, :class:`~acceptlab.model.cpu.Gil`), ``open`` for an open loop.

Every wait is one row of an events table with the kit's own columns
(``worker, t_wait_ns, t_wake_ns, t_accept_ns, t_done_ns, outcome, nvcsw``),
and every connection one row of a client table (``t_start_ns, t_done_ns,
ok``), so :mod:`acceptlab.analysis` measures a simulated run exactly as it
measures a live one.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .cpu import Cores, Gil
from .pools import PLAIN_HERDS, Calibration
from .rules import Rule, rule_for
from .scenario import QUESTIONS, Scenario
from .times import HerdDraw, Times

__all__ = ["Scenario", "Simulation", "IDLE_AFTER_US", "QUESTIONS"]

IDLE_AFTER_US = 300.0
"""A connection that starts this long after the last activity finds the CPUs asleep (the
'idle' pools).  An assumption: an idle vCPU halts after a short poll (KVM's default
``halt_poll_ns`` is 200 µs), and waking it costs what the gap runs measured."""

AWAY, ASLEEP, WOKEN, BUSY = range(4)  # a worker's state
PORT_BASE = 20000  # simulated connections' client ports: PORT_BASE + the connection's number


@dataclass
class _Client:
    """One closed-loop client (a thread of the client process)."""

    number: int
    ahead: tuple[str, int] | None = None  # the next connection's (regime, live profile), drawn early
    connect_wait: float | None = None  # its wait for the GIL, when it asked before its worker
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
        rule = rule_for(scenario.strategy, scenario.kind)
        # One live run's state of the machine per simulated run: the spread between runs.
        self.times = {regime: Times.of(calibration, rule.path, scenario.kind, regime, rng)
                      for regime in ("busy", "idle", "loaded", "open")}
        # A loop the path was not measured in (closed, open) borrows accept()'s times; the
        # wait call's own cost stays the path's (accept() makes a socket inside its wait).
        own = self.times["busy"]
        for times in self.times.values():
            if times.pool.path != rule.path and own.pool.path == rule.path:
                times.enter = own.enter
        self.overshoot = self.times["idle"].sleep_overshoot(calibration.timer_slack_us)
        self.plain = Times.of(calibration, "accept", scenario.kind, "busy", rng)  # a plain wake
        self.regime = "busy"
        self.favourite = int(rng.integers(self.workers))  # a herd's, if its table favours one
        # Rows of the events table (one per wait) and each worker's current row.
        self.r_worker: list[int] = []
        self.r_wait: list[float] = []
        self.r_wake: list[float] = []
        self.r_accept: list[float] = []
        self.r_done: list[float] = []
        self.r_outcome: list[str] = []
        self.r_nvcsw: list[int] = []
        self.r_conn: list[int] = []  # the connection a row accepted (-1: none)
        self.row = [-1] * self.workers
        self.state = [AWAY] * self.workers
        self.serving: list[int] = [-1] * self.workers  # the connection each worker holds
        # Connections: their client, times and regime.
        n = scenario.connections
        self.c_client = [-1] * n
        self.c_start = [np.nan] * n
        self.c_connected = [np.nan] * n
        self.c_done = [np.nan] * n
        self.c_regime = ["busy"] * n
        self.c_talk = [0.0] * n  # its talk, as the calibration measured it uncontended
        self.c_stretch = [1.0] * n  # and how much a closed loop draws it out
        self.c_woke = [np.nan] * n  # the wake-up latency of the sleeper woken for it
        self.started = 0
        self.queues: list[list[int]] = [[] for _ in range(self.workers + 1)]
        self.heads = [0] * (self.workers + 1)  # each queue's oldest entry
        self.last_activity = -1e9
        self.arrival_client = -1  # the client whose connection is being handed out now
        self.arrival_conn = -1
        self.arriving = -1  # the connection being handed out now
        self.clients: list[_Client] = []
        self.work = [scenario.work_of(slot) for slot in range(self.workers)]
        self.no_work = all(work.kind == "none" for work in self.work)
        self._share_the_cpu(calibration)
        self.rule: Rule = rule(self)

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

    def _regime_now(self) -> str:
        if self.scenario.rate is not None:
            return "open"
        if self.contended:
            return "loaded"
        return "idle" if self.now - self.last_activity >= IDLE_AFTER_US else "busy"

    def start(self, client: int) -> None:
        """A client starts its next connection (``client`` -1: an open-loop arrival)."""
        if self.started >= self.scenario.connections:
            return
        conn = self.started
        self.started += 1
        regime = self._regime_now()
        ahead = self.clients[client].ahead if client >= 0 else None
        if ahead is not None:  # drawn when the previous connection's worker raced this one
            regime, profile = ahead
            self.clients[client].ahead = None
        times, alone = self.times[regime], self._alone(regime)
        if ahead is None:
            profile = alone.profile()
        connect = alone.connect(profile)
        self.c_talk[conn], self.c_woke[conn] = alone.talk(profile), alone.woke(profile)
        if regime == "loaded" and self.no_work:  # as uneven as the calibration's closed loop's
            self.c_stretch[conn] = times.stretch()
        self.c_talk[conn] += times.stall()
        if self.client_gil:  # the client's part of connecting needs its GIL
            asked = self.clients[client].connect_wait if client >= 0 else None
            connect += asked if asked is not None else self.gil.hold(self.now, self.gil_connect)
            if client >= 0:
                self.clients[client].connect_wait = None
        self.c_client[conn], self.c_start[conn], self.c_regime[conn] = client, self.now, regime
        self.c_connected[conn] = self.now + connect
        self.later(max(self.now, self.now + connect - alone.lead), self.arrive, conn)

    def _alone(self, regime: str) -> Times:
        """Whose connect, talk and wake-up a connection takes: its regime's, but a closed loop's
        the busy runs' (the model adds the GIL waits; the loaded runs' hold their shape's)."""
        return self.times["busy"] if regime == "loaded" else self.times[regime]

    def arrive(self, conn: int) -> None:
        """The connection is in an accept queue: the rule decides whom the kernel wakes."""
        queue = self.rule.queue_of_new()
        self.queues[queue].append(conn)
        self.regime, self.arrival_client = self.c_regime[conn], self.c_client[conn]
        self.arrival_conn = self.arriving = conn  # the first worker woken for it wakes as its
        self.rule.arrived(queue)  # live model did
        self.arrival_client = self.arrival_conn = self.arriving = -1

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
            if self.client_gil and gap == 0:
                # The client thread goes straight on to connect, holding the GIL it has.
                self.clients[client].connect_wait = self.gil.hold(self.now, self.gil_connect,
                                                                  holder=True)
        self._return(worker, times, client, next_start)

    def _return(self, worker: int, times: Times, client: int, next_start: float | None) -> None:
        """When the worker is back in its wait (the race of the module docstring, step 4).

        A sequential client: the scheduler may leave the worker without a CPU
        when its client hangs up (``p_late``, as often as the calibration's
        runs saw it; with a gap, a stall as rare as all its gap runs together
        saw one).  The client's next connection then arrives first, and the
        calibration says how far after it the worker is back, and whether it
        beat the woken sleepers (late-win) or not (late-lose).  Concurrent
        loads: as late as the calibration's closed loop measured its workers
        (every core wanted), and for thread workers after their turn on the GIL.
        """
        late = not self.contended and self.rng.random() < times.p_late
        back = None
        if late and next_start is not None and self.scenario.concurrency == 1:
            profile = times.profile()  # the next connection's, drawn now
            self.clients[client].ahead = (times.regime, profile)
            connected = next_start + times.connect(profile)
            if self.rng.random() * times.p_late < times.p_late_win:
                back = connected + times.off_win()
                self.clients[client].priority_until = back
            else:
                back = connected + times.off_lose()
        elif late:
            back = self.now + times.lag_late() + times.ret()
        if back is None:
            back = self.now + times.lag_prompt() + times.ret()
            if self.contended and self._worker_gil:
                back += self.gil.hold(self.now, self.cpu_return)
        back = max(self.now + 0.5, back)
        self.r_done[self.row[worker]] = back - 0.5
        # The worker counts its connection closed when it is done with it (a dealer that counts
        # them may look before): as the live worker does, just before it logs t_done.
        self.later(back - 0.5, self.rule.finished, worker)
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
        self.r_conn.append(-1)

    def herd_woke(self, woken: int, as_measured: float) -> None:
        """A herd woke ``woken`` sleepers for the connection being handed out; the
        calibration's runs woke ``as_measured`` each, and their times hold that cost.

        Each sleeper more (or fewer) costs the connecting side ``herd_wake_us``
        (:attr:`~acceptlab.model.pools.Calibration.herd_wake_us`), added to the
        connection's time.
        """
        if self.arriving >= 0:
            extra = (woken - as_measured) * self.calibration.herd_wake_us
            self.c_talk[self.arriving] = max(1.0, self.c_talk[self.arriving] + extra)

    def run_woken(self, worker: int) -> None:
        """A woken worker runs; a thread worker first needs the GIL (and sleeps if it is held).

        Only a woken thread waits for the GIL: one whose ``accept()`` returns
        at once takes it back before any waiter is scheduled (CPython's
        ``drop_gil`` only signals the waiters).
        """
        if self.state[worker] != WOKEN:
            return
        if self.contended and self._worker_gil:
            wait = self.gil.hold(self.now, self.cpu_wake)
            if wait > 0:
                self.count_wakeup(worker)  # it slept on the GIL's condition variable
                self.later(self.now + wait, self._run_now, worker)
                return
        self.rule.run(worker)

    def _run_now(self, worker: int) -> None:
        if self.state[worker] == WOKEN:
            self.rule.run(worker)

    def take(self, worker: int, queue: int) -> None:
        """``worker`` accepts the oldest connection of ``queue`` now, and converses."""
        conn = self.pop(queue)
        row = self.row[worker]
        if self.state[worker] != WOKEN and self.contended and self._worker_gil \
                and self.gil.held_at(self.now) and self.coin(self.thread_switch):
            # accept() returned at once, but another thread wanted the GIL meanwhile: as often
            # as the calibration's thread pool under a GIL always wanted, it waited for it
            self.count_wakeup(worker)
        # The wait returns once the call has done its own work (accept() makes the socket)
        enter = self.times[self.c_regime[conn]].enter()
        self.r_wake[row] = max(self.r_wait[row], self.now + enter - 0.5)
        self.r_accept[row] = self.now + enter
        self.r_outcome[row] = "accepted"
        self.r_conn[row] = conn
        self.state[worker] = BUSY
        self.serving[worker] = conn
        self.rule.accepted(worker)
        work = self.work[worker]
        if work.kind == "spin":
            self.spread[worker] = self._pick(self.calibration.spin_spread)
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
        """One request's ``spin``: its share of the cores (processes), or the GIL (threads).

        A connection's spins take longer or shorter than their share says, by a
        factor drawn from the calibration's ``spin_spread``: a core's share is
        even only on average.
        """
        if left == 0:
            self._talk(conn, self.now)
            return
        spin = self.work[worker].ms * 1e3 * self.spread[worker]
        if self._worker_gil:  # one thread spins at a time, on one core's share
            lasts = spin / min(1.0, self.thread_cores)
            ends = self.now + self.gil.hold(self.now, lasts) + lasts
            self.later(ends, lambda: self._spin(worker, conn, left - 1))
        else:
            lasts = self.cores.begin(spin)
            self.later(self.now + lasts, lambda: self._spun(worker, conn, left))

    def _spun(self, worker: int, conn: int, left: int) -> None:
        self.cores.end()
        self._spin(worker, conn, left - 1)

    def _talk(self, conn: int, moment: float) -> None:
        """The rest of the conversation, as the calibration measured it without work."""
        if self.contended:
            self.later(moment, self._talk_contended, conn)
        else:
            self.later(moment + self.c_talk[conn], self.done, conn)

    def _talk_contended(self, conn: int, step: int = 0) -> None:
        """The talk, one question at a time, each waiting for its turn on the GIL.

        A question is a round trip: the worker answers (a thread worker needs
        the GIL for it), then the client reads the answer and asks the next
        (its GIL).  Under a concurrent load each waits its turn, so the talk
        stretches with the load; a closed loop's, without work, as unevenly as the
        calibration's closed loop's did (``c_stretch``: who of eight processes gets
        one of two cores next is not first come, first served).
        """
        questions = self.scenario_questions()
        waits = self.gil.hold(self.now, self.gil_question) if self.client_gil else 0.0
        if self._worker_gil:
            waits += self.gil.hold(self.now, self.cpu_worker_talk / questions)
        moment = self.now + (self.c_talk[conn] / questions + waits) * self.c_stretch[conn]
        if step + 1 < questions:
            self.later(moment, lambda: self._talk_contended(conn, step + 1))
        else:
            self.later(moment, self.done, conn)

    # ------------------------------------------------------------------ the CPU

    RETURN_SHARE, WAKE_SHARE = 0.15, 0.10
    """The shares of a thread worker's CPU per connection spent after its client hangs up
    (seeing the end, logging, coming back to wait) and on being woken and accepting:
    estimates; the rest goes with the talk."""

    def _share_the_cpu(self, calibration: Calibration) -> None:
        """Set up what the actors share: the client process's GIL, and the cores.

        Only concurrent loads (a closed loop of several clients, an open loop)
        wait for the GIL: a sequential run's measured times already hold the
        turns its two actors took.  Each connection needs the client's GIL for
        ``gil_us`` (closed loops: one over the rate of the calibration's closed
        loop, which the client's turns limit) or ``open_gil_us`` (open loops,
        a thread per connection), a share before it is queued (as connect is
        of the sequential run's time) and the rest spread over the questions.
        Thread workers live in the client's process: their CPU
        (``worker_cpu_us``) takes the same GIL.  ``spin`` work takes
        :class:`~acceptlab.model.cpu.Cores`.  Remote clients (``Scenario.remote``)
        take no turns on it.
        """
        self.contended = self.scenario.contended
        self.client_gil = self.contended and not self.scenario.remote
        self.gil = Gil()
        self.cores = Cores(self._pick(calibration.cores))
        self.thread_cores = self._pick(calibration.thread_cores)
        self.thread_switch = self._pick(calibration.thread_switches)
        self.spread = [1.0] * self.workers
        self._worker_gil = self.scenario.kind == "thread"
        client_us = self._pick(calibration.open_gil_us if self.scenario.rate is not None
                               else calibration.gil_us)
        times = self.times["open" if self.scenario.rate is not None else "busy"]
        self.gil_connect = client_us * times.connect_share()
        self.gil_question = (client_us - self.gil_connect) / self.scenario_questions()
        self.cpu_return = calibration.worker_cpu_us * self.RETURN_SHARE
        self.cpu_wake = calibration.worker_cpu_us * self.WAKE_SHARE
        self.cpu_worker_talk = calibration.worker_cpu_us - self.cpu_return - self.cpu_wake

    # ------------------------------------------------------------------ what a rule may call

    def queued(self, queue: int) -> int:
        """How many connections wait in ``queue``."""
        return len(self.queues[queue]) - self.heads[queue]

    def pop(self, queue: int) -> int:
        """Take the oldest connection of ``queue``."""
        conn = self.queues[queue][self.heads[queue]]
        self.heads[queue] += 1
        return conn

    def move(self, source: int, target: int) -> None:
        """Move the oldest connection of ``source`` to ``target`` (a dealer's hand-off)."""
        self.queues[target].append(self.pop(source))
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
        """A wake-up latency (µs from the waker's action to the woken running): as the
        connection's live model woke, or (``after_arrival`` False: a lock's unlock) a plain
        wake-up on a busy machine, as ``accept()``'s back to back."""
        times = self._alone(self.regime) if after_arrival else self.plain
        if after_arrival and self.arrival_conn >= 0:
            woke = self.c_woke[self.arrival_conn]
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
        if after_arrival and self.arrival_client >= 0:
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

    def herd_table(self, family: str) -> "HerdDraw":
        tables = {regime: self._pick(self.calibration.herd_for(family, regime))
                  for regime in ("busy", "idle")}
        if family not in PLAIN_HERDS:  # a race of its own: its own EAGAIN share
            return HerdDraw(tables, lambda: self.regime)
        eagain = {regime: self._pick(self.calibration.herds_of(regime) or (tables[regime],)
                                     ).p_eagain for regime in ("busy", "idle")}
        return HerdDraw(tables, lambda: self.regime, eagain)

    def place(self, rank: float, n: int) -> int:
        """The index (0 to ``n - 1``) of a normalised rank, rounded at random so that its mean
        survives a change of pool size (a rank of 0.5 among 4 is index 1 or 2, evenly)."""
        return min(n - 1, int(rank * (n - 1) + self.rng.random()))

    def draw_rank(self, table: "HerdDraw") -> float:
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
        # Switches no rule explains: the machine's (gap runs), a thread pool's GIL waits (busy)
        stray = self.times["idle"].stray + self.times["busy"].stray
        if stray > 0 and len(accepted):
            whole = int(stray)  # a shared epoll's threads may wait for the GIL more than once
            extra = whole * len(accepted) + self.rng.binomial(len(accepted), stray - whole)
            np.add.at(nvcsw, self.rng.choice(accepted, extra), 1)

        def ns(values: list[float]) -> np.ndarray:
            return np.round(np.asarray(values, dtype=float) * 1e3 + 1e9)  # from 1 s: all positive

        conns = np.asarray(self.r_conn, dtype="int64")
        events = pd.DataFrame({
            "worker": np.asarray(self.r_worker, dtype="int64"),
            "t_wait_ns": ns(self.r_wait), "t_wake_ns": ns(self.r_wake),
            "t_accept_ns": ns(self.r_accept), "t_done_ns": ns(self.r_done),
            "outcome": outcome.astype(str), "nvcsw": nvcsw,
            # the client's port, as a live log has it (made up: each connection its own)
            "peer_port": pd.array(np.where(conns >= 0, conns + PORT_BASE, -1), dtype="Int64"),
        })
        events.loc[conns < 0, "peer_port"] = pd.NA
        client = pd.DataFrame({"conn": np.arange(len(self.c_start)),
                               "local_port": np.arange(len(self.c_start)) + PORT_BASE,
                               "t_start_ns": ns(self.c_start),
                               "t_connected_ns": ns(self.c_connected),
                               "t_done_ns": ns(self.c_done),
                               "ok": np.isfinite(np.asarray(self.c_done, dtype=float))})
        return events, client
