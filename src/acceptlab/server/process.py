"""Worker processes: how the pool starts them, signals them, and how they notice it is gone.

A worker process runs the same loop as a worker thread
(:func:`acceptlab.server.worker.serve`); this module is what is different
about a process:

* its entry points, :func:`process_main` (one thread: the book's pre-forked
  worker) and :func:`hybrid_main` (several threads: gunicorn's gthread,
  Puma's clustered mode), module-level so that spawn and forkserver can
  import them;
* its signals: SIGTERM stops it (and leaves a :func:`stop_mark`), SIGUSR1
  (:data:`RETIRE_SIGNAL`) retires it gracefully, SIGINT is the pool's;
* its stderr, redirected to a file beside its event log
  (:func:`stderr_path`), so that the pool can quote a worker that died;
* its orphan watchdog: it exits when the pool's process is gone.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

from .eventlog import log_path
from .worker import Control, Flag, WorkerSpec, serve

__all__ = ["process_main", "hybrid_main", "stop_mark", "stderr_path", "process_alive", "start_time",
           "RETIRE_SIGNAL"]

_ORPHAN_CHECK = 0.2  # seconds between checks that the parent is still alive
RETIRE_SIGNAL = signal.SIGUSR1  # the kit's own meaning: finish the connection in hand, then exit


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
    _prepare_process(listener, spec)
    control = Control(ready=_PipeFlag(ready))
    signal.signal(RETIRE_SIGNAL, lambda signum, frame: _retire(control))
    serve(listener, spec, control)


def _prepare_process(listener: socket.socket, spec: WorkerSpec) -> None:
    """What every worker process does first (see :func:`process_main` for why each)."""
    _stderr_into(stderr_path(spec.log_dir, spec.slot, spec.generation))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark = stop_mark(spec.log_dir, spec.slot, spec.generation)
    signal.signal(signal.SIGTERM, lambda signum, frame: _leave_when_asked(mark))
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
    _prepare_process(listener, spec)
    all_ready = _Countdown(threads, _PipeFlag(ready))
    controls = [Control(ready=all_ready) for _ in range(threads)]
    news = _News(threads)
    signal.signal(RETIRE_SIGNAL, lambda signum, frame: _retire_all(controls, news))
    workers = [threading.Thread(target=_serve_then_tell, daemon=True,
                                name=f"acceptlab-worker-{spec.slot}.{t}",
                                args=(listener, replace(spec, slot=spec.slot * threads + t),
                                      control, news))
               for t, control in enumerate(controls)]
    for worker in workers:
        worker.start()
    news.wait()  # the main thread only waits: signals are delivered to it
    # Retiring: threads asleep in the wait hold nothing; those mid-conversation finish it.
    for worker, control in zip(workers, controls):
        while worker.is_alive() and not control.waiting:
            worker.join(0.01)


class _News:
    """What a hybrid process's main thread sleeps on until it has something to do.

    A pipe: each serving thread writes a byte when it ends, and so does the
    retire signal's handler.  The main thread sleeps in ``read()`` and does
    not wake otherwise: a thread that woke every so often to look would take
    the GIL from the serving threads (see :func:`_watch_pool`).
    """

    def __init__(self, threads: int) -> None:
        self._read, self._write = os.pipe()
        self.threads = threads
        self.retiring = False
        self._ended: list[None] = []  # list.append is atomic: threads may end at once

    def thread_ended(self) -> None:
        self._ended.append(None)
        os.write(self._write, b"t")

    def retire(self) -> None:
        """From the retire signal's handler: no lock taken, so it cannot deadlock the waiter."""
        self.retiring = True
        os.write(self._write, b"r")

    def wait(self) -> None:
        """Sleep until the process is asked to retire, or every serving thread has ended."""
        while not self.retiring and len(self._ended) < self.threads:
            os.read(self._read, 64)


def _serve_then_tell(listener: socket.socket, spec: WorkerSpec, control: Control,
                     news: _News) -> None:
    """One serving thread of a hybrid process (the book's loop); its end is news."""
    try:
        serve(listener, spec, control)
    finally:
        news.thread_ended()


class _Countdown:
    """A ready flag shared by ``n`` threads: the ``n``-th ``set()`` sets the real one."""

    def __init__(self, n: int, flag: "Flag") -> None:
        self.left, self.flag, self.lock = n, flag, threading.Lock()

    def set(self) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.flag.set()


def _retire_all(controls: list[Control], news: _News) -> None:
    """A hybrid process's retire signal: every thread takes no new connection."""
    for control in controls:
        control.retiring.set()
    news.retire()


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


def _leave_when_asked(mark: Path) -> None:
    """SIGTERM: leave the stop mark, then unwind (``SystemExit`` closes the event log)."""
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

    Why a pidfd, and not a look every 0.2 s?  A thread that wakes needs the
    GIL: a worker coming back from ``accept()`` at that moment waits for it,
    and the event log counts that wait as one or two more sleeps in the wait
    (5 more in 4,000 connections: 4 workers, gap 1 ms, beside a test run).  A
    pidfd sleeps until the pool's process ends.
    """
    def watch() -> None:
        try:
            gone = select.poll()
            gone.register(os.pidfd_open(pool_pid), select.POLLIN)
        except ProcessLookupError:
            os._exit(0)  # gone already
        except (AttributeError, OSError):  # no pidfd (macOS, Linux < 5.3): look now and then
            while process_alive(pool_pid):
                time.sleep(_ORPHAN_CHECK)
        else:
            gone.poll()  # readable once the pool's process has exited; no wakeup until then
        os._exit(0)  # nothing to clean up: the event log is already in the page cache

    threading.Thread(target=watch, name="orphan-watchdog", daemon=True).start()


def process_alive(pid: int, started: int | None = None) -> bool:
    """Is process ``pid`` running?  (A zombie, dead but not yet reaped, is not.)

    With ``started`` (its :func:`start_time`), a later process that was given
    the same pid is not it either.
    """
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = _stat(pid)
    except OSError:  # no /proc (macOS): existence is the best we can tell
        return True
    return fields[0] not in ("Z", "X") and (started is None or int(fields[19]) == started)


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``None`` if gone, or no /proc)."""
    try:
        return int(_stat(pid)[19])  # field 22 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: [0] is field 3, the state."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()
