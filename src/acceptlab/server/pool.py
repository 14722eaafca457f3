"""WorkerPool: N workers, threads or processes, accepting on ONE socket, kept alive by a supervisor.

The ordering rule comes first, because every lesson relies on it: the pool
starts its workers one at a time, each ready (about to wait) before the next
starts, so the kernel queues the sleepers in slot order: worker 0 at the head,
then 1, 2, 3.  With blocking ``accept()`` the head is woken first, which is
why the first connections go 0, 1, 2, 3.

This is the book's pre-forked / pre-threaded server: the parent creates and
binds the listening socket, starts N workers that each call ``accept()`` on
it, and replaces any worker that dies.  The kernel, not the parent, decides
which worker gets each connection; the parent never touches a connection.

How to use it::

    with WorkerPool(workers=4, kind="process") as pool:
        ...connect to pool.address...
    events = pool.events()        # one row per wakeup, a pandas DataFrame

Callers use :meth:`start`, :attr:`address`, :meth:`kill`, :meth:`restart`,
:meth:`stop`, :meth:`events`, :meth:`status` and :attr:`replacements`.  What
the pool is (workers, kind, strategy...) is its :class:`~acceptlab.specs.PoolSpec`.
The parts behind this facade: :mod:`acceptlab.server.handles` (a thread and a
process behind one interface), :mod:`acceptlab.server.supervisor` (each slot's
life, as a table of states) and :mod:`acceptlab.server.sharing` (what the
workers of a strategy share).

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
  killed outright (see :func:`acceptlab.server.process.process_main`).
* Event logs live in ``log_dir`` (a temporary directory unless given), one
  file per worker generation, beside each process's stderr; they outlive the
  workers, so :meth:`events` works after :meth:`stop`.  A temporary one is
  deleted with the pool, or, if its process was killed, by the next pool
  started on the machine.

Error handling
--------------
* A port that already has a listener raises :class:`PortInUse` naming it,
  even for ``reuseport`` (which the kernel would let join), unless the spec's
  ``join_port`` is true.
* A strategy this platform lacks raises :class:`acceptlab.linux.support.Unavailable`
  before anything starts.
* A worker that cannot boot makes :meth:`start` raise :class:`WorkerBootError`;
  later, a slot left down shows in :meth:`status` and :meth:`alive`, and
  :meth:`check` (and :meth:`kill`, :meth:`restart`) raise its error.
* A worker that dies later is replaced in the same slot with its generation
  plus one, and one warning line names the slot and the exit code.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..basics import address_family, show_address
from ..linux.support import check_strategy
from ..specs import PoolSpec, build_specs
from .eventlog import read_events
from .handles import ProcessHandle, ThreadHandle, WorkerHandle
from .process import process_alive
from .sharing import Setup, Shared, set_up
from .strategies import STRATEGIES
from .supervisor import Replacement, SlotStatus, Supervisor, WorkerBootError
from .worker import WorkerSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WorkerPool", "PortInUse", "WorkerBootError", "Replacement", "SlotStatus",
           "open_listener"]

logger = logging.getLogger("acceptlab.server.pool")


class PortInUse(OSError):
    """The port is already taken by another socket."""


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
                                          f"(pass join_port=True, or --join, to share it on purpose)"
                        ) from None


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
        self.spec, self.label = spec, label
        if log_dir is None:
            _sweep_abandoned_logs()
            log_dir = tempfile.mkdtemp(prefix=f"{_LOG_PREFIX}{os.getpid()}-")
            weakref.finalize(self, shutil.rmtree, log_dir, ignore_errors=True)
        self.log_dir = str(log_dir)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        self._listener: socket.socket | None = None
        self._setup: Setup | None = None
        self._supervisor: Supervisor | None = None

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
    def interval(self) -> float:
        """Seconds between the supervisor's looks at the workers."""
        return self.spec.interval

    @property
    def start_method(self) -> str:
        """The start method the workers use (the platform's default if the spec named none)."""
        return self.spec.start_method or ""

    # -- starting ---------------------------------------------------------------
    def start(self, *, ready_timeout: float = 15.0) -> "WorkerPool":
        """Bind the socket, start every worker, wait until each is waiting; return self.

        One at a time, each ready before the next starts: the kernel queues the
        sleepers in slot order (the module docstring's first paragraph).

        Args:
            ready_timeout: seconds one worker may take to become ready before it
                counts as a failed boot.
        """
        if self._listener is not None:
            raise RuntimeError("this pool has already been started")
        spec = self.spec
        own_socket = STRATEGIES[spec.strategy].own_socket  # reuseport: each worker binds its own
        if own_socket and not spec.join_port and spec.port:
            _refuse_a_taken_port(spec.host, spec.port)  # the bind below would join it
        self._listener = open_listener(spec.host, spec.port, backlog=spec.backlog,
                                       listen=not own_socket, reuseport=own_socket)
        shared = Shared(address=self._listener.getsockname()[:2], backlog=spec.backlog,
                        workers=spec.workers, threads=spec.threads)
        self._setup = set_up(STRATEGIES[spec.strategy], self._listener, shared,
                             lock_dir=self.log_dir,
                             context=multiprocessing.get_context(self.start_method))
        self._supervisor = Supervisor(self._launch, boot_attempts=spec.boot_attempts,
                                      ready_timeout=ready_timeout,
                                      hint=self._why_a_worker_cannot_start)
        try:
            for _ in range(spec.workers):
                self._supervisor.add_slot()  # returns once that worker waits
            if self._setup.acceptor is not None:  # handoff: deal only to ready workers
                self._setup.acceptor.start()
        except BaseException:
            self.stop()
            raise
        if spec.supervise:
            self._supervisor.watch(spec.interval)
        return self

    def _launch(self, slot: int, generation: int) -> WorkerHandle:
        """Start generation ``generation`` of slot ``slot``: a thread, or a process."""
        assert self._setup is not None and self._listener is not None
        spec = WorkerSpec(slot, generation, self.strategy, self.protocol, self.spec.work_for(slot),
                          self.spec.limits, self.log_dir, self._setup.shared,
                          self.spec.settings, record=self.spec.record)
        listener = self._setup.listener_for(slot, self._listener)
        self._setup.forget_in_flight(slot)  # a dead generation's connections died with it
        if self.kind == "thread":
            return ThreadHandle(listener, spec)
        return ProcessHandle(multiprocessing.get_context(self.start_method), listener, spec,
                             threads=self.spec.threads)

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
        if self._setup is None:
            raise RuntimeError("start the pool first")
        return self._setup.shared.address

    @property
    def listening_socket(self) -> socket.socket:
        """The socket the workers share (for ``reuseport``, a bound placeholder that does not listen)."""
        if self._listener is None:
            raise RuntimeError("start the pool first")
        return self._listener

    @property
    def replacements(self) -> list[Replacement]:
        """Every new generation started in a slot, in order (deaths, failed boots, restarts)."""
        return self._supervisor.replacements if self._supervisor is not None else []

    def status(self) -> list[SlotStatus]:
        """Each slot's generation, state (starting, serving, retrying, down, stopped) and error."""
        return self._supervisor.status() if self._supervisor is not None else []

    @property
    def idents(self) -> list[int]:
        """Each slot's worker as the kernel names it: process id, or native thread id for a thread."""
        return [slot.ident for slot in self.status()]

    @property
    def pids(self) -> list[int]:
        """The OS process each slot's worker runs in: the child's pid, or this process's for threads."""
        return [slot.pid for slot in self.status()]

    def alive(self) -> list[bool]:
        """Whether each slot's current worker is running (False for a slot left down)."""
        if self._supervisor is None:
            return []
        with self._supervisor.lock:
            return [entry.worker.is_alive() for entry in self._supervisor.slots]

    def check(self) -> None:
        """Raise the :class:`WorkerBootError` of the first slot left down, if any."""
        if self._supervisor is not None:
            with self._supervisor.lock:
                self._supervisor.raise_boot_error()

    def events(self) -> "pd.DataFrame":
        """Every worker's wakeups so far, one row each (see :mod:`acceptlab.server.eventlog`)."""
        return read_events(self.log_dir, run=self.label, kind=self.kind, strategy=self.strategy)

    # -- faults and restarts --------------------------------------------------------------
    def kill(self, slot: int) -> None:
        """Make slot ``slot``'s worker die, as a bug or the OOM killer would.

        A process gets SIGKILL at once.  A thread cannot be killed from outside
        in Python, so it is told to crash: it raises
        :class:`~acceptlab.server.worker.InjectedCrash` on the next connection
        it accepts (which that client then loses).  The supervisor then
        replaces it, as it would any dead worker.

        Args:
            slot: which slot's worker dies.
        """
        self._started().crash(slot)

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
        self._started().restart(slot, graceful=graceful)

    def _started(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("start the pool first")
        return self._supervisor

    # -- stopping ----------------------------------------------------------------------
    def stop(self, *, timeout: float = 1.0) -> None:
        """Stop every worker and free the port; safe to call twice.  Returns within ~``timeout`` s.

        Every worker is asked to stop; whoever is still running halfway
        through ``timeout`` is forced, and one warning names them.

        Args:
            timeout: seconds the whole stop may take.
        """
        if self._supervisor is not None:
            self._supervisor.stop_watching()
        if self._setup is not None and self._setup.acceptor is not None:
            self._setup.acceptor.stop()  # deal no more connections to workers that are leaving
        deadline = time.monotonic() + timeout
        workers = self._supervisor.workers() if self._supervisor is not None else []
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


