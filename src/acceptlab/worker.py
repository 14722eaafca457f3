"""The worker loop: the book's ``server_loop``, measured.

A worker does four things forever: wait for a connection (the strategy
decides how), hold the conversation, record what happened, and go back to
waiting.  The same function runs in a thread or in a process; only how it is
started and stopped differs (see :mod:`acceptlab.pool`).

Error handling: a client's misbehaviour ends its conversation, never the
worker (:func:`acceptlab.conversation.converse` swallows it).  An ``accept()``
that fails for lack of resources (``EMFILE``: too many open files) is recorded
as an ``error`` wakeup and retried after a pause instead of killing the loop.
When the listening socket is shut down or closed under the worker, which is
how the pool stops threads, the loop ends.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from .conversation import Limits, converse
from .eventlog import EventWriter, NullWriter, log_path
from .kernel import voluntary_switches
from .protocol import get_protocol, served_by
from .strategies import Setting, make_waiter
from .work import parse_work

__all__ = ["WorkerSpec", "Control", "InjectedCrash", "serve", "process_main", "stop_mark",
           "process_alive"]

now = time.monotonic_ns
_RETRY_PAUSE = 0.1  # seconds to wait after EMFILE/ENFILE before accepting again
_ORPHAN_CHECK = 0.2  # seconds between checks that the parent is still alive


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
    setting: Setting = field(default_factory=Setting)
    parent_pid: int = field(default_factory=os.getpid)  # the pool's process
    record: bool = True  # False only to measure what recording costs (bench/)


class InjectedCrash(Exception):
    """Raised inside a thread worker on purpose: a thread cannot be killed from outside."""


@dataclass
class Control:
    """How a pool talks to a THREAD worker (processes get signals instead).

    ``stopping`` ends the loop at its next wakeup; ``crash`` makes the next
    accepted connection raise :class:`InjectedCrash`; ``sockets`` lists what
    the pool must shut down to wake the thread from a blocking call.
    """

    stopping: threading.Event = field(default_factory=threading.Event)
    crash: threading.Event = field(default_factory=threading.Event)
    sockets: list = field(default_factory=list)


def serve(listener: socket.socket, spec: WorkerSpec, control: Control | None = None) -> None:
    """Run one worker until its listener goes away (or ``control.stopping`` is set).

    Per wait it records when it began (at once, so an endless wait shows too);
    when it returns, the outcome, when accept() returned, the client's port and
    the voluntary context switches this thread made *during the wait* (the
    wakeups that EAGAIN counts miss); and, after the conversation, when it ended.
    """
    control = control or Control()
    protocol = get_protocol(spec.protocol)
    work = parse_work(spec.work)
    tid = threading.get_native_id()
    who = served_by(spec.slot, os.getpid(), tid)
    waiter = make_waiter(spec.strategy, listener, spec.setting)
    control.sockets.append(waiter.listener)
    path = log_path(spec.log_dir, spec.slot, spec.generation)
    writer = EventWriter if spec.record else NullWriter
    # The context-switch count feeds only the log: with the log off, don't pay for reading it.
    count = voluntary_switches if spec.record else _uncounted
    with writer(path, spec.slot, spec.generation) as log:
        try:
            while not control.stopping.is_set():
                row = log.begin_wait(tid, now())
                switches = count()
                try:
                    wake = waiter.wait()
                except OSError as exc:
                    if control.stopping.is_set() or exc.errno in (errno.EINVAL, errno.EBADF):
                        return  # the listener was shut down or closed: time to go
                    log.woke(row, now(), "error", nvcsw=_since(switches, count))
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        time.sleep(_RETRY_PAUSE)  # out of resources: let some be freed
                    continue
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


def process_main(listener: socket.socket, spec: WorkerSpec) -> None:
    """Entry point of a worker PROCESS: module-level, so spawn and forkserver can import it.

    Signals: SIGTERM ends the worker cleanly (``SystemExit`` unwinds the loop
    and closes its log) and leaves a :func:`stop_mark`, so the supervisor
    knows the worker was asked to go and does not start another in its
    place.  SIGINT is ignored: Ctrl-C in a terminal or an interrupted Jupyter
    kernel signals the whole process group, and the pool, not each worker,
    decides what an interrupt means.  A watchdog thread ends
    the worker when the pool's process disappears, so a killed notebook kernel
    leaves no orphan holding the port.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark = stop_mark(spec.log_dir, spec.slot, spec.generation)
    signal.signal(signal.SIGTERM, lambda signum, frame: _exit_asked(mark))
    _drop_inherited_sockets(keep=listener.fileno())
    _watch_pool(spec.parent_pid)
    serve(listener, spec)


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
    if os.name != "posix":
        # Windows has no signal 0 (os.kill would send Ctrl-C), and only spawn, so the pool
        # is this worker's parent: ask multiprocessing whether that one is still there.
        parent = multiprocessing.parent_process()
        return parent is None or pid != parent.pid or parent.is_alive()
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
