"""Ctrl-C as a request to stop, not an exception (see :class:`Interrupts`)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .common import INTERRUPTED

__all__ = ["Interrupts"]


class Interrupts:
    """Turn Ctrl-C (and SIGTERM) into an Event the commands poll; a second Ctrl-C quits at once.

    Why not KeyboardInterrupt: it can land anywhere (inside a join, a save, a
    ``finally``) and throws away what was measured.  So, as gunicorn's arbiter
    does, the signal only records the request and the command's own flow acts
    on it: stop the load, stop the pool, save, print.

    SIGINT is *blocked* in this process before any worker or client process
    starts, and one thread takes it with ``sigwait``.  The block is inherited
    by every child (fork keeps the mask, and so does exec for spawn and
    forkserver), so the SIGINT a terminal sends to the whole process group
    never reaches a worker or client process halfway through its start-up:
    no child prints a KeyboardInterrupt traceback.  The parent alone decides,
    and stops its children by their pids.

    One catch: multiprocessing's resource tracker, when it starts (at the first
    cross-process lock), blocks and then *unblocks* SIGINT in the calling
    thread.  So it is started here, before the block; and in case anything
    else unblocks SIGINT, a Python handler that only records the request
    stands behind the block.

    On the way out, multiprocessing's helper processes (the resource tracker,
    a forkserver) are stopped and reaped here rather than left to notice this
    process's end by themselves: a helper that outlives its parent is an
    orphan, and a zombie until something else reaps it.

    A second Ctrl-C means "now": the watcher kills this process's children
    (SIGKILL, by pid, and reaps them), stops the resource tracker and exits
    with 130.  That is the one action taken outside the main flow, because the
    main flow may be the very thing that is stuck.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._closing = False
        self._watcher: threading.Thread | None = None
        self._old_mask: set | None = None
        self._old_term: object = None
        self._old_int: object = None
        self._helpers_before: list = []  # a caller's own (main() called in-process): kept

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is not threading.main_thread():
            return self.stop  # signals reach only the main thread's handlers: nothing to do
        self._helpers_before = [h for h in _multiprocessing_helpers() if _running(h)]
        self._old_term = signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        self._old_int = signal.signal(signal.SIGINT, lambda *_: self._asked())
        if hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait"):
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()  # now, while SIGINT is not blocked yet
            self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            self._watcher = threading.Thread(target=self._watch, name="acceptlab-ctrl-c",
                                             daemon=True)
            self._watcher.start()
        return self.stop

    def _watch(self) -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            if self._closing:
                return
            self._asked()

    def _asked(self) -> None:
        """One Ctrl-C: record the request.  The second: quit now."""
        if self.stop.is_set():
            self._quit_now()
        self.stop.set()

    @staticmethod
    def _quit_now() -> None:
        print("\nacceptlab: interrupted again: quitting now", file=sys.stderr, flush=True)
        # Rounds, because a pool's supervisor (or a multiprocessing Pool) replaces a killed
        # child within 0.1 s: done after two empty looks 60 ms apart, or after 1.5 s.
        quiet, give_up = 0, time.monotonic() + 1.5
        while quiet < 2 and time.monotonic() < give_up:
            children = _children_to_end()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)  # only processes this process started
                except OSError:
                    pass
            for pid in children:
                try:
                    os.waitpid(pid, 0)  # reaped here: no zombie left for init to find
                except OSError:
                    pass
            quiet = 0 if children else quiet + 1
            time.sleep(0.06)
        # Last the resource tracker, which unlinks the clients' semaphores (and says so).
        helpers = threading.Thread(target=_stop_multiprocessing_helpers, daemon=True)
        helpers.start()
        helpers.join(0.5)  # it may be waiting for a lock the main thread holds: not for long
        os._exit(INTERRUPTED)

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            self._closing = True
            signal.pthread_kill(self._watcher.ident, signal.SIGINT)  # wakes its sigwait
            self._watcher.join()
        _stop_multiprocessing_helpers(spare=self._helpers_before)
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)  # type: ignore[arg-type]
            signal.signal(signal.SIGINT, self._old_int)  # type: ignore[arg-type]


def _children_to_end() -> list[int]:
    """This process's children, except multiprocessing's resource tracker.

    The tracker is spared because it is what removes the named semaphores of
    the client processes from /dev/shm once this process is gone.  On Linux
    the children are read from /proc, which also sees a process forked a
    moment ago; elsewhere multiprocessing's own list is used.
    """
    from multiprocessing import resource_tracker

    tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    me, pids = os.getpid(), []
    if os.path.isdir("/proc/self/task"):
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and int(Path(entry.path, "stat").read_text()
                                                .rsplit(")", 1)[1].split()[1]) == me:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    else:
        try:
            pids = [child.pid for child in multiprocessing.active_children()]
        except Exception:  # the main thread may be changing that list this very moment
            pids = []
    return [pid for pid in pids if pid != tracker]


def _multiprocessing_helpers() -> list:
    """multiprocessing's helper processes of this process, as objects that can ``_stop()``.

    ``_stop`` is CPython's own (its tests use it); where it is missing, nothing is stopped.
    """
    from multiprocessing import forkserver, resource_tracker

    helpers = [getattr(resource_tracker, "_resource_tracker", None),
               getattr(forkserver, "_forkserver", None)]
    return [helper for helper in helpers if hasattr(helper, "_stop")]


def _running(helper: object) -> bool:
    return (getattr(helper, "_pid", None) or getattr(helper, "_forkserver_pid", None)) is not None


def _stop_multiprocessing_helpers(spare: Sequence[object] = ()) -> None:
    """Stop and reap the resource tracker and forkserver, except those in ``spare``."""
    for helper in _multiprocessing_helpers():
        if helper not in spare:
            try:
                helper._stop()
            except (OSError, ChildProcessError):
                pass  # already gone
