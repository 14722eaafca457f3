"""What the pool sets up once, before any worker starts, for the workers of one strategy.

Most strategies need nothing but the listening socket.  Some need something
every worker shares, made once in the pool's process:

* ``locked``: the lock file every worker ``flock``\\ s;
* ``shared-epoll``: the one epoll instance every thread waits in;
* ``reuseport`` and its variants: the address and backlog each worker binds
  its own socket with, and how many sockets the group has;
* ``busy-sleep``, ``exact``, ``handoff-least-busy``: per-process counts of
  open connections in shared memory (a ``multiprocessing.Array``);
* ``handoff``: one Unix socket per worker process, and the :class:`Acceptor`
  that deals connections over them.

:func:`set_up` makes them, from the waiter class's attributes
(``counts_in_flight``, ``shares_epoll``, ``handed_off``).  What crosses into a
worker is :class:`Shared` (plain values and inherited objects: nothing a fork
needs to pickle; under spawn the Array travels as multiprocessing arranges);
what stays in the pool is :class:`Setup`, which :meth:`Setup.close` undoes
after the workers have gone.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Shared", "Setup", "set_up", "Acceptor"]


@dataclass(frozen=True)
class Shared:
    """What every worker of one strategy shares (see the module docstring).

    ``workers`` counts the pool's worker processes (or threads, for
    ``kind='thread'``), ``threads`` the threads per process (hybrid; 1
    otherwise): a worker thread's slot is ``process * threads + thread``.
    """

    address: tuple[str, int] = ("127.0.0.1", 0)
    backlog: int = 128
    workers: int = 1
    threads: int = 1
    lock_path: str | None = None
    epoll: Any = None
    in_flight: Any = None

    @property
    def slots(self) -> int:
        """Worker threads in the pool: the sockets of a reuseport group."""
        return self.workers * self.threads

    def group_of(self, slot: int) -> int:
        """Which worker *process* slot ``slot``'s thread belongs to.

        Fairness between processes is what the process-level fixes (Puma's,
        Envoy's, Node's) are about: the counts they keep are per process.
        """
        return slot // self.threads


class Acceptor:
    """The ``handoff`` strategies' dealer: one thread in the pool's process.

    Args:
        listener: the shared listening socket (blocking).
        channels: the pool's end of each worker process's Unix socket, in order.
        in_flight: shared per-process counts of open connections; with them
            the dealer picks the least busy process (ties: the next in turn),
            without them strictly the next in turn.

    :meth:`stop` shuts the listener down, which wakes the blocked ``accept()``.
    """

    def __init__(self, listener: socket.socket, channels: list[socket.socket],
                 *, in_flight: Any = None) -> None:
        self.listener, self.channels, self.counts = listener, channels, in_flight
        self.dealt = 0
        self._thread = threading.Thread(target=self._run, name="acceptlab-acceptor", daemon=True)

    def start(self) -> "Acceptor":
        self._thread.start()
        return self

    def _next(self) -> int:
        turn = self.dealt % len(self.channels)
        if self.counts is None:
            return turn
        with self.counts.get_lock():
            order = [(turn + k) % len(self.channels) for k in range(len(self.channels))]
            target = min(order, key=lambda group: self.counts[group])  # first in turn among equals
            self.counts[target] += 1
        return target

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # shut down by stop()
            with conn:
                try:
                    socket.send_fds(self.channels[self._next()], [b"c"], [conn.fileno()])
                except OSError:
                    pass  # the pool is stopping; the client sees its connection close
            self.dealt += 1

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(1.0)


@dataclass
class Setup:
    """What the pool holds for one strategy: :class:`Shared`, and the hand-off's plumbing.

    ``channels`` (``handoff`` only) holds, per worker process, the pool's end
    and the worker's end of a Unix socket; ``acceptor`` is the dealer the pool
    starts once its workers are ready.
    """

    shared: Shared
    channels: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    acceptor: Acceptor | None = None

    def listener_for(self, group: int, listener: socket.socket) -> socket.socket:
        """The socket worker process ``group`` waits on: its channel, or the shared listener."""
        return self.channels[group][1] if self.channels else listener

    def forget_in_flight(self, group: int) -> None:
        """A new generation of process ``group`` starts: its predecessor's connections died with it."""
        if self.shared.in_flight is not None:
            self.shared.in_flight[group] = 0

    def close(self) -> None:
        """Undo it all, after the workers have gone."""
        if self.acceptor is not None:
            self.acceptor.stop()
        for pool_end, worker_end in self.channels:
            for sock in (pool_end, worker_end):
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread worker in recv_fds()
                except OSError:
                    pass
                sock.close()
        if self.shared.epoll is not None:
            self.shared.epoll.close()


def set_up(waiter: type, listener: socket.socket, shared: Shared, *, lock_dir: str,
           context: Any) -> Setup:
    """Make what every worker of strategy class ``waiter`` must share, once, in the pool's process.

    Args:
        waiter: the strategy's class (:data:`acceptlab.server.strategies.STRATEGIES`).
        listener: the pool's listening socket (bound; listening unless the
            strategy binds its own).
        shared: the address, backlog and sizes every worker gets.
        lock_dir: where ``locked`` puts its lock file.
        context: the ``multiprocessing`` context, for shared counters.
    """
    extra: dict[str, Any] = {"lock_path": os.path.join(lock_dir, "accept.lock")}
    if waiter.counts_in_flight:
        extra["in_flight"] = context.Array("i", shared.workers)
    if waiter.shares_epoll:
        extra["epoll"] = select.epoll()
        extra["epoll"].register(listener.fileno(), select.EPOLLIN)
    setup = Setup(replace(shared, **extra))
    if waiter.handed_off:
        setup.channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                          for _ in range(shared.workers)]
        setup.acceptor = Acceptor(listener, [pool_end for pool_end, _ in setup.channels],
                                  in_flight=setup.shared.in_flight)
    return setup
