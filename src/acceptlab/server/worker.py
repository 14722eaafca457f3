"""The worker loop: the book's ``server_loop``: wait, accept, converse, repeat.

:func:`serve` is the whole of what a worker does, in a thread or in a
process alike.  Two small objects keep everything else out of its way:

* a :class:`Recorder` writes the event log: one row per wait (when it began,
  how it ended, the wakeups it took) and when the conversation ended;
* a :class:`Control` holds the flags the pool steers the worker with (ready,
  stop, retire, crash), explained below the loop.

How processes are started, signalled and watched is :mod:`acceptlab.server.process`.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
import socket
import threading
import time
import types
from dataclasses import dataclass, field
import typing
from typing import Mapping

from ..basics import now
from ..linux.kernel import voluntary_switches
from ..specs import Limits
from .conversation import converse
from .eventlog import EventWriter, log_path
from .protocol import get_protocol, served_by
from .sharing import Shared
from .strategies import Wakeup, make_waiter
from .work import parse_work

__all__ = ["serve", "WorkerSpec", "Control", "Switch", "Recorder", "NullRecorder", "InjectedCrash"]


def serve(listener: socket.socket, spec: WorkerSpec, control: Control | None = None) -> None:
    """Serve connections until told to leave, or until the listening socket goes away.

    Args:
        listener: the pool's listening socket (``reuseport`` binds its own instead).
        spec: who this worker is and what it does (see :class:`WorkerSpec`).
        control: the flags shared with the pool; a fresh :class:`Control` if None.
    """
    control = control or Control()
    protocol, work = get_protocol(spec.protocol), parse_work(spec.work) or None
    who = served_by(spec.slot, os.getpid(), threading.get_native_id())
    waiter = make_waiter(spec.strategy, listener, spec.shared, slot=spec.slot,
                         options=spec.options)
    control.sockets.append(waiter.listener)
    with Recorder.for_worker(spec) as recorder:
        try:
            control.ready.set()  # the pool starts the next worker once this one waits
            while control.may_wait():
                recorder.waiting()
                try:
                    wake = waiter.wait()  # the strategy: accept(), or poll() then accept()...
                except OSError as error:
                    if told_to_leave(error, control):
                        return
                    recorder.failed()
                    rest_after(error)
                    continue
                finally:
                    control.waiting = False
                recorder.woke(wake)
                conn = wake.conn
                if conn is not None:
                    try:
                        if control.take(conn):
                            converse(conn, protocol, who, work, spec.limits)
                        control.release(conn)
                    finally:
                        conn.close()
                    waiter.finished()  # strategies that count open connections count down
                    recorder.served()
        finally:
            waiter.close()


# -- what the loop is given --------------------------------------------------------------------


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


# -- recording: the event log's rows ---------------------------------------------------------


class Recorder:
    """Writes this worker's event log, one row per wait (columns: ``data/README.md``).

    :meth:`waiting` when a wait begins (at once, so an endless wait shows
    too); :meth:`woke` when it returns, with the outcome, when ``accept()``
    returned, the client's port and the voluntary context switches this
    thread made *during the wait* (the wakeups that EAGAIN counts miss);
    :meth:`failed` for a wait that raised; :meth:`served` when the
    conversation ended.  :class:`NullRecorder` records nothing (the
    benchmarks' "event log off").

    The switch count is read when a wait begins and again when it returns, so
    that nothing between two waits is counted: not the conversation, and not
    the loop's own lines after a return that brought nothing (a thread there
    can lose the GIL, and waiting for it again is a voluntary switch too).
    """

    def __init__(self, writer: EventWriter) -> None:
        self._writer = writer
        self._begin, self._woke, self._done = writer.begin_wait, writer.woke, writer.done
        self._tid = threading.get_native_id()
        self._row = 0
        self._usage = thread_usage()
        self._since = 0  # the switch count when this wait began

    @classmethod
    def for_worker(cls, spec: WorkerSpec) -> "Recorder | NullRecorder":
        """The recorder of worker ``spec``: its own file, or none when recording is off."""
        if not spec.record:
            return NullRecorder()
        return cls(EventWriter(log_path(spec.log_dir, spec.slot, spec.generation), spec.slot,
                               spec.generation))

    def waiting(self) -> None:
        self._row = self._begin(self._tid, now())
        self._since = self._usage().ru_nvcsw

    def woke(self, wake: Wakeup) -> None:
        after = self._usage().ru_nvcsw
        self._woke(self._row, wake.t_wake_ns, wake.outcome, wake.t_accept_ns, wake.peer_port,
                   -1 if after < 0 else after - self._since)

    def failed(self) -> None:
        after = self._usage().ru_nvcsw
        self._woke(self._row, now(), "error", nvcsw=-1 if after < 0 else after - self._since)

    def served(self) -> None:
        self._done(self._row, now())

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


def thread_usage() -> typing.Callable[[], typing.Any]:
    """``getrusage(RUSAGE_THREAD)`` as a call without arguments (C all the way: it is made twice
    per connection); where there is no per-thread count (not Linux), a stand-in whose
    ``ru_nvcsw`` is -1.  The count is :func:`acceptlab.linux.kernel.voluntary_switches`'s."""
    if voluntary_switches() is None:
        return lambda: _NO_COUNT
    return functools.partial(resource.getrusage, resource.RUSAGE_THREAD)


_NO_COUNT = types.SimpleNamespace(ru_nvcsw=-1)


class NullRecorder:
    """A :class:`Recorder` that records nothing: no file, no clock, no context-switch count."""

    def waiting(self) -> None:
        pass

    def woke(self, wake: Wakeup) -> None:
        pass

    def failed(self) -> None:
        pass

    def served(self) -> None:
        pass

    def __enter__(self) -> "NullRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# -- control: how a worker and its pool talk ---------------------------------------------------


class InjectedCrash(Exception):
    """Raised inside a thread worker on purpose: a thread cannot be killed from outside."""


class Flag(typing.Protocol):
    """What ``control.ready`` must offer: ``set()`` (a ``threading.Event`` does)."""

    def set(self) -> None: ...


class Switch:
    """A flag another thread sets and the loop reads at every connection: ``on``.

    A plain attribute is enough under the GIL; a ``threading.Event`` would
    cost a method call per read, for the waiting it offers and nobody does.
    ``set()`` and ``is_set()`` read as an Event's.
    """

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False

    def set(self) -> None:
        self.on = True

    def is_set(self) -> bool:
        return self.on


@dataclass
class Control:
    """The few flags a pool and its worker share.

    * **Ready**: just before its first wait the worker sets ``ready`` (a
      :class:`threading.Event` for a thread, one byte down a pipe for a
      process).  The pool starts the next worker only then, so the kernel
      queues the waiters in slot order, and a replacement that dies before
      this point failed to *boot*.  "Just before" is microseconds, unless the
      worker is a thread that must first win the GIL back (up to the
      interpreter's 5 ms switch interval): so the order is nearly always, not
      always, the slot order.
    * **Stop now**: ``stopping`` for a thread (the pool then shuts down the
      sockets in ``sockets`` to wake it from a blocking call); SIGTERM for a
      process.
    * **Retire** (a graceful restart): ``retiring``: take no new connection,
      finish the one in hand, leave.  A process gets SIGUSR1; while
      ``waiting`` is true (asleep in its wait) the handler ends it at once.
    * **Crash** (a fault, on purpose): ``crash`` makes a thread raise
      :class:`InjectedCrash` on its next connection; a process just gets SIGKILL.
    """

    ready: Flag = field(default_factory=threading.Event)
    stopping: Switch = field(default_factory=Switch)
    retiring: Switch = field(default_factory=Switch)
    crash: Switch = field(default_factory=Switch)
    sockets: list = field(default_factory=list)
    waiting: bool = False

    def leaving(self) -> bool:
        """Has the worker been told to stop or to retire?"""
        return self.stopping.on or self.retiring.on

    def may_wait(self) -> bool:
        """About to wait: from now until the wait returns, a retire signal ends the worker."""
        self.waiting = True
        return not (self.stopping.on or self.retiring.on)

    def take(self, conn: socket.socket) -> bool:
        """A connection is in hand: may the conversation go ahead?

        It goes into ``sockets`` (so that stopping a thread wakes its
        ``recv()``); False if a stop came meanwhile; an injected crash raises
        here, as a bug would.
        """
        if self.crash.on:
            raise InjectedCrash("this worker crashed on purpose")
        self.sockets.append(conn)
        return not self.stopping.on

    def release(self, conn: socket.socket) -> None:
        """The conversation is over: ``conn`` is no longer ours to wake."""
        self.sockets.remove(conn)


# -- errors of the wait ------------------------------------------------------------------------

_RETRY_PAUSE = 0.1  # seconds to wait after running out of descriptors or memory
_STARVED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def told_to_leave(error: OSError, control: Control) -> bool:
    """Does this failed wait end the worker?

    Yes when the worker was told to leave, or when the listening socket was
    shut down or closed under it (``EINVAL``, ``EBADF``), which is how the
    pool stops threads.  Anything else (``EMFILE``: too many open files) is
    recorded as an ``error`` wakeup and the loop goes on: a client's or the
    machine's trouble must not kill the worker.
    """
    return control.leaving() or error.errno in (errno.EINVAL, errno.EBADF)


def rest_after(error: OSError) -> None:
    """After running out of descriptors or memory, pause before accepting again."""
    if error.errno in _STARVED:
        time.sleep(_RETRY_PAUSE)
