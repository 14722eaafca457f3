"""WorkerPool: N workers, threads or processes, accepting on ONE socket, kept alive by a supervisor.

This is the book's pre-forked / pre-threaded server: the parent creates and
binds the listening socket, starts N workers that each call ``accept()`` on
it, and replaces any worker that dies.  The kernel, not the parent, decides
which worker gets each connection; the parent never touches a connection.

How to use it::

    with WorkerPool(workers=4, kind="process") as pool:
        ...connect to pool.address...
    events = pool.events()        # one row per wakeup, a pandas DataFrame

Callers use :meth:`start`, :attr:`address`, :meth:`kill`, :meth:`restart`,
:meth:`stop`, :meth:`events`, :meth:`status` and :attr:`replacements`.

One interface for both kinds
----------------------------
A thread and a process are started and stopped differently, so each is
wrapped (:class:`_ThreadWorker`, :class:`_ProcessWorker`) behind the same
few verbs: ``ask_to_stop``, ``force``, ``retire``, ``crash``, ``join``,
``is_alive``, ``is_ready``.  The pool below holds ONE stop algorithm and ONE
supervision loop, and never asks which kind it holds.

A slot's life
-------------
Each slot runs one worker at a time, numbered by *generation*.  A new
generation is ``starting`` until it says it is ready (just before its first
wait; see :mod:`acceptlab.server.worker`), then ``serving``.  One that dies before
it is ready failed to *boot*: it is retried after 0.1 s, 0.2 s, ... up to
``boot_attempts`` times in a row, then the slot is left ``down`` and
:class:`WorkerBootError` says why (a crash loop must end: gunicorn halts on
its ``WORKER_BOOT_ERROR`` for the same reason).  A serving worker that dies is
replaced by the next generation, as the book's supervisor does, unless it was
asked to stop (SIGTERM from outside: then it stays ``stopped``).

Resource handling
-----------------
* :meth:`stop` returns within about a second for every kind and strategy and
  frees the port: every worker is asked to stop (SIGTERM for a process; for a
  thread, its sockets are shut down under it, which wakes every blocked
  ``accept()``, ``poll()`` and ``recv()``), and whoever lingers past half
  the time is forced (SIGKILL).
* Process workers are daemonic (``multiprocessing`` terminates them when the
  parent exits normally), ignore SIGINT (the pool decides what Ctrl-C means),
  and exit by themselves within a fraction of a second if the parent is
  killed outright (see :func:`acceptlab.server.worker.process_main`).
* Event logs live in ``log_dir`` (a temporary directory unless given), one
  file per worker generation, beside each process's stderr; they outlive the
  workers, so :meth:`events` works after :meth:`stop`.  A temporary one is
  deleted with the pool, or, if its process was killed, by the next pool
  started on the machine.

Error handling
--------------
* A port that already has a listener raises :class:`PortInUse` naming it,
  even for ``reuseport`` (which the kernel would let join), unless ``join=True``.
* A strategy this platform lacks raises :class:`acceptlab.linux.support.Unavailable`
  before anything starts.
* A worker that cannot boot makes :meth:`start` raise :class:`WorkerBootError`;
  later, a slot left down shows in :meth:`status` and :meth:`alive`, and
  :meth:`check` (and :meth:`kill`, :meth:`restart`) raise its error.
* A worker that dies later is replaced in the same slot with its generation
  plus one, and one warning line names the slot and the exit code.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

from ..basics import address_family, now, show_address
from .eventlog import read_events
from .sharing import Setup, Shared, set_up
from .strategies import STRATEGIES
from ..linux.support import check_strategy
from ..specs import PoolSpec, build_specs
from .worker import (RETIRE_SIGNAL, Control, InjectedCrash, WorkerSpec, hybrid_main,
                     process_alive, process_main, serve, stderr_path, stop_mark)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WorkerPool", "PortInUse", "WorkerBootError", "Replacement", "SlotStatus",
           "open_listener"]

logger = logging.getLogger("acceptlab.server.pool")

_BACKOFF = 0.1  # seconds before the first boot retry; doubled for each further one


class PortInUse(OSError):
    """The port is already taken by another socket."""


class WorkerBootError(RuntimeError):
    """A slot's worker died before it was ready, ``attempts`` times in a row; the slot is down.

    The message is one line naming the slot, the exit code and the last line
    the worker wrote to stderr (for a Python error, the traceback's last line).
    """

    def __init__(self, slot: int, attempts: int, exit: str, last_line: str, hint: str = "") -> None:
        self.slot, self.attempts, self.exit, self.last_line = slot, attempts, exit, last_line
        times = f", {attempts} times in a row" if attempts > 1 else ""
        words = f": {last_line}" if last_line else ""
        super().__init__(f"worker {slot} died while starting{times} ({exit}){words}; "
                         f"slot {slot} is left down{hint}")


def open_listener(host: str, port: int, *, backlog: int = 128, listen: bool = True,
                  reuseport: bool = False) -> socket.socket:
    """Create, bind and (unless ``listen`` is false) listen: the socket every worker shares.

    ``SO_REUSEADDR`` lets a restarted server bind while old connections sit in
    TIME_WAIT (on Linux it does NOT let two servers listen on one port).

    Args:
        host: the address to bind (loopback unless you mean otherwise).
        port: the port; 0 lets the kernel pick a free one.
        backlog: the accept queue's length.
        listen: False leaves the socket bound but not listening.
        reuseport: set ``SO_REUSEPORT`` first; with ``listen=False`` this makes the
            placeholder a ``reuseport`` pool holds so the port stays its own while
            each worker binds its own socket.
    """
    sock = socket.socket(address_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(errno.EADDRINUSE, f"port {port} on {host} is already in use") from None
        raise OSError(exc.errno, f"cannot listen on {host} port {port}: {exc.strerror}") from None
    return sock


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if anything already listens on ``port``, whatever SO_REUSEPORT says.

    Why: two ``reuseport`` servers of one user on one port would both start,
    and the kernel would split the connections between them without a word
    (a plain bind needs no such check: it fails by itself).  A probe bound the
    ordinary way (SO_REUSEADDR, no SO_REUSEPORT) asks the kernel the question
    a plain server asks: is there a listener here?
    """
    try:
        open_listener(host, port, listen=False).close()
    except PortInUse:
        raise PortInUse(errno.EADDRINUSE, f"port {port} on {host} is already in use "
                                          f"(pass join=True, or --join, to share it on purpose)"
                        ) from None


@dataclass(frozen=True)
class Replacement:
    """One new generation in a slot: the old one died (or was restarted) and another was started.

    ``pid`` and ``new_pid`` are the workers' idents (the process id, or the
    native thread id of a thread worker).
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
    """What :meth:`WorkerPool.status` says about one slot.

    ``state`` is ``starting``, ``serving``, ``retrying`` (a boot failed; the
    next attempt waits for its backoff), ``down`` (boot attempts used up;
    ``error`` says why) or ``stopped`` (the worker was asked to stop from outside).
    """

    slot: int
    generation: int
    state: str
    ident: int
    pid: int
    boot_failures: int
    error: WorkerBootError | None = None


# -- the two kinds of worker, one interface --------------------------------------------------

class _Worker(Protocol):
    """What the pool may ask of any worker, thread or process (uvicorn's ``Process`` has the same).

    ``ident`` is how the kernel names the worker (pid, or native thread id);
    ``pid`` the process it runs in.
    """

    ident: int
    pid: int

    def is_ready(self) -> bool:
        """Has it said it is about to wait for its first connection?"""

    def wait_ready(self, timeout: float) -> None:
        """Sleep until it is ready or dead, at most ``timeout`` seconds."""

    def ask_to_stop(self) -> None:
        """Stop now (SIGTERM, or the flag and a shutdown of its sockets)."""

    def force(self) -> None:
        """The last resort after :meth:`ask_to_stop` (SIGKILL for a process)."""

    def retire(self) -> None:
        """Take no new connection, finish the one in hand, exit: a graceful restart."""

    def crash(self) -> None:
        """Die as a bug would (SIGKILL, or :class:`InjectedCrash` at the next connection)."""

    def join(self, timeout: float) -> None:
        """Wait until it has ended, at most ``timeout`` seconds."""

    def is_alive(self) -> bool:
        """Still running?"""

    def exit_description(self) -> str:
        """How it ended: ``'exit code -9 (SIGKILL)'``, ``'crashed: InjectedCrash'``..."""

    def last_words(self) -> str:
        """The error line it left on stderr, if it could leave one ('' otherwise)."""

    def asked_to_stop(self) -> bool:
        """Did someone ask it to stop (so the supervisor must not replace it)?"""

    def close(self) -> None:
        """Release what the pool holds for it (its readiness pipe)."""


class _ThreadWorker:
    """A thread running :func:`serve`, and the :class:`Control` the pool uses to steer it.

    A thread cannot be signalled or killed from outside, so each verb works
    through what the thread shares with the pool: flags it reads at its next
    wakeup, and sockets whose shutdown wakes it from a blocking call.
    """

    def __init__(self, listener: socket.socket, spec: WorkerSpec) -> None:
        self.control = Control()
        self.died_of = "returned"
        self._shared = listener
        self.thread = threading.Thread(target=self._run, args=(listener, spec),
                                       name=f"acceptlab-worker-{spec.slot}", daemon=True)
        self.thread.start()

    def _run(self, listener: socket.socket, spec: WorkerSpec) -> None:
        try:
            serve(listener, spec, self.control)
        except InjectedCrash:
            self.died_of = "crashed: InjectedCrash"
        except BaseException as exc:  # a worker must die loudly, not silently
            self.died_of = f"crashed: {exc!r}"
            logger.exception("worker thread %s crashed", spec.slot)

    @property
    def ident(self) -> int:
        return self.thread.native_id or 0

    @property
    def pid(self) -> int:
        return os.getpid()  # a thread lives in the pool's own process

    def is_ready(self) -> bool:
        return self.control.ready.is_set()

    def wait_ready(self, timeout: float) -> None:
        self.control.ready.wait(timeout)

    def ask_to_stop(self) -> None:
        """Stop now: the flag, then shut its sockets (for most strategies the shared one)."""
        self.control.stopping.set()
        self._shut(self.control.sockets)

    def force(self) -> None:
        """Shut its sockets again (a conversation accepted since); nothing stronger exists."""
        self._shut(self.control.sockets)

    def retire(self) -> None:
        """No new connection after the one in hand.

        A thread asleep in ``accept()`` on the SHARED socket cannot be woken
        alone (shutting that socket would stop every worker), so it serves the
        next connection the kernel hands it and then leaves; one waiting on a
        socket of its own (``reuseport``) is woken by shutting that socket.
        """
        self.control.retiring.set()
        self._shut([sock for sock in self.control.sockets[:1] if sock is not self._shared])

    def crash(self) -> None:
        self.control.crash.set()  # raises InjectedCrash at its next accepted connection

    def join(self, timeout: float) -> None:
        self.thread.join(max(0.0, timeout))

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def exit_description(self) -> str:
        return self.died_of

    def last_words(self) -> str:
        return ""  # a thread's error is in exit_description (the exception itself)

    def asked_to_stop(self) -> bool:
        return self.control.stopping.is_set()

    def close(self) -> None:
        pass

    @staticmethod
    def _shut(sockets: list) -> None:
        for sock in list(sockets):
            _shut(sock)


class _ProcessWorker:
    """A ``multiprocessing`` process running :func:`process_main`; signals are its verbs."""

    _redirect = threading.Lock()  # one spawn at a time may borrow this process's stderr

    def __init__(self, context: multiprocessing.context.BaseContext,
                 listener: socket.socket, spec: WorkerSpec, threads: int = 1) -> None:
        self.mark = stop_mark(spec.log_dir, spec.slot, spec.generation)
        self.stderr = stderr_path(spec.log_dir, spec.slot, spec.generation)
        self._ready_pipe, writer = context.Pipe(duplex=False)
        self._ready = False
        # One thread serving (the book's pre-forked worker), or several (kind='hybrid').
        target, args = ((process_main, (listener, spec, writer)) if threads == 1 else
                        (hybrid_main, (listener, spec, writer, threads)))
        self.process = context.Process(target=target, args=args,
                                       name=f"acceptlab-worker-{spec.slot}", daemon=True)
        with self._stderr_for_spawn(context.get_start_method()):
            self.process.start()
        writer.close()  # the child holds the write end now
        self.pid = self.process.pid or 0

    @contextlib.contextmanager
    def _stderr_for_spawn(self, method: str) -> Iterator[None]:
        """Under spawn, give the child its stderr file from birth, so a failed boot is quoted.

        A spawned child re-imports the caller's ``__main__`` before any of the
        worker's code runs; if that import fails, its traceback is all there
        is to tell why.  The child inherits file descriptor 2 when it is
        started, so for those few milliseconds this process's descriptor 2
        points at the child's file (another thread's output in that window
        lands there too).  Fork children redirect themselves in
        :func:`process_main`; forkserver children are forked by the fork
        server, whose stderr cannot be changed from here, so an error before
        their first line of worker code reaches the terminal, not the file.
        """
        if method != "spawn":
            yield
            return
        with self._redirect:
            saved = os.dup(2)
            fd = os.open(self.stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.dup2(fd, 2)
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                os.close(fd)

    @property
    def ident(self) -> int:
        return self.pid

    def is_ready(self) -> bool:
        if not self._ready and not self._ready_pipe.closed and self._ready_pipe.poll():
            try:
                self._ready = self._ready_pipe.recv_bytes() == b"ready"
            except (EOFError, OSError):
                self._ready_pipe.close()  # the child died before it said anything
        return self._ready

    def wait_ready(self, timeout: float) -> None:
        """Sleep until the child says it is ready or dies, at most ``timeout`` seconds."""
        pipe = [] if self._ready_pipe.closed else [self._ready_pipe]
        wait_for_any([*pipe, self.process.sentinel], timeout)

    def ask_to_stop(self) -> None:
        if self.is_alive():
            self.process.terminate()  # SIGTERM: the worker unwinds and closes its log

    def force(self) -> None:
        if self.is_alive():
            self.process.kill()  # SIGKILL: stuck in a spin, say

    def retire(self) -> None:
        if self.is_alive():
            os.kill(self.pid, RETIRE_SIGNAL)

    def crash(self) -> None:
        self.force()  # as a bug or the OOM killer would

    def join(self, timeout: float) -> None:
        self.process.join(max(0.0, timeout))

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def exit_description(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"exit code {code} ({signal.Signals(-code).name})"
        return f"exit code {code}"

    def last_words(self) -> str:
        """The last line the worker wrote to stderr that is not indented ('' if none).

        For a traceback that is the line naming the exception; the indented
        lines are its frames, or the rest of a message that spans lines (then
        the first of those is added, so ``RuntimeError:`` says what it is).
        """
        try:
            with open(self.stderr, "rb") as file:
                file.seek(max(0, os.fstat(file.fileno()).st_size - 8192))
                lines = [line.rstrip() for line in file.read().decode(errors="replace").splitlines()
                         if line.strip()]
        except OSError:
            return ""
        for index in range(len(lines) - 1, -1, -1):
            line = lines[index]
            if not line[0].isspace():
                if line.endswith(":") and index + 1 < len(lines):
                    line += " " + lines[index + 1].strip()
                return line
        return lines[-1].strip() if lines else ""

    def asked_to_stop(self) -> bool:
        return self.mark.exists()  # it got SIGTERM (see acceptlab.server.worker.stop_mark)

    def close(self) -> None:
        self._ready_pipe.close()


@dataclass
class _Slot:
    """The pool's book-keeping for one slot (see "A slot's life" above)."""

    worker: _Worker
    generation: int = 0
    state: str = "starting"
    boot_failures: int = 0
    boot_deadline: float = 0.0
    retry_at: float = 0.0
    t_failed_ns: int = 0
    error_exit: str = ""  # how the last failed boot ended
    error: WorkerBootError | None = None


class WorkerPool:
    """N workers sharing one listening socket, and a supervisor that replaces the dead.

    ``WorkerPool(PoolSpec(workers=4, strategy="poll"))`` and
    ``WorkerPool(workers=4, strategy="poll")`` make the same pool: keywords are
    shortcuts for the fields of :class:`~acceptlab.specs.PoolSpec`, which
    says what each one means and checks them.

    Args:
        spec: what the pool is (workers, kind, strategy, protocol, work,
            address, supervision...); ``PoolSpec()`` if None.
        log_dir: where event logs go (a temporary directory if None).
        label: a name for this run, written into every event row.
        **shortcuts: fields of :class:`~acceptlab.specs.PoolSpec`, replacing
            those of ``spec``.
    """

    def __init__(self, spec: PoolSpec | None = None, *, log_dir: str | os.PathLike | None = None,
                 label: str = "", **shortcuts: object) -> None:
        spec, _, _ = build_specs(spec, caller="WorkerPool", only=(PoolSpec,), **shortcuts)
        check_strategy(spec.strategy, spec.kind)
        if spec.start_method is None:  # record the one used: a saved run names it
            spec = replace(spec, start_method=multiprocessing.get_start_method())
        self.spec = spec
        self.label = label
        self._setup: Setup | None = None
        if log_dir is None:
            _sweep_abandoned_logs()
            log_dir = tempfile.mkdtemp(prefix=f"{_LOG_PREFIX}{os.getpid()}-")
            weakref.finalize(self, shutil.rmtree, log_dir, ignore_errors=True)
        self.log_dir = str(log_dir)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        self.replacements: list[Replacement] = []
        self._listener: socket.socket | None = None
        self._slots: list[_Slot] = []
        self._retired: list[_Worker] = []  # restarted on purpose, finishing in their own time
        self._ready_timeout = 15.0
        self._lock = threading.Lock()  # guards _slots and _retired against the supervisor
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def workers(self) -> int:
        """How many worker slots (processes, for a hybrid pool)."""
        return self.spec.workers

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def strategy(self) -> str:
        return self.spec.strategy

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def start_method(self) -> str:
        """The start method the workers use (the platform's default if the spec named none)."""
        return self.spec.start_method or ""

    # -- starting ---------------------------------------------------------------
    def start(self, *, ready_timeout: float = 15.0) -> "WorkerPool":
        """Bind the socket, start every worker, wait until each is waiting; return self.

        Args:
            ready_timeout: seconds one worker may take to become ready before it
                counts as a failed boot.
        """
        if self._listener is not None:
            raise RuntimeError("this pool has already been started")
        self._ready_timeout = ready_timeout
        spec = self.spec
        reuseport = STRATEGIES[spec.strategy].own_socket  # each worker binds its own
        if reuseport and not spec.join and spec.port:
            _refuse_a_taken_port(spec.host, spec.port)  # the bind below would join it
        self._listener = open_listener(spec.host, spec.port, backlog=spec.backlog,
                                       listen=not reuseport, reuseport=reuseport)
        shared = Shared(address=self._listener.getsockname()[:2], backlog=spec.backlog,
                        workers=spec.workers, threads=spec.threads)
        self._setup = set_up(STRATEGIES[spec.strategy], self._listener, shared,
                             lock_dir=self.log_dir,
                             context=multiprocessing.get_context(self.start_method))
        try:
            for slot in range(self.workers):
                with self._lock:
                    self._slots.append(_Slot(self._launch(slot, 0),
                                             boot_deadline=time.monotonic() + ready_timeout))
                # One at a time, each ready before the next starts: the kernel queues them in
                # slot order.
                self._wait_for(slot)
            if self._setup.acceptor is not None:  # handoff: deal only to ready workers
                self._setup.acceptor.start()
        except BaseException:
            self.stop()
            raise
        if self.spec.supervise:
            self._supervisor = threading.Thread(target=self._supervise,
                                                name="acceptlab-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def _launch(self, slot: int, generation: int) -> _Worker:
        spec = WorkerSpec(slot, generation, self.strategy, self.protocol, self.spec.work_for(slot),
                          self.spec.limits, self.log_dir, self._setup.shared,
                          self.spec.settings, record=self.spec.record)
        listener = self._setup.listener_for(slot, self._listener)
        self._setup.forget_in_flight(slot)  # a dead generation's connections died with it
        if self.kind == "thread":
            return _ThreadWorker(listener, spec)
        return _ProcessWorker(multiprocessing.get_context(self.start_method), listener, spec,
                              threads=self.spec.threads)

    def _wait_for(self, slot: int) -> None:
        """Block until ``slot`` serves; raise its :class:`WorkerBootError` if it ends up down."""
        while True:
            with self._lock:
                state = self._advance(slot)
                entry = self._slots[slot]
            if state == "serving":
                return
            if state in ("down", "stopped"):
                raise entry.error or RuntimeError(f"worker {slot} was stopped from outside")
            if state == "retrying":
                time.sleep(max(0.0, min(entry.retry_at - time.monotonic(), 0.05)))
            else:
                entry.worker.wait_ready(0.05)

    def _why_a_worker_cannot_start(self) -> str:
        """The usual cause of a process worker dying at birth, when it applies ('' otherwise)."""
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
        if self.kind != "thread" and self.start_method != "fork" and main_file.startswith("<"):
            # spawn and forkserver start a fresh interpreter that re-imports the caller's
            # __main__ from its file; code typed into `python -` has no file to import.
            return (f"; {self.start_method} workers re-import __main__ from its file, and "
                    f"{main_file} is not one: run the code from a .py file or a notebook, "
                    f"or use start_method='fork' or kind='thread'")
        return ""

    # -- what callers look at ------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the pool listens on; connect here."""
        if self._listener is None:
            raise RuntimeError("start the pool first")
        return self._setup.shared.address

    @property
    def listening_socket(self) -> socket.socket:
        """The socket the workers share (for ``reuseport``, a bound placeholder that does not listen)."""
        if self._listener is None:
            raise RuntimeError("start the pool first")
        return self._listener

    @property
    def idents(self) -> list[int]:
        """Each slot's worker as the kernel names it: process id, or native thread id for a thread."""
        with self._lock:
            return [entry.worker.ident for entry in self._slots]

    @property
    def pids(self) -> list[int]:
        """The OS process each slot's worker runs in: the child's pid, or this process's for threads."""
        with self._lock:
            return [entry.worker.pid for entry in self._slots]

    def alive(self) -> list[bool]:
        """Whether each slot's current worker is running (False for a slot left down)."""
        with self._lock:
            return [entry.worker.is_alive() for entry in self._slots]

    def status(self) -> list[SlotStatus]:
        """Each slot's generation, state (starting, serving, retrying, down, stopped) and error."""
        with self._lock:
            return [SlotStatus(slot, entry.generation, entry.state, entry.worker.ident,
                               entry.worker.pid, entry.boot_failures, entry.error)
                    for slot, entry in enumerate(self._slots)]

    def check(self) -> None:
        """Raise the :class:`WorkerBootError` of the first slot left down, if any."""
        with self._lock:
            self._raise_boot_error()

    def _raise_boot_error(self) -> None:
        for entry in self._slots:
            if entry.error is not None:
                raise entry.error

    def events(self) -> "pd.DataFrame":
        """Every worker's wakeups so far, one row each (see :mod:`acceptlab.server.eventlog`)."""
        return read_events(self.log_dir, run=self.label, kind=self.kind, strategy=self.strategy)

    # -- faults and restarts --------------------------------------------------------------
    def kill(self, slot: int) -> None:
        """Make slot ``slot``'s worker die, as a bug or the OOM killer would.

        A process gets SIGKILL at once.  A thread cannot be killed from outside
        in Python, so it is told to crash: it raises :class:`InjectedCrash` on
        the next connection it accepts (which that client then loses).  The
        supervisor then replaces it, as it would any dead worker.

        Args:
            slot: which slot's worker dies.
        """
        with self._lock:
            self._raise_boot_error()
            self._slots[slot].worker.crash()

    def restart(self, slot: int, *, graceful: bool = True) -> None:
        """Replace slot ``slot``'s worker on purpose with a new generation; return once it is ready.

        Why: a restart is what a deploy or a config reload does to every
        worker, one at a time, and what it costs depends on the design (a
        shared socket keeps the queue; a ``reuseport`` worker's queue goes with
        its socket).  The restart is recorded in :attr:`replacements` like a death.

        Args:
            slot: which slot.
            graceful: True: the worker takes no new connection, finishes the one
                it holds and exits.  (A process leaves its wait at once; a thread
                asleep on the shared socket cannot be woken alone, so it serves
                one more connection first.)  False: it dies as :meth:`kill`
                makes it die, losing the conversation it held.
        """
        with self._lock:
            self._raise_boot_error()
            entry = self._slots[slot]
            if entry.state != "serving":
                raise RuntimeError(f"worker {slot} is {entry.state}, not serving: nothing to restart")
            old = entry.worker
            if graceful:
                old.retire()
            else:
                old.crash()
            self._retired.append(old)
            self._next_generation(slot, "restarted gracefully" if graceful else "restarted: killed",
                                  now())
        self._wait_for(slot)

    # -- the supervisor ------------------------------------------------------------
    def _supervise(self) -> None:
        """Every ``interval`` seconds, move each slot along its life (see the module docstring)."""
        while not self._stopping.wait(self.spec.interval):
            for slot in range(self.workers):
                with self._lock:  # slot by slot, so kill() and restart() need not wait long
                    if self._stopping.is_set():
                        return
                    self._advance(slot)
            with self._lock:
                for worker in [w for w in self._retired if not w.is_alive()]:
                    worker.close()
                    self._retired.remove(worker)

    def _advance(self, slot: int) -> str:
        """One step of slot ``slot``'s life, without blocking; return its state.  Hold ``_lock``."""
        entry = self._slots[slot]
        worker = entry.worker
        if entry.state == "starting":
            if worker.is_ready():
                entry.state, entry.boot_failures = "serving", 0
            elif not worker.is_alive() or time.monotonic() > entry.boot_deadline:
                self._boot_failed(slot, entry)
        elif entry.state == "retrying" and time.monotonic() >= entry.retry_at:
            self._next_generation(slot, f"failed to start ({entry.error_exit})", entry.t_failed_ns)
        elif entry.state == "serving" and not worker.is_alive():
            if worker.asked_to_stop():
                entry.state = "stopped"
                logger.warning("worker %d (%d) was asked to stop (SIGTERM); not replacing it",
                               slot, worker.ident)
            else:
                words = worker.last_words()  # its stderr is in a file: quote the error line
                self._next_generation(slot, worker.exit_description()
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
        exit, words = worker.exit_description(), worker.last_words()
        entry.error_exit = exit
        # While start() runs, its caller gets the error, which counts the attempts: no log lines.
        log = logger.log if self._supervisor is not None else _quiet
        if entry.boot_failures >= self.spec.boot_attempts:
            entry.state = "down"
            entry.error = WorkerBootError(slot, entry.boot_failures, exit, words,
                                          self._why_a_worker_cannot_start())
            log(logging.ERROR, "%s", entry.error)
        else:
            entry.state = "retrying"
            entry.retry_at = time.monotonic() + _BACKOFF * 2 ** (entry.boot_failures - 1)
            log(logging.WARNING, "worker %d died while starting (%s)%s; retrying", slot, exit,
                f": {words}" if words else "")

    def _next_generation(self, slot: int, why: str, t_detected_ns: int) -> None:
        """Start slot ``slot``'s next generation and record the replacement.  Hold ``_lock``."""
        entry = self._slots[slot]
        old = entry.worker
        entry.generation += 1
        entry.worker = fresh = self._launch(slot, entry.generation)
        entry.state = "starting"
        entry.boot_deadline = time.monotonic() + self._ready_timeout
        if old not in self._retired:
            old.close()
        self.replacements.append(Replacement(slot, entry.generation - 1, old.ident, why,
                                             t_detected_ns, fresh.ident, now()))
        # A restart asked for is news only to a debugger; a death or a failed boot is a warning.
        # While start() runs, its caller gets any error, which counts the attempts: no lines.
        level = logging.INFO if why.startswith("restarted") else logging.WARNING
        log = logger.log if self._supervisor is not None else _quiet  # as in _boot_failed
        log(level, "worker %d (%d) %s; started generation %d as %d", slot, old.ident,
            why if why.startswith(("restarted", "failed")) else f"died with {why}",
            entry.generation, fresh.ident)

    # -- stopping ----------------------------------------------------------------------
    def stop(self, *, timeout: float = 1.0) -> None:
        """Stop every worker and free the port; safe to call twice.  Returns within ~``timeout`` s.

        Every worker is asked to stop; whoever is still running halfway
        through ``timeout`` is forced, and one warning names them.

        Args:
            timeout: seconds the whole stop may take.
        """
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        if self._setup is not None and self._setup.acceptor is not None:
            self._setup.acceptor.stop()  # deal no more connections to workers that are leaving
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = [entry.worker for entry in self._slots] + self._retired
        for worker in workers:
            worker.ask_to_stop()
        grace = time.monotonic() + timeout / 2
        for worker in workers:
            worker.join(grace - time.monotonic())
        lingering = [worker for worker in workers if worker.is_alive()]
        for worker in lingering:
            worker.force()
        for worker in lingering:
            worker.join(max(0.05, deadline - time.monotonic()))
        if lingering:
            stuck = [w.ident for w in lingering if w.is_alive()]
            logger.warning("workers %s did not stop within %.2f s and were forced%s",
                           [w.ident for w in lingering], timeout / 2,
                           f"; still running: {stuck} (daemonic: they end with this process)"
                           if stuck else "")
        for worker in workers:
            worker.close()
        if self._listener is not None:
            self._listener.close()
        if self._setup is not None:
            self._setup.close()  # the shared epoll, the handoff channels

    def __enter__(self) -> "WorkerPool":
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = show_address(*self.address) if self._listener else "not started"
        return (f"<WorkerPool {self.workers} {self.kind} workers, {self.strategy}, "
                f"{self.protocol}, {where}>")


_LOG_PREFIX = "acceptlab-pool-"  # + the owning process's pid + "-" + random letters


def _sweep_abandoned_logs() -> None:
    """Delete temporary log directories whose pool's process no longer exists.

    A pool removes its own temporary directory when it is garbage-collected or
    its process exits normally.  A process that is killed (a notebook kernel
    restarted or SIGKILLed) cannot, so the next pool on this machine does it:
    only directories of this user, named after a process that is gone.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{_LOG_PREFIX}*-*"):
        owner = path.name[len(_LOG_PREFIX):].split("-", 1)[0]
        try:
            if not owner.isdigit() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue  # removed by someone else meanwhile
        if not process_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def _quiet(*args: object) -> None:
    """A log call that says nothing (see :meth:`WorkerPool._boot_failed`)."""


def _shut(sock: socket.socket) -> None:
    """shutdown() wakes every thread blocked on ``sock`` (close() alone does not on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected
