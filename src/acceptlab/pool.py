"""WorkerPool: N workers, threads or processes, accepting on ONE socket, kept alive by a supervisor.

This is the book's pre-forked / pre-threaded server: the parent creates and
binds the listening socket, starts N workers that each call ``accept()`` on
it, and replaces any worker that dies.  The kernel, not the parent, decides
which worker gets each connection; the parent never touches a connection.

How to use it::

    with WorkerPool(workers=4, kind="process") as pool:
        ...connect to pool.address...
    events = pool.events()        # one row per wakeup, a pandas DataFrame

Callers use :meth:`start`, :attr:`address`, :meth:`kill`, :meth:`stop`,
:meth:`events` and :attr:`replacements`.

Resource handling
-----------------
* :meth:`stop` returns within about a second for every kind and strategy and
  frees the port: processes get SIGTERM, then SIGKILL if they linger; threads
  cannot be signalled, so the pool shuts their sockets down under them, which
  wakes every blocked ``accept()``, ``poll()`` and ``recv()``.
* Process workers are daemonic (``multiprocessing`` terminates them when the
  parent exits normally), ignore SIGINT (the pool decides what Ctrl-C means),
  and exit by themselves within a fraction of a second if the parent is
  killed outright (see :func:`acceptlab.worker.process_main`).
* Event logs live in ``log_dir`` (a temporary directory unless given), one
  file per worker generation; they outlive the workers, so :meth:`events`
  works after :meth:`stop`.  A temporary one is deleted with the pool, or,
  if its process was killed, by the next pool started on the machine.

Error handling
--------------
* A taken port raises :class:`PortInUse` naming it.
* A strategy this platform lacks raises :class:`acceptlab.strategies.Unavailable`
  before anything starts.
* A worker that dies while starting up makes :meth:`start` raise.
* A worker that dies later is replaced in the same slot with its generation
  plus one, and one warning line names the slot and the exit code.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .conversation import Limits
from .eventlog import log_path, read_events
from .strategies import Setting, check_strategy
from .work import parse_work
from .worker import (Control, InjectedCrash, WorkerSpec, process_alive, process_main, serve,
                     stop_mark)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WorkerPool", "PortInUse", "Replacement", "open_listener"]

logger = logging.getLogger("acceptlab.pool")
now = time.monotonic_ns


class PortInUse(OSError):
    """The port is already taken by another socket."""


def open_listener(host: str, port: int, backlog: int = 128, listen: bool = True,
                  reuseport: bool = False) -> socket.socket:
    """Create, bind and (unless ``listen`` is false) listen: the socket every worker shares.

    ``SO_REUSEADDR`` lets a restarted server bind while old connections sit in
    TIME_WAIT (on Linux it does NOT let two servers listen on one port).
    ``reuseport=True, listen=False`` makes the placeholder a ``reuseport``
    pool holds so the port stays its own while each worker binds its own socket.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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


@dataclass(frozen=True)
class Replacement:
    """One supervisor intervention: slot ``slot`` died and was started again."""

    slot: int
    generation: int  # the generation that died
    pid: int
    exit: str  # 'exit code -9 (SIGKILL)', 'crashed: InjectedCrash', ...
    t_detected_ns: int
    new_pid: int
    t_started_ns: int


class _ThreadWorker:
    """A thread running :func:`serve`, with the :class:`Control` the pool uses to stop it."""

    def __init__(self, listener: socket.socket, spec: WorkerSpec) -> None:
        self.control = Control()
        self.died_of = "returned"
        self.thread = threading.Thread(target=self._run, args=(listener, spec),
                                       name=f"acceptlab-worker-{spec.slot}", daemon=True)
        self.thread.start()
        self.pid = os.getpid()

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

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def exit_description(self) -> str:
        return self.died_of

    def asked_to_stop(self) -> bool:
        return self.control.stopping.is_set()


class _ProcessWorker:
    """A ``multiprocessing`` process running :func:`process_main`."""

    def __init__(self, context: multiprocessing.context.BaseContext,
                 listener: socket.socket, spec: WorkerSpec) -> None:
        self.mark = stop_mark(spec.log_dir, spec.slot, spec.generation)
        self.process = context.Process(target=process_main, args=(listener, spec),
                                       name=f"acceptlab-worker-{spec.slot}", daemon=True)
        self.process.start()
        self.pid = self.process.pid or 0

    @property
    def ident(self) -> int:
        return self.pid

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def exit_description(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"exit code {code} ({signal.Signals(-code).name})"
        return f"exit code {code}"

    def asked_to_stop(self) -> bool:
        return self.mark.exists()  # it got SIGTERM (see acceptlab.worker.stop_mark)


class WorkerPool:
    """N workers sharing one listening socket, and a supervisor that replaces the dead.

    Parameters: ``workers`` (N), ``kind`` ('thread' or 'process'), ``strategy``
    (see :mod:`acceptlab.strategies`), ``protocol`` ('zen', 'lancelot',
    'http'), ``work`` ('none', 'sleep:MS', 'spin:MS', or a list giving each
    slot its own, e.g. ``['sleep:30', 'sleep:10', 'sleep:10']`` for one slow
    worker), ``host``/``port``
    (loopback and an ephemeral port by default), ``backlog``, ``start_method``
    ('fork', 'spawn', 'forkserver'; None means the platform default),
    ``limits`` (per-connection defences), ``supervise``/``interval`` (how often
    the supervisor looks for dead workers), ``log_dir`` (where event logs go),
    ``timeout`` (the ``timeout`` strategy's), ``record`` (False turns the event
    log off, only to measure what it costs).
    """

    def __init__(
        self,
        workers: int = 4,
        kind: str = "process",
        strategy: str = "blocking",
        protocol: str = "zen",
        work: str | Sequence[str] = "none",
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 128,
        start_method: str | None = None,
        limits: Limits = Limits(),
        supervise: bool = True,
        interval: float = 0.1,
        log_dir: str | os.PathLike | None = None,
        run: str = "",
        timeout: float = 1.0,
        record: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        check_strategy(strategy, kind)
        works = [work] if isinstance(work, str) else list(work)
        for spec in works:
            parse_work(spec)  # a bad spec fails here, not in a worker
        self.workers, self.kind, self.strategy = workers, kind, strategy
        self.protocol, self.work, self.limits = protocol, work, limits
        self.host, self.backlog, self.run = host, backlog, run
        self.supervise, self.interval, self.record = supervise, interval, record
        self.start_method = start_method or multiprocessing.get_start_method()
        self.setting = Setting(timeout=timeout, backlog=backlog)
        if log_dir is None:
            _sweep_abandoned_logs()
            log_dir = tempfile.mkdtemp(prefix=f"{_LOG_PREFIX}{os.getpid()}-")
            weakref.finalize(self, shutil.rmtree, log_dir, ignore_errors=True)
        self.log_dir = str(log_dir)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        self.replacements: list[Replacement] = []
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._slots: list[_ThreadWorker | _ProcessWorker] = []
        self._generations: list[int] = []
        self._lock = threading.Lock()  # guards _slots against the supervisor
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- starting ---------------------------------------------------------------
    def start(self, ready_timeout: float = 15.0) -> "WorkerPool":
        """Bind the socket, start every worker, wait until each is waiting; return self."""
        if self._listener is not None:
            raise RuntimeError("this pool has already been started")
        reuseport = self.strategy == "reuseport"
        self._listener = open_listener(self.host, self._requested_port, self.backlog,
                                       listen=not reuseport, reuseport=reuseport)
        self.setting = replace(self.setting, address=self._listener.getsockname()[:2],
                               lock_path=os.path.join(self.log_dir, "accept.lock"))
        if self.strategy == "shared-epoll":
            self.setting.shared_epoll = select.epoll()
            self.setting.shared_epoll.register(self._listener.fileno(), select.EPOLLIN)
        try:
            for slot in range(self.workers):
                self._generations.append(0)
                self._slots.append(self._launch(slot, 0))
                # Start them one at a time so the kernel queues them in slot order.
                self._wait_ready(slot, ready_timeout)
        except BaseException:
            self.stop()
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._supervise,
                                                name="acceptlab-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def _launch(self, slot: int, generation: int) -> _ThreadWorker | _ProcessWorker:
        work = self.work if isinstance(self.work, str) else self.work[slot % len(self.work)]
        spec = WorkerSpec(slot, generation, self.strategy, self.protocol, work,
                          self.limits, self.log_dir, self.setting, record=self.record)
        if self.kind == "thread":
            return _ThreadWorker(self._listener, spec)
        return _ProcessWorker(multiprocessing.get_context(self.start_method), self._listener, spec)

    def _wait_ready(self, slot: int, timeout: float) -> None:
        """Block until ``slot`` has opened its event log, i.e. is about to wait for connections."""
        path = log_path(self.log_dir, slot, self._generations[slot])
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self._slots[slot].is_alive():
                raise RuntimeError(f"worker {slot} died while starting "
                                   f"({self._slots[slot].exit_description()})"
                                   f"{self._why_a_worker_cannot_start()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {slot} did not start within {timeout} s")
            time.sleep(0.002)
        time.sleep(0.005)  # from opening its log to sleeping in the wait takes microseconds

    def _why_a_worker_cannot_start(self) -> str:
        """The usual cause of a process worker dying at birth, when it applies ('' otherwise)."""
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
        if self.kind == "process" and self.start_method != "fork" and main_file.startswith("<"):
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
        return self.setting.address

    @property
    def listening_socket(self) -> socket.socket:
        """The socket the workers share (for ``reuseport``, a bound placeholder that does not listen)."""
        if self._listener is None:
            raise RuntimeError("start the pool first")
        return self._listener

    @property
    def pids(self) -> list[int]:
        """Process id (processes) or native thread id (threads) of each slot's worker."""
        with self._lock:
            return [worker.ident for worker in self._slots]

    def alive(self) -> list[bool]:
        """Whether each slot's current worker is running."""
        with self._lock:
            return [worker.is_alive() for worker in self._slots]

    def events(self) -> "pd.DataFrame":
        """Every worker's wakeups so far, one row each (see :mod:`acceptlab.eventlog`)."""
        return read_events(self.log_dir, run=self.run, kind=self.kind, strategy=self.strategy)

    # -- faults ----------------------------------------------------------------------
    def kill(self, slot: int) -> None:
        """Make slot ``slot``'s worker die, as a bug or the OOM killer would.

        A process gets SIGKILL at once.  A thread cannot be killed from outside
        in Python, so it is told to crash: it raises :class:`InjectedCrash` on
        the next connection it accepts (which that client then loses).
        """
        with self._lock:
            worker = self._slots[slot]
        if isinstance(worker, _ProcessWorker):
            worker.process.kill()  # SIGKILL (TerminateProcess on Windows)
        else:
            worker.control.crash.set()

    # -- the supervisor ------------------------------------------------------------
    def _supervise(self) -> None:
        """Every ``interval`` seconds, replace each dead worker in its own slot.

        A worker that was *asked* to stop (SIGTERM from outside the pool, as
        ipykernel sends its children on a restart) is left stopped, with one
        log line: replacing it would undo what its sender wanted.
        """
        left_stopped: set[int] = set()
        while not self._stopping.wait(self.interval):
            for slot in range(self.workers):
                with self._lock:
                    worker = self._slots[slot]
                    if self._stopping.is_set() or worker.is_alive() or slot in left_stopped:
                        continue
                    if worker.asked_to_stop():
                        left_stopped.add(slot)
                        logger.warning("worker %d (%d) was asked to stop (SIGTERM); "
                                       "not replacing it", slot, worker.ident)
                        continue
                    self._replace(slot)

    def _replace(self, slot: int) -> None:
        dead, t_detected = self._slots[slot], now()
        generation = self._generations[slot] + 1
        self._generations[slot] = generation
        self._slots[slot] = fresh = self._launch(slot, generation)
        self.replacements.append(Replacement(slot, generation - 1, dead.ident,
                                             dead.exit_description(), t_detected,
                                             fresh.ident, now()))
        logger.warning("worker %d (%s %d) died with %s; started generation %d as %d",
                       slot, "pid" if self.kind == "process" else "thread", dead.ident,
                       dead.exit_description(), generation, fresh.ident)

    # -- stopping ----------------------------------------------------------------------
    def stop(self, timeout: float = 1.0) -> None:
        """Stop every worker and free the port; safe to call twice.  Returns within ~``timeout`` s."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._slots)
        if self.kind == "process":
            self._stop_processes(workers, deadline)
        else:
            self._stop_threads(workers, deadline)
        if self._listener is not None:
            self._listener.close()
        if self.setting.shared_epoll is not None:
            self.setting.shared_epoll.close()

    @staticmethod
    def _stop_processes(workers: list, deadline: float) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.process.terminate()  # SIGTERM: the worker unwinds and closes its log
        grace = time.monotonic() + (deadline - time.monotonic()) / 2
        for worker in workers:
            worker.process.join(max(0.0, grace - time.monotonic()))
        for worker in workers:
            if worker.is_alive():
                worker.process.kill()  # did not leave in time (stuck in a spin, say)
                worker.process.join(max(0.05, deadline - time.monotonic()))

    def _stop_threads(self, workers: list, deadline: float) -> None:
        for worker in workers:
            worker.control.stopping.set()
        if self._listener is not None:
            _shut(self._listener)  # wakes every thread blocked on the shared socket
        for worker in workers:
            for sock in list(worker.control.sockets):  # own sockets (reuseport), open conversations
                _shut(sock)
        for worker in workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [w.thread.name for w in workers if w.is_alive()]
        if stuck:
            logger.warning("threads still running after stop(): %s (daemonic: they end with "
                           "the process)", ", ".join(stuck))

    def __enter__(self) -> "WorkerPool":
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.address[0]}:{self.address[1]}" if self._listener else "not started"
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
    if os.name != "posix":
        return  # a pid and a user to compare with are POSIX notions
    for path in Path(tempfile.gettempdir()).glob(f"{_LOG_PREFIX}*-*"):
        owner = path.name[len(_LOG_PREFIX):].split("-", 1)[0]
        try:
            if not owner.isdigit() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue  # removed by someone else meanwhile
        if not process_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def _shut(sock: socket.socket) -> None:
    """shutdown() wakes every thread blocked on ``sock`` (close() alone does not on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected
