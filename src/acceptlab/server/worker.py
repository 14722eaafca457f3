"""The worker loop: the book's ``server_loop``, measured.

A worker does four things forever: wait for a connection (the strategy
decides how), hold the conversation, record what happened, and go back to
waiting.  The same function, :func:`serve`, runs in a thread or in a process;
only how it is started and stopped differs (see :mod:`acceptlab.server.pool`).

How a worker talks to its pool
------------------------------
* **Ready**: just before its first wait the worker sets ``control.ready``
  (a :class:`threading.Event` for a thread, one byte down a pipe for a
  process).  The pool starts the next worker only then, so the kernel queues
  the waiters in slot order, and a replacement that dies before this point
  failed to *boot* (see :class:`acceptlab.server.pool.WorkerBootError`).  "Just
  before" is microseconds, unless the worker is a thread that must first win
  the GIL back (up to the interpreter's 5 ms switch interval): so the order
  is nearly always, not always, the slot order.
* **Stop now**: ``control.stopping`` for a thread (the pool then shuts its
  sockets to wake it); SIGTERM for a process.
* **Retire** (a graceful restart): ``control.retiring``: take no new
  connection, finish the one in hand, leave.  A process gets SIGUSR1; if it is
  asleep in its wait, the handler ends the wait at once.
* **Crash** (a fault, on purpose): ``control.crash`` makes a thread raise
  :class:`InjectedCrash` on its next connection; a process just gets SIGKILL.

Error handling: a client's misbehaviour ends its conversation, never the
worker (:func:`acceptlab.server.conversation.converse` swallows it).  An ``accept()``
that fails for lack of resources (``EMFILE``: too many open files) is recorded
as an ``error`` wakeup and retried after a pause instead of killing the loop.
When the listening socket is shut down or closed under the worker, which is
how the pool stops threads, the loop ends.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Mapping, Protocol

from ..basics import now
from .conversation import Limits, converse
from .eventlog import EventWriter, NullWriter, log_path
from ..linux.kernel import voluntary_switches
from .protocol import get_protocol, served_by
from .sharing import Shared
from .strategies import make_waiter
from .work import parse_work

__all__ = ["WorkerSpec", "Control", "InjectedCrash", "serve", "process_main", "hybrid_main",
           "stop_mark",
           "stderr_path", "process_alive", "RETIRE_SIGNAL"]

_RETRY_PAUSE = 0.1  # seconds to wait after EMFILE/ENFILE before accepting again
_ORPHAN_CHECK = 0.2  # seconds between checks that the parent is still alive
RETIRE_SIGNAL = signal.SIGUSR1  # the kit's own meaning: finish the connection in hand, then exit


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs to know; small and picklable, so it can cross into a process."""

    slot: int
    generation: int
    strategy: str
    protocol: str
    work: str
    limits: Limits
    log_dir: str
    shared: Shared = field(default_factory=Shared)
    options: Mapping[str, float] = field(default_factory=dict)  # the strategy's own
    parent_pid: int = field(default_factory=os.getpid)  # the pool's process
    record: bool = True  # False only to measure what recording costs (bench/)


class InjectedCrash(Exception):
    """Raised inside a thread worker on purpose: a thread cannot be killed from outside."""


class Flag(Protocol):
    """What ``control.ready`` must offer: ``set()`` (a ``threading.Event`` does)."""

    def set(self) -> None: ...


@dataclass
class Control:
    """The few flags a pool and its worker share (see the module docstring).

    ``sockets`` lists what the pool must shut down to wake a THREAD from a
    blocking call (its listener, its open conversation); ``waiting`` is true
    while the worker sleeps in its wait, so a process's retire signal knows
    whether it may cut that wait short.
    """

    ready: Flag = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    retiring: threading.Event = field(default_factory=threading.Event)
    crash: threading.Event = field(default_factory=threading.Event)
    sockets: list = field(default_factory=list)
    waiting: bool = False

    def going(self) -> bool:
        """Should the loop end instead of waiting again?"""
        return self.stopping.is_set() or self.retiring.is_set()


def serve(listener: socket.socket, spec: WorkerSpec, control: Control | None = None) -> None:
    """Run one worker until it is told to go or its listener goes away.

    Per wait it records when it began (at once, so an endless wait shows too);
    when it returns, the outcome, when accept() returned, the client's port and
    the voluntary context switches this thread made *during the wait* (the
    wakeups that EAGAIN counts miss); and, after the conversation, when it ended.

    Args:
        listener: the pool's listening socket (``reuseport`` binds its own instead).
        spec: slot, generation, strategy, protocol, work, limits and log directory.
        control: the flags shared with the pool; a fresh :class:`Control` if None.
    """
    control = control or Control()
    protocol = get_protocol(spec.protocol)
    work = parse_work(spec.work)
    tid = threading.get_native_id()
    who = served_by(spec.slot, os.getpid(), tid)
    waiter = make_waiter(spec.strategy, listener, spec.shared, slot=spec.slot, options=spec.options)
    control.sockets.append(waiter.listener)
    writer = EventWriter if spec.record else NullWriter
    # The context-switch count feeds only the log: with the log off, don't pay for reading it.
    count = voluntary_switches if spec.record else _uncounted
    with writer(log_path(spec.log_dir, spec.slot, spec.generation), spec.slot,
                spec.generation) as log:
        try:
            control.ready.set()  # what remains before the wait takes microseconds
            while True:
                control.waiting = True  # till the wait returns, a retire signal ends us (_retire)
                if control.going():
                    return
                row = log.begin_wait(tid, now())
                switches = count()
                try:
                    wake = waiter.wait()
                except OSError as exc:
                    if control.going() or exc.errno in (errno.EINVAL, errno.EBADF):
                        return  # the listener was shut down or closed: time to go
                    log.woke(row, now(), "error", nvcsw=_since(switches, count))
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        time.sleep(_RETRY_PAUSE)  # out of resources: let some be freed
                    continue
                finally:
                    control.waiting = False
                log.woke(row, wake.t_wake_ns, wake.outcome, wake.t_accept_ns, wake.peer_port,
                         _since(switches, count))
                if wake.conn is not None:
                    with wake.conn:
                        if control.crash.is_set():
                            raise InjectedCrash(f"worker {spec.slot} crashed on purpose")
                        control.sockets.append(wake.conn)  # so stop() can wake our recv()
                        if not control.stopping.is_set():  # stop() may have come just now
                            converse(wake.conn, protocol, who, work, spec.limits)
                        control.sockets.remove(wake.conn)
                    waiter.finished()  # strategies that count open connections count down
                    log.done(row, now())
        finally:
            waiter.close()


def _since(switches: int | None, count: Callable[[], int | None]) -> int:
    """Voluntary context switches since ``count()`` gave ``switches`` (-1 where unavailable)."""
    current = None if switches is None else count()
    return -1 if current is None else current - switches


def _uncounted() -> None:
    """``count`` when the event log is off: nothing would read the number."""
    return None


class _PipeFlag:
    """``control.ready`` for a process: the first ``set()`` sends one byte to the pool."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe: Connection | None = pipe

    def set(self) -> None:
        if self.pipe is not None:
            self.pipe.send_bytes(b"ready")
            self.pipe.close()
            self.pipe = None


def process_main(listener: socket.socket, spec: WorkerSpec, ready: Connection) -> None:
    """Entry point of a worker PROCESS: module-level, so spawn and forkserver can import it.

    Output: the worker's stderr goes to :func:`stderr_path`, so the pool can
    quote the last line of a worker that died (a traceback's last line names
    the error).  Signals: SIGTERM ends the worker at once (``SystemExit``
    unwinds the loop and closes its log) and leaves a :func:`stop_mark`, so
    the supervisor knows the worker was asked to go and does not start another
    in its place.  :data:`RETIRE_SIGNAL` (SIGUSR1) retires it gracefully.
    SIGINT is ignored: Ctrl-C in a terminal or an interrupted Jupyter kernel
    signals the whole process group, and the pool, not each worker, decides
    what an interrupt means.  A watchdog thread ends the worker when the pool's
    process disappears, so a killed notebook kernel leaves no orphan holding
    the port.

    Args:
        listener: the pool's listening socket.
        spec: what this worker is (see :class:`WorkerSpec`).
        ready: the write end of the pipe on which the worker says it is ready.
    """
    _settle_in(listener, spec)
    control = Control(ready=_PipeFlag(ready))
    signal.signal(RETIRE_SIGNAL, lambda signum, frame: _retire(control))
    serve(listener, spec, control)


def _settle_in(listener: socket.socket, spec: WorkerSpec) -> None:
    """What every worker process does first (see :func:`process_main` for why each)."""
    _stderr_into(stderr_path(spec.log_dir, spec.slot, spec.generation))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark = stop_mark(spec.log_dir, spec.slot, spec.generation)
    signal.signal(signal.SIGTERM, lambda signum, frame: _exit_asked(mark))
    _drop_inherited_sockets(keep=listener.fileno())
    _watch_pool(spec.parent_pid)


def hybrid_main(listener: socket.socket, spec: WorkerSpec, ready: Connection,
                threads: int) -> None:
    """Entry point of a HYBRID worker process: ``threads`` threads, each the book's loop.

    This is gunicorn's gthread worker or Puma's clustered mode: processes for
    the CPUs, threads inside each for waiting on I/O.  Every thread waits on
    the same shared socket, so an idle thread of a busy process competes for
    the next connection as hard as a thread of an idle one; the
    ``busy-sleep``, ``exact`` and ``handoff-least-busy`` strategies are the
    ecosystem's answers.  Thread ``t`` of slot ``p`` logs as slot
    ``p * threads + t``; the process is the pool's slot ``p`` (its stop mark,
    its stderr, its supervision).

    Signals are those of :func:`process_main`.  Retiring (a graceful restart)
    takes no new connection in any thread and lets the threads that are
    mid-conversation finish before the process exits.

    Args:
        listener: the pool's listening socket (or this process's handoff channel).
        spec: what this worker process is (slot = the process's slot).
        ready: the pipe on which the process says all its threads are ready.
        threads: how many threads serve in this process.
    """
    _settle_in(listener, spec)
    all_ready = _Countdown(threads, _PipeFlag(ready))
    controls = [Control(ready=all_ready) for _ in range(threads)]
    retiring = threading.Event()
    signal.signal(RETIRE_SIGNAL, lambda signum, frame: _retire_all(controls, retiring))
    workers = [threading.Thread(target=serve, daemon=True, name=f"acceptlab-worker-{spec.slot}.{t}",
                                args=(listener, replace(spec, slot=spec.slot * threads + t),
                                      control))
               for t, control in enumerate(controls)]
    for worker in workers:
        worker.start()
    while not retiring.wait(_ORPHAN_CHECK) and any(worker.is_alive() for worker in workers):
        pass  # the main thread only waits: signals are delivered to it
    # Retiring: threads asleep in the wait hold nothing; those mid-conversation finish it.
    for worker, control in zip(workers, controls):
        while worker.is_alive() and not control.waiting:
            worker.join(0.01)


class _Countdown:
    """A ready flag shared by ``n`` threads: the ``n``-th ``set()`` sets the real one."""

    def __init__(self, n: int, flag: "Flag") -> None:
        self.left, self.flag, self.lock = n, flag, threading.Lock()

    def set(self) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.flag.set()


def _retire_all(controls: list[Control], retiring: threading.Event) -> None:
    """A hybrid process's retire signal: every thread takes no new connection."""
    for control in controls:
        control.retiring.set()
    retiring.set()


def _retire(control: Control) -> None:
    """Retire: no new connection.  Asleep in the wait?  Leave now; in a conversation?  Finish it.

    The one gap: a signal that lands in the microseconds between ``accept()``
    returning and ``control.waiting`` turning false ends the worker with that
    connection unserved (its client sees a reset).  Python offers no way to
    accept and unblock a signal atomically, as ``epoll_pwait`` does for epoll.
    """
    control.retiring.set()
    if control.waiting:
        raise SystemExit(0)


def stderr_path(log_dir: str | os.PathLike, slot: int, generation: int) -> Path:
    """Where a worker process's stderr goes: beside its event log, one file per generation."""
    return log_path(log_dir, slot, generation).with_suffix(".stderr")


def _stderr_into(path: Path) -> None:
    """Point file descriptor 2 (and so ``sys.stderr``) at ``path``, appending."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _drop_inherited_sockets(keep: int) -> None:
    """Let go of every socket this process inherited except the listener.

    Under ``fork`` a worker starts with a copy of every descriptor of the
    pool's process: in a notebook that includes the client's open connections
    and other pools' listeners.  The kernel closes a connection only when its
    LAST descriptor closes, so a worker holding a copy would keep a finished
    client's connection open (its server never sees the hang-up) or keep an
    old pool's port busy.  Each such descriptor is pointed at /dev/null with
    ``dup2`` rather than closed, so its number stays taken and no stale socket
    object can later close a descriptor that a new connection reused.
    """
    listing = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    if not os.path.isdir(listing):
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in map(int, os.listdir(listing)):
            try:
                if fd not in (keep, null) and stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd, inheritable=False)
            except OSError:
                pass  # the descriptor of the listing itself, already gone
    finally:
        os.close(null)


def stop_mark(log_dir: str | os.PathLike, slot: int, generation: int) -> Path:
    """The file a worker process leaves beside its event log when SIGTERM asks it to stop.

    Whoever sent the signal (the pool's :meth:`stop`, ipykernel shutting its
    children down on a restart, ``kill`` from a shell) wants the worker gone.
    A supervisor that replaced it would fight them: a restarting notebook
    kernel would start fresh workers as it exits.  So a dead worker with this
    mark is left dead, and a dead worker without it (SIGKILL, a crash) is
    replaced.
    """
    return log_path(log_dir, slot, generation).with_suffix(".stopped")


def _exit_asked(mark: Path) -> None:
    try:
        mark.touch()
    except OSError:
        pass  # the log directory is gone: so is anyone who would read the mark
    raise SystemExit(0)


def _watch_pool(pool_pid: int) -> None:
    """Start a daemon thread that exits this process once the pool's process is gone.

    Why not ``os.getppid()``, as gunicorn's workers check?  Under ``forkserver``
    the parent is the fork server, which by design lives as long as any of its
    children: it would never change.  So the pool's own pid is watched instead.
    """
    def watch() -> None:
        while process_alive(pool_pid):
            time.sleep(_ORPHAN_CHECK)
        os._exit(0)  # nothing to clean up: the event log is already in the page cache

    threading.Thread(target=watch, name="orphan-watchdog", daemon=True).start()


def process_alive(pid: int) -> bool:
    """Is process ``pid`` running?  (A zombie, dead but not yet reaped, is not.)"""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:  # no /proc (macOS): existence is the best we can tell
        return True
