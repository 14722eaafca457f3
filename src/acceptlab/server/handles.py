"""Worker handles: one interface for a worker thread and a worker process.

A thread and a process are started and stopped differently, so each is
wrapped behind the same few verbs (:class:`WorkerHandle`): ``ask_to_stop``,
``force``, ``retire``, ``crash``, ``join``, ``is_alive``, ``is_ready``.  The
pool (:mod:`acceptlab.server.pool`) and its supervisor
(:mod:`acceptlab.server.supervisor`) hold ONE stop algorithm and ONE
supervision loop, and never ask which kind they hold.

* :class:`ThreadHandle`: a thread cannot be signalled or killed from outside,
  so each verb works through what it shares with the pool: the flags of its
  :class:`~acceptlab.server.worker.Control`, and sockets whose shutdown wakes
  it from a blocking call.
* :class:`ProcessHandle`: a ``multiprocessing`` process; signals are its verbs
  (:mod:`acceptlab.server.process`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import typing
from multiprocessing.connection import wait as wait_for_any
from typing import Iterator

from .process import (RETIRE_SIGNAL, hybrid_main, process_alive, process_main, start_time,
                      stderr_path, stop_mark)
from .worker import Control, InjectedCrash, WorkerSpec, serve

__all__ = ["WorkerHandle", "ThreadHandle", "ProcessHandle", "shut"]

logger = logging.getLogger("acceptlab.server.pool")


class WorkerHandle(typing.Protocol):
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


class ThreadHandle:
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
            shut(sock)


class ProcessHandle:
    """A ``multiprocessing`` process running :func:`~acceptlab.server.process.process_main`; signals are its verbs."""

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
        # A forkserver's worker is the fork server's child, not ours: see _orphaned().
        self._started = (start_time(self.pid) if context.get_start_method() == "forkserver"
                         else None)
        self._lost = False  # its fork server died, and with it the news of how it ended

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
            os.kill(self.pid, signal.SIGTERM)  # the worker unwinds and closes its log

    def force(self) -> None:
        if self.is_alive():
            os.kill(self.pid, signal.SIGKILL)  # stuck in a spin, say

    def retire(self) -> None:
        if self.is_alive():
            os.kill(self.pid, RETIRE_SIGNAL)

    def crash(self) -> None:
        self.force()  # as a bug or the OOM killer would

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        self.process.join(max(0.0, timeout))
        while self._orphaned() and time.monotonic() < deadline:
            time.sleep(0.005)  # not our child: no sentinel says when it ends

    def is_alive(self) -> bool:
        return self.process.is_alive() or self._orphaned()

    def _orphaned(self) -> bool:
        """Is it running though ``multiprocessing`` says it ended (its fork server died)?

        Under forkserver, the fork server forks each worker and tells this
        process, through a socket, how it ended.  If the fork server dies (a
        kernel restart SIGTERMs it along with the workers; a person may kill
        it), every socket closes and ``multiprocessing`` reports each worker
        ended with exit code 255, though they still serve.  Believing it, the
        supervisor would start a second worker per slot and leave the first
        running, unstoppable.  So the kernel is asked instead.
        """
        if self._started is None or self.process.exitcode is None:
            return False
        running = process_alive(self.pid, self._started)
        self._lost = self._lost or running
        return running

    def exit_description(self) -> str:
        if self._lost:
            return "exit code unknown (its fork server had died)"
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
        return self.mark.exists()  # it got SIGTERM (see acceptlab.server.process.stop_mark)

    def close(self) -> None:
        self._ready_pipe.close()


def shut(sock: socket.socket) -> None:
    """shutdown() wakes every thread blocked on ``sock`` (close() alone does not on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected
