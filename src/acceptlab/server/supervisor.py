"""The supervisor: one worker alive in every slot, the book's supervisor loop made explicit.

A slot's life
-------------
Each slot runs one worker at a time, numbered by *generation*.  A new
generation is ``starting`` until it says it is ready (just before its first
wait; see :mod:`acceptlab.server.worker`), then ``serving``.  One that dies
before it is ready failed to *boot*: it is ``retrying`` after 0.1 s, 0.2 s,
... up to ``boot_attempts`` times in a row, then the slot is left ``down``
and :class:`WorkerBootError` says why (a crash loop must end: gunicorn halts
on its ``WORKER_BOOT_ERROR`` for the same reason).  A serving worker that
dies is replaced by the next generation, as the book's supervisor does,
unless it was asked to stop (SIGTERM from outside: then it stays ``stopped``).

The states are :class:`SlotState`, the events that move a slot are
:class:`SlotEvent`, and :data:`TRANSITIONS` is the whole table (h11's
``_state.py`` is the model): a move that is not in it is a bug, and raises.
:meth:`Supervisor.step` looks at one slot and fires at most one event.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..basics import now
from .handles import WorkerHandle

__all__ = ["SlotState", "SlotEvent", "TRANSITIONS", "Supervisor", "SlotStatus", "Replacement",
           "WorkerBootError"]

logger = logging.getLogger("acceptlab.server.pool")

_BACKOFF = 0.1  # seconds before the first boot retry; doubled for each further one


class SlotState(str, enum.Enum):
    """Where a slot is in its life (a ``str``: ``SlotState.SERVING == "serving"``)."""

    STARTING = "starting"
    SERVING = "serving"
    RETRYING = "retrying"  # a boot failed; the next attempt waits for its backoff
    DOWN = "down"  # boot attempts used up
    STOPPED = "stopped"  # its worker was asked to stop from outside

    def __str__(self) -> str:
        return self.value


class SlotEvent(enum.Enum):
    """What can happen to a slot."""

    READY = "the worker said it is ready"
    BOOT_FAILED = "the worker died (or hung) before it was ready"
    GAVE_UP = "the worker failed to boot boot_attempts times in a row"
    BACKOFF_OVER = "the retry's pause is over: the next generation starts"
    DIED = "a serving worker died: the next generation starts"
    STOPPED_FROM_OUTSIDE = "a serving worker was asked to stop (SIGTERM) and did"
    RESTARTED = "the pool replaced a serving worker on purpose"


_S, _E = SlotState, SlotEvent
TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
    (_S.STARTING, _E.READY): _S.SERVING,
    (_S.STARTING, _E.BOOT_FAILED): _S.RETRYING,
    (_S.STARTING, _E.GAVE_UP): _S.DOWN,
    (_S.RETRYING, _E.BACKOFF_OVER): _S.STARTING,
    (_S.SERVING, _E.DIED): _S.STARTING,
    (_S.SERVING, _E.STOPPED_FROM_OUTSIDE): _S.STOPPED,
    (_S.SERVING, _E.RESTARTED): _S.STARTING,
}
"""Every legal move of a slot: (state, event) -> the next state."""


class WorkerBootError(RuntimeError):
    """A slot's worker died before it was ready, ``attempts`` times in a row; the slot is down.

    The message is one line naming the slot, how the worker ended and the last
    line it wrote to stderr (for a Python error, the traceback's last line).
    """

    def __init__(self, slot: int, attempts: int, ended: str, last_line: str,
                 hint: str = "") -> None:
        self.slot, self.attempts, self.ended, self.last_line = slot, attempts, ended, last_line
        times = f", {attempts} times in a row" if attempts > 1 else ""
        words = f": {last_line}" if last_line else ""
        super().__init__(f"worker {slot} died while starting{times} ({ended}){words}; "
                         f"slot {slot} is left down{hint}")


@dataclass(frozen=True)
class Replacement:
    """One new generation in a slot: the old one died (or was restarted) and another was started.

    ``pid`` and ``new_pid`` are the workers' idents (the process id, or the
    native thread id of a thread worker); ``exit`` says how the old one ended.
    """

    slot: int
    generation: int  # the generation that ended
    pid: int
    exit: str  # 'exit code -9 (SIGKILL)', 'crashed: InjectedCrash', 'restarted gracefully', ...
    t_detected_ns: int
    new_pid: int
    t_started_ns: int


@dataclass(frozen=True)
class SlotStatus:
    """What :meth:`acceptlab.server.pool.WorkerPool.status` says about one slot."""

    slot: int
    generation: int
    state: SlotState
    ident: int
    pid: int
    boot_failures: int
    error: WorkerBootError | None = None


@dataclass
class _Slot:
    """The supervisor's book-keeping for one slot."""

    worker: WorkerHandle
    generation: int = 0
    state: SlotState = SlotState.STARTING
    boot_failures: int = 0
    boot_deadline: float = 0.0
    retry_at: float = 0.0
    t_failed_ns: int = 0
    boot_ended: str = ""  # how the last failed boot ended
    error: WorkerBootError | None = None

    def move(self, event: SlotEvent) -> None:
        """Fire ``event``: the slot takes the state :data:`TRANSITIONS` gives, or this raises."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise RuntimeError(f"a slot that is {self.state} cannot take {event.name}") from None


class Supervisor:
    """Keeps one worker alive in every slot (see the module docstring).

    Args:
        launch: starts generation ``g`` of slot ``s``: ``launch(s, g)``.
        boot_attempts: failed boots in a row before a slot is left down.
        ready_timeout: seconds a new worker may take to become ready.
        hint: a few words on why workers die at birth, for the error (or '').
    """

    def __init__(self, launch: Callable[[int, int], WorkerHandle], *, boot_attempts: int,
                 ready_timeout: float, hint: Callable[[], str]) -> None:
        self.launch, self.boot_attempts, self.ready_timeout = launch, boot_attempts, ready_timeout
        self.hint = hint
        self.slots: list[_Slot] = []
        self.retired: list[WorkerHandle] = []  # restarted on purpose, finishing in their own time
        self.replacements: list[Replacement] = []
        self.lock = threading.Lock()  # guards slots and retired against the background thread
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- starting ------------------------------------------------------------------------------
    def add_slot(self) -> None:
        """Start the next slot's first worker and wait until it serves (or raise its error)."""
        with self.lock:
            slot = len(self.slots)
            self.slots.append(_Slot(self.launch(slot, 0),
                                    boot_deadline=time.monotonic() + self.ready_timeout))
        self.wait_for(slot)

    def wait_for(self, slot: int) -> None:
        """Block until ``slot`` serves; raise its :class:`WorkerBootError` if it ends up down."""
        while True:
            with self.lock:
                state = self.step(slot)
                entry = self.slots[slot]
            if state is SlotState.SERVING:
                return
            if state in (SlotState.DOWN, SlotState.STOPPED):
                raise entry.error or RuntimeError(f"worker {slot} was stopped from outside")
            if state is SlotState.RETRYING:
                time.sleep(max(0.0, min(entry.retry_at - time.monotonic(), 0.05)))
            else:
                entry.worker.wait_ready(0.05)

    def watch(self, interval: float) -> None:
        """From now on, look at every slot every ``interval`` seconds, in a thread of its own."""
        self._thread = threading.Thread(target=self._watch, args=(interval,),
                                        name="acceptlab-supervisor", daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            for slot in range(len(self.slots)):
                with self.lock:  # slot by slot, so kill() and restart() need not wait long
                    if self._stopping.is_set():
                        return
                    self.step(slot)
            with self.lock:
                for worker in [w for w in self.retired if not w.is_alive()]:
                    worker.close()
                    self.retired.remove(worker)

    # -- one step of a slot's life ----------------------------------------------------------------
    def step(self, slot: int) -> SlotState:
        """Look at ``slot`` once, without blocking, and fire at most one event.  Hold ``lock``."""
        entry = self.slots[slot]
        worker = entry.worker
        if entry.state is SlotState.STARTING:
            if worker.is_ready():
                entry.move(SlotEvent.READY)
                entry.boot_failures = 0
            elif not worker.is_alive() or time.monotonic() > entry.boot_deadline:
                self._boot_failed(slot, entry)
        elif entry.state is SlotState.RETRYING and time.monotonic() >= entry.retry_at:
            self._next_generation(slot, SlotEvent.BACKOFF_OVER,
                                  f"failed to start ({entry.boot_ended})", entry.t_failed_ns)
        elif entry.state is SlotState.SERVING and not worker.is_alive():
            if worker.asked_to_stop():
                entry.move(SlotEvent.STOPPED_FROM_OUTSIDE)
                logger.warning("worker %d (%d) was asked to stop (SIGTERM); not replacing it",
                               slot, worker.ident)
            else:
                words = worker.last_words()  # its stderr is in a file: quote the error line
                self._next_generation(slot, SlotEvent.DIED, worker.exit_description()
                                      + (f": {words}" if words else ""), now())
        return entry.state

    def _boot_failed(self, slot: int, entry: _Slot) -> None:
        """A generation died (or hung) before it was ready: retry after a backoff, or give up."""
        worker = entry.worker
        if worker.is_alive():  # hung: it had ready_timeout seconds
            worker.force()
            worker.join(0.5)
        entry.boot_failures += 1
        entry.t_failed_ns = now()
        ended, words = worker.exit_description(), worker.last_words()
        entry.boot_ended = ended
        # While the pool starts, its caller gets the error, which counts the attempts: no lines.
        log = logger.log if self._thread is not None else _quiet
        if entry.boot_failures >= self.boot_attempts:
            entry.move(SlotEvent.GAVE_UP)
            entry.error = WorkerBootError(slot, entry.boot_failures, ended, words, self.hint())
            log(logging.ERROR, "%s", entry.error)
        else:
            entry.move(SlotEvent.BOOT_FAILED)
            entry.retry_at = time.monotonic() + _BACKOFF * 2 ** (entry.boot_failures - 1)
            log(logging.WARNING, "worker %d died while starting (%s)%s; retrying", slot, ended,
                f": {words}" if words else "")

    def _next_generation(self, slot: int, event: SlotEvent, why: str,
                         t_detected_ns: int) -> None:
        """Fire ``event``, start slot ``slot``'s next generation, record it.  Hold ``lock``."""
        entry = self.slots[slot]
        old = entry.worker
        entry.move(event)
        entry.generation += 1
        entry.worker = fresh = self.launch(slot, entry.generation)
        entry.boot_deadline = time.monotonic() + self.ready_timeout
        if old not in self.retired:
            old.close()
        self.replacements.append(Replacement(slot, entry.generation - 1, old.ident, why,
                                             t_detected_ns, fresh.ident, now()))
        # A restart asked for is news only to a debugger; a death or a failed boot is a warning.
        # While the pool starts, its caller gets any error, which counts the attempts: no lines.
        level = logging.INFO if event is SlotEvent.RESTARTED else logging.WARNING
        log = logger.log if self._thread is not None else _quiet
        log(level, "worker %d (%d) %s; started generation %d as %d", slot, old.ident,
            why if event is not SlotEvent.DIED else f"died with {why}",
            entry.generation, fresh.ident)

    # -- faults and restarts asked for ----------------------------------------------------------------
    def raise_boot_error(self) -> None:
        """Raise the error of the first slot left down, if any.  Hold ``lock``."""
        for entry in self.slots:
            if entry.error is not None:
                raise entry.error

    def crash(self, slot: int) -> None:
        """Make slot ``slot``'s worker die as a bug would (the next look replaces it)."""
        with self.lock:
            self.raise_boot_error()
            self.slots[slot].worker.crash()

    def restart(self, slot: int, *, graceful: bool) -> None:
        """Replace slot ``slot``'s worker on purpose; return once the new one serves."""
        with self.lock:
            self.raise_boot_error()
            entry = self.slots[slot]
            if entry.state is not SlotState.SERVING:
                raise RuntimeError(f"worker {slot} is {entry.state}, not serving: "
                                   f"nothing to restart")
            old = entry.worker
            if graceful:
                old.retire()
            else:
                old.crash()
            self.retired.append(old)
            self._next_generation(slot, SlotEvent.RESTARTED,
                                  "restarted gracefully" if graceful else "restarted: killed",
                                  now())
        self.wait_for(slot)

    # -- what the pool reports ----------------------------------------------------------------------
    def status(self) -> list[SlotStatus]:
        with self.lock:
            return [SlotStatus(slot, entry.generation, entry.state, entry.worker.ident,
                               entry.worker.pid, entry.boot_failures, entry.error)
                    for slot, entry in enumerate(self.slots)]

    def workers(self) -> list[WorkerHandle]:
        """Every worker still held: each slot's current one and the retiring ones."""
        with self.lock:
            return [entry.worker for entry in self.slots] + self.retired


def _quiet(*args: object) -> None:
    """A log call that says nothing (while the pool starts: its caller gets the error)."""
