"""Accept strategies: the ways a worker can wait for its next connection.

Every strategy is a small class whose :meth:`wait` sleeps until the kernel
hands this worker something and reports what it got as a :class:`Wakeup`: a
connection (``accepted``), nothing because another worker was faster
(``eagain``), or nothing because a timeout expired (``timeout``).  Read them
side by side: each differs from its base class by a line or two, and each of
those lines changes how the kernel wakes the waiting workers.

* :class:`Blocking` is the book's: ``accept()`` and nothing else.
* :class:`Timeout` is ``accept()`` after ``settimeout()``, which polls first.
* :class:`Poll`, :class:`Epoll`, :class:`EpollExclusive` and
  :class:`SharedEpoll` wait for the listener to be readable, then try a
  non-blocking ``accept()`` (:class:`_Readiness`, parametrised by what they
  wait in, as CPython's ``selectors`` classes are).
* :class:`ReusePort` binds a socket of its own; :class:`Locked` waits for a
  lock first.
* The ecosystem's fixes for the uneven split: :class:`Reorder` (nginx),
  :class:`BusySleep` (Puma), :class:`Exact` (the kit's, after Envoy's goal),
  :class:`Handoff` and :class:`HandoffLeastBusy` (Node, Envoy),
  :class:`ReusePortCpu` and :class:`ReusePortIncomingCpu` (BPF, SO_INCOMING_CPU).

What the kit knows about each (origin, mechanism, prediction, requirements,
lesson) is its record in :mod:`acceptlab.registry`, the one place the docs
tables, ``acceptlab doctor`` and the predictions read; :data:`STRATEGIES`
maps each record's name to its class here.

A waiter is built inside its worker (:func:`make_waiter`) from the listening
socket, what every worker of the strategy shares (:class:`~acceptlab.server.sharing.Shared`:
made once by the pool) and its own options (``PoolSpec.strategy_options``).
Each class takes only what it uses.  Resource handling: a waiter owns what it
created (its epoll, its own socket, its lock file descriptor) and releases it
in :meth:`close`; it never closes the shared listener.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import time
import typing
from typing import Any, Mapping, NamedTuple

from ..basics import address_family, now
from ..linux.bpf import SO_INCOMING_CPU, attach_cpu_program
from ..registry import strategy_record
from .sharing import Shared

__all__ = ["STRATEGIES", "Wakeup", "Waiter", "make_waiter"]


class Wakeup(NamedTuple):
    """What one return from the wait brought."""

    outcome: str  # 'accepted' | 'eagain' | 'timeout'
    t_wake_ns: int  # when the wait itself returned
    t_accept_ns: int = -1  # when accept() handed over a connection
    conn: socket.socket | None = None
    peer_port: int = -1

    @classmethod
    def accepted(cls, t_wake_ns: int, pair: tuple[socket.socket, Any]) -> "Wakeup":
        """A connection from ``accept()``'s ``(conn, address)``, accepted now."""
        conn, address = pair
        # tuple.__new__ builds the same Wakeup as cls(...) without NamedTuple's Python-level
        # __new__: this runs once per connection, and that call cost more than the clock.
        return tuple.__new__(cls, ("accepted", t_wake_ns, now(), conn, address[1]))


@typing.runtime_checkable
class Waiter(typing.Protocol):
    """What the worker loop asks of a strategy (:mod:`acceptlab.server.worker`)."""

    listener: socket.socket  # what the pool shuts down to wake a thread worker

    def wait(self) -> Wakeup:
        """Sleep until the kernel hands this worker something; say what."""

    def finished(self) -> None:
        """A conversation ended (the strategies that count open connections count down)."""

    def close(self) -> None:
        """Release what the waiter made (never the shared listener)."""


# -- the kernel's ways to wait ---------------------------------------------------------------


class Blocking:
    """``accept()`` and nothing else: the book's pre-forked server.

    Four class attributes tell the pool what to prepare for a strategy
    (:func:`acceptlab.server.sharing.set_up`): ``own_socket`` (each worker
    binds its own listener), ``counts_in_flight`` (shared per-process
    counters of open connections), ``shares_epoll`` (one epoll instance for
    every thread) and ``handed_off`` (an acceptor deals the connections).
    """

    own_socket = False
    counts_in_flight = False
    shares_epoll = False
    handed_off = False

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener

    @classmethod
    def made(cls, listener: socket.socket, shared: Shared, slot: int,
             options: Mapping[str, float]) -> "Blocking":
        """Build the waiter of worker ``slot`` from what the pool shares (most need nothing)."""
        return cls(listener, **options)

    def wait(self) -> Wakeup:
        pair = self.listener.accept()  # sleeps in the kernel's FIFO queue of waiters
        return Wakeup.accepted(now(), pair)

    def finished(self) -> None:
        pass

    def close(self) -> None:
        pass


class Timeout(Blocking):
    """``accept()`` with a timeout, as code that calls ``settimeout()`` does without knowing."""

    def __init__(self, listener: socket.socket, *, accept_timeout: float) -> None:
        super().__init__(listener)
        listener.settimeout(accept_timeout)  # CPython now polls, then accepts, retrying on EAGAIN

    def wait(self) -> Wakeup:
        try:
            pair = self.listener.accept()
        except TimeoutError:
            return Wakeup("timeout", now())
        return Wakeup.accepted(now(), pair)


class _Readiness(Blocking):
    """Sleep until the listener is readable, then try a non-blocking ``accept()``.

    A subclass says what it sleeps in (:meth:`_watch`); everything else is here.
    """

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        listener.setblocking(False)  # a loser of the race must not block in accept()
        self.poller = self._watch(listener)

    def _watch(self, listener: socket.socket) -> Any:
        raise NotImplementedError

    def wait(self) -> Wakeup:
        self.poller.poll()
        return self.try_accept(now())

    def try_accept(self, t_wake_ns: int) -> Wakeup:
        """Take the connection if no other worker was faster."""
        try:
            return Wakeup.accepted(t_wake_ns, self.listener.accept())
        except BlockingIOError:  # EAGAIN: woken for a connection another worker took
            return Wakeup("eagain", t_wake_ns)


class Poll(_Readiness):
    """Wait with ``select.poll()``: every waiting worker is woken (a herd)."""

    def _watch(self, listener: socket.socket) -> Any:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        return poller


class Epoll(_Readiness):
    """One epoll instance per worker, watching the shared socket: a herd too."""

    flags = getattr(select, "EPOLLIN", 0)

    def _watch(self, listener: socket.socket) -> Any:
        poller = select.epoll()
        poller.register(listener.fileno(), self.flags)
        return poller

    def close(self) -> None:
        self.poller.close()


class EpollExclusive(Epoll):
    """As :class:`Epoll`, with ``EPOLLEXCLUSIVE``: the kernel wakes one epoll, not all."""

    flags = Epoll.flags | getattr(select, "EPOLLEXCLUSIVE", 0)


class SharedEpoll(_Readiness):
    """Every thread waits in the SAME epoll instance, made once by the pool.

    Sharing it is the kit's choice for threads: a forked child would share
    the instance as well (a descriptor inherited across fork names the same
    epoll), but the lesson is about threads sleeping in one ``epoll_wait``.
    """

    shares_epoll = True

    def __init__(self, listener: socket.socket, *, epoll: Any) -> None:
        self._shared = epoll
        super().__init__(listener)

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(listener, epoll=shared.epoll, **options)

    def _watch(self, listener: socket.socket) -> Any:
        return self._shared  # the pool closes it, after every worker has gone


class ReusePort(Blocking):
    """A socket of this worker's own on the shared port (``SO_REUSEPORT``): a queue of its own."""

    own_socket = True

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(cls.bind_own(shared), **options)

    @staticmethod
    def bind_own(shared: Shared) -> socket.socket:
        own = socket.socket(address_family(shared.address[0]), socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(shared.address)
        own.listen(shared.backlog)  # the kernel hashes each connection to one of the queues
        return own

    def close(self) -> None:
        self.listener.close()


class Locked(Blocking):
    """Only the holder of an ``flock`` on a shared file waits in ``accept()``.

    The kernel releases the lock when its holder dies, even by SIGKILL.  Since
    Linux 5.0 the waiters of a lock form a tree and an unlock wakes one of
    them; before, it woke them all (docs/sources.md, "flock-tree").
    """

    def __init__(self, listener: socket.socket, *, lock_path: str) -> None:
        super().__init__(listener)
        # Each worker opens the file itself: flock locks belong to an open file,
        # so two threads with two opens exclude each other like two processes do.
        self.lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(listener, lock_path=shared.lock_path, **options)

    def wait(self) -> Wakeup:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            return super().wait()
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.lock_fd)


# -- the ecosystem's fixes -------------------------------------------------------------------


class Reorder(EpollExclusive):
    """``EPOLLEXCLUSIVE``, but every ``every`` accepts the worker re-registers.

    The idea is nginx's (``ngx_reorder_accept_events``, 1.21.x): an exclusive
    wakeup goes to the first idle epoll in the listener's wait queue, so the
    worker that registered first takes nearly everything.  Removing the
    listener from its epoll and adding it again puts this worker's entry at
    the *tail* of that queue, so the next worker in line takes over: a busy
    worker steps back every N connections (nginx uses 16).
    """

    def __init__(self, listener: socket.socket, *, every: int) -> None:
        super().__init__(listener)
        self.every, self.accepted = int(every), 0

    def wait(self) -> Wakeup:
        wake = super().wait()
        if wake.conn is not None:
            self.accepted += 1
            if self.accepted % self.every == 0:  # to the back of the kernel's queue
                self.poller.unregister(self.listener.fileno())
                self.poller.register(self.listener.fileno(), self.flags)
        return wake


class _Counted:
    """Mixin: this process's count of open connections, in memory every worker shares.

    ``in_flight`` holds one integer per worker process (a
    ``multiprocessing.Array`` the pool made, which every worker maps), with
    one lock for the whole array; ``group`` is this worker's process.  The
    strategy counts up when it takes a connection; :meth:`finished` counts
    down when the conversation ends.  Put it first among the bases:
    ``class X(_Counted, Poll)``.
    """

    counts_in_flight = True

    def __init__(self, listener: socket.socket, *, in_flight: Any, group: int,
                 **options: float) -> None:
        super().__init__(listener, **options)  # the waiting part: Poll, Handoff, ...
        self.counts, self.group = in_flight, group

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(listener, in_flight=shared.in_flight, group=shared.group_of(slot), **options)

    def finished(self) -> None:
        with self.counts.get_lock():
            self.counts[self.group] -= 1


class BusySleep(_Counted, Poll):
    """Puma's ``wait_for_less_busy_worker``: a busy process pauses before it tries to accept.

    With several threads per process (``kind='hybrid'``) an idle thread of a
    busy process wins the race for the next connection as easily as a thread
    of an idle process, and then two requests share one process's CPU (and,
    in Python, its GIL).  Puma's answer (PR #2079): every waiter is woken
    (``select``), and one whose process already has requests in flight sleeps
    a few milliseconds (``pause``: 5 ms) before its non-blocking ``accept()``,
    so an idle process usually gets there first; the sleeper then finds ``EAGAIN``.
    """

    def __init__(self, listener: socket.socket, *, in_flight: Any, group: int,
                 pause: float) -> None:
        super().__init__(listener, in_flight=in_flight, group=group)
        self.pause = pause

    def wait(self) -> Wakeup:
        self.poller.poll()
        t_wake = now()
        if self.counts[self.group] > 0:  # a plain read: a stale value only shifts the odds
            time.sleep(self.pause)
        wake = self.try_accept(t_wake)
        if wake.conn is not None:
            with self.counts.get_lock():
                self.counts[self.group] += 1
        return wake


class Exact(_Counted, Poll):
    """Only a process holding the fewest open connections accepts: the kit's lock-plus-herd variant.

    Envoy's exact balance aims at even open counts per worker; Envoy gets
    there by accepting first and posting each connection to the least-loaded
    worker (:class:`HandoffLeastBusy` here).  This strategy reaches for the
    same goal without a dealer: every idle worker polls the shared socket (a
    herd, on purpose); when it is readable, each woken worker takes the lock
    and accepts only if its process holds no more open connections than any
    other.  The others pause (``decline_pause``) and wait again; that return is
    logged as ``eagain`` (woke, took nothing).  Deciding and counting under
    one lock keeps the counts within one of each other.
    """

    def __init__(self, listener: socket.socket, *, in_flight: Any, group: int,
                 decline_pause: float) -> None:
        super().__init__(listener, in_flight=in_flight, group=group)
        self.decline_pause = decline_pause  # let the least busy process's worker reach the lock

    def wait(self) -> Wakeup:
        self.poller.poll()
        t_wake = now()
        with self.counts.get_lock():
            if self.counts[self.group] > min(self.counts):
                wake = None  # another process holds fewer: leave this connection to it
            else:
                wake = self.try_accept(t_wake)
                if wake.conn is not None:
                    self.counts[self.group] += 1
        if wake is None:
            time.sleep(self.decline_pause)
            return Wakeup("eagain", t_wake)
        return wake


class Handoff(Blocking):
    """Node's cluster (SCHED_RR): one acceptor accepts every connection and deals it out in turn.

    The workers never touch the listening socket.  An
    :class:`~acceptlab.server.sharing.Acceptor` in the pool's process accepts
    each connection and passes its descriptor to the next worker process over
    a Unix socket (``SCM_RIGHTS``: the kernel installs a copy of the
    descriptor in the receiver).  The ``listener`` this waiter gets is its
    process's end of that Unix socket.  Turns are strict even for
    back-to-back connections, because the acceptor decides, not a race
    between sleepers; the price is one more hop per connection, and a
    connection dealt to a busy worker waits while another may be idle.
    """

    handed_off = True

    def wait(self) -> Wakeup:
        _, fds, _, _ = socket.recv_fds(self.listener, 1, 1)
        t_wake = now()
        if not fds:  # the channel was shut down: the pool is stopping
            raise OSError(errno.EBADF, "the acceptor's channel is closed")
        conn = socket.socket(fileno=fds[0])
        return Wakeup("accepted", t_wake, t_wake, conn, conn.getpeername()[1])


class HandoffLeastBusy(_Counted, Handoff):
    """As :class:`Handoff`, dealt to the process with the fewest open connections (Envoy's way).

    The acceptor counts up when it deals; the worker counts down in :meth:`finished`.
    """


class ReusePortCpu(ReusePort):
    """One socket per worker, and a BPF program that picks the socket by the CPU the SYN came in on.

    Plain SO_REUSEPORT hashes the client's address and port.  The program
    (:mod:`acceptlab.linux.bpf`) returns socket number ``cpu % sockets``
    instead, so a connection stays on the CPU that received it (locality:
    warm caches, no wakeup across CPUs).  On loopback the receiving CPU is the
    one the client ran on.  Every worker attaches the same program; the group
    keeps the last.  With more sockets than CPUs, those past the last CPU get
    nothing.
    """

    def __init__(self, own: socket.socket, *, sockets: int) -> None:
        super().__init__(own)
        attach_cpu_program(self.listener, sockets)

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(cls.bind_own(shared), sockets=shared.slots, **options)


class ReusePortIncomingCpu(ReusePort):
    """One socket per worker, each tagged with a CPU (``SO_INCOMING_CPU``): the group prefers a match.

    Worker ``slot`` tags its socket with CPU ``slot % cpus``; a SO_REUSEPORT
    group then gives a connection to a socket tagged with the CPU its SYN
    arrived on (Linux 6.2 made the group honour the tag), hashing among the
    sockets with that tag.
    """

    def __init__(self, own: socket.socket, *, cpu: int) -> None:
        super().__init__(own)
        self.listener.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, cpu)

    @classmethod
    def made(cls, listener, shared, slot, options):
        return cls(cls.bind_own(shared), cpu=slot % (os.cpu_count() or 1), **options)


STRATEGIES: dict[str, type[Blocking]] = {
    "blocking": Blocking,
    "timeout": Timeout,
    "poll": Poll,
    "epoll": Epoll,
    "epoll-exclusive": EpollExclusive,
    "shared-epoll": SharedEpoll,
    "reuseport": ReusePort,
    "locked": Locked,
    "reorder": Reorder,
    "busy-sleep": BusySleep,
    "exact": Exact,
    "handoff": Handoff,
    "handoff-least-busy": HandoffLeastBusy,
    "reuseport-cpu": ReusePortCpu,
    "reuseport-incoming-cpu": ReusePortIncomingCpu,
}
"""Each strategy's class, by the name of its record in :mod:`acceptlab.registry` (a test
checks that the two list the same strategies, and each record's ``waiter`` names its class)."""


def make_waiter(name: str, listener: socket.socket, shared: Shared, *, slot: int = 0,
                options: Mapping[str, float] | None = None) -> Waiter:
    """Build strategy ``name`` inside worker ``slot`` (its epoll, socket or lock are its own).

    ``options`` override the strategy's defaults (its record's ``options``).
    """
    record = strategy_record(name)
    return STRATEGIES[name].made(listener, shared, slot, {**record.options, **(options or {})})
