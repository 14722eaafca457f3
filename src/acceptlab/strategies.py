"""Accept strategies: the ways a worker can wait for its next connection.

Every strategy is a small class with one method, :meth:`wait`, that sleeps
until the kernel hands this worker something and reports what it got as a
:class:`Wakeup`: a connection (``accepted``), nothing because another worker
was faster (``eagain``), or nothing because a timeout expired (``timeout``).
Read them side by side; the differences are a line or two each, and each line
changes how the kernel wakes the waiting workers (see docs in kernel-notes):

=================  ==========================================================
``blocking``       ``accept()`` on the shared socket: the kernel queues the
                   sleepers and wakes exactly one, the longest waiter (FIFO).
``timeout``        ``settimeout()`` then ``accept()``: CPython polls first, so
                   every idle worker wakes for every connection (a herd).
``poll``           ``select.poll()`` on a non-blocking socket: a herd; losers
                   either sleep again inside the kernel or get ``EAGAIN``.
``epoll``          one ``epoll`` per worker, no flag: a herd too.
``epoll-exclusive``  ``EPOLLEXCLUSIVE``: the kernel wakes one epoll, in practice
                   the first registered idle one: one worker takes nearly all.
``shared-epoll``   threads only: one ``epoll`` object shared by all threads;
                   its sleepers wake last-in-first-out (LIFO).
``reuseport``      each worker binds its OWN socket with ``SO_REUSEPORT``: the
                   kernel picks a socket by a hash of the client's address and
                   port, so the split is random, whatever each worker's speed.
``locked``         a lock around ``accept()`` (Apache's AcceptMutex): only the
                   holder waits in the kernel.  The lock is ``flock`` on a file,
                   which the kernel releases when its holder dies, even by SIGKILL.
=================  ==========================================================

A strategy is built inside the worker (``make_waiter``) from the shared
listening socket and a :class:`Setting` made once by the pool, which carries
what every worker must share (the lock file, the shared epoll, the address
for ``reuseport``).  Resource handling: a waiter owns what it created (its
epoll, its own socket, its lock file descriptor) and releases it in
:meth:`close`; it never closes the shared listener.

Which strategies THIS machine can run, and why not, is :mod:`acceptlab.support`'s
job (the same probes ``acceptlab doctor`` prints).
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple

from .basics import address_family, now

__all__ = ["STRATEGIES", "Wakeup", "Setting", "make_waiter"]


class Wakeup(NamedTuple):
    """What one return from the wait brought."""

    outcome: str  # 'accepted' | 'eagain' | 'timeout'
    t_wake_ns: int  # when the wait itself returned
    t_accept_ns: int = -1  # when accept() handed over a connection
    conn: socket.socket | None = None
    peer_port: int = -1

    @classmethod
    def accepted(cls, t_wake_ns: int, pair: tuple[socket.socket, Any]) -> "Wakeup":
        conn, address = pair
        return cls("accepted", t_wake_ns, now(), conn, address[1])


@dataclass
class Setting:
    """What the pool prepares once and every worker of one strategy shares.

    ``address`` is the listening address (``reuseport`` workers bind it
    themselves); ``lock_path`` the file ``locked`` workers ``flock``;
    ``shared_epoll`` the one epoll object of ``shared-epoll`` (threads only,
    since an epoll object cannot cross into another process by pickling).
    """

    address: tuple[str, int] = ("127.0.0.1", 0)
    backlog: int = 128
    timeout: float = 1.0
    lock_path: str | None = None
    shared_epoll: Any = None


class Blocking:
    """``accept()`` and nothing else: the book's pre-forked server."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener

    def wait(self) -> Wakeup:
        pair = self.listener.accept()  # sleeps in the kernel's FIFO queue of waiters
        return Wakeup.accepted(now(), pair)

    def close(self) -> None:
        pass


class Timeout(Blocking):
    """``accept()`` with a timeout, as code that calls ``settimeout()`` does without knowing."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        listener.settimeout(setting.timeout)  # CPython now polls, then accepts, retrying on EAGAIN

    def wait(self) -> Wakeup:
        try:
            pair = self.listener.accept()
        except TimeoutError:
            return Wakeup("timeout", now())
        return Wakeup.accepted(now(), pair)


class Poll:
    """Wait with ``select.poll()``, then try a non-blocking ``accept()``."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)  # a loser of the race must not block in accept()
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)

    def wait(self) -> Wakeup:
        self.poller.poll()
        return self.try_accept(now())

    def try_accept(self, t_wake_ns: int) -> Wakeup:
        """Take the connection if no other worker was faster."""
        try:
            return Wakeup.accepted(t_wake_ns, self.listener.accept())
        except BlockingIOError:  # EAGAIN: woken for a connection another worker took
            return Wakeup("eagain", t_wake_ns)

    def close(self) -> None:
        pass


class Epoll(Poll):
    """One epoll instance per worker, watching the shared socket."""

    flags = select.EPOLLIN if hasattr(select, "EPOLLIN") else 0

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(listener.fileno(), self.flags)

    def wait(self) -> Wakeup:
        self.epoll.poll()
        return self.try_accept(now())

    def close(self) -> None:
        self.epoll.close()


class EpollExclusive(Epoll):
    """As :class:`Epoll`, with ``EPOLLEXCLUSIVE``: the kernel wakes one epoll, not all."""

    flags = Epoll.flags | getattr(select, "EPOLLEXCLUSIVE", 0)


class SharedEpoll(Poll):
    """Every thread waits on the SAME epoll object (made once by the pool)."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.epoll = setting.shared_epoll

    def wait(self) -> Wakeup:
        self.epoll.poll()
        return self.try_accept(now())


class ReusePort(Blocking):
    """Bind a socket of this worker's own to the shared port, with ``SO_REUSEPORT``."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        own = socket.socket(address_family(setting.address[0]), socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(setting.address)
        own.listen(setting.backlog)  # a queue of its own: the kernel hashes clients across queues
        self.listener = own

    def close(self) -> None:
        self.listener.close()


class Locked(Blocking):
    """Only the holder of an ``flock`` on a shared file waits in ``accept()``."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        # Each worker opens the file itself: flock locks belong to an open file,
        # so two threads with two opens exclude each other like two processes do.
        assert setting.lock_path is not None
        self.lock_fd = os.open(setting.lock_path, os.O_RDWR | os.O_CREAT, 0o644)

    def wait(self) -> Wakeup:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            return super().wait()
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.lock_fd)


STRATEGIES: dict[str, type] = {
    "blocking": Blocking,
    "timeout": Timeout,
    "poll": Poll,
    "epoll": Epoll,
    "epoll-exclusive": EpollExclusive,
    "shared-epoll": SharedEpoll,
    "reuseport": ReusePort,
    "locked": Locked,
}


def make_waiter(name: str, listener: socket.socket, setting: Setting) -> Any:
    """Build strategy ``name`` inside a worker (its epoll, socket or lock are its own).

    Args:
        name: a key of :data:`STRATEGIES`.
        listener: the pool's shared listening socket.
        setting: what the pool prepared for every worker of this strategy.
    """
    return STRATEGIES[name](listener, setting)
