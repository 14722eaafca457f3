"""When a connection can be attributed from outside, and what to do when it cannot.

:mod:`acceptlab.real.observe` attributes a connection by finding the worker
that holds the server's side of it, so it must look while a worker holds it.
Two things can make that moment never come:

* **a deferred accept.**  A listener with ``TCP_DEFER_ACCEPT`` (uWSGI sets it
  by default) keeps a connection out of the accept queue until its first
  data arrives: the server's side stays in ``SYN_RECV`` with no process
  holding it, so a client that holds its request back until a worker has
  accepted waits for the defer timeout.  The cure is :data:`FIRST_BYTE`: send
  the request's first byte, which completes the hand-over, hold the rest back
  until a worker holds the connection, then send it.  Whether a listener
  defers comes from the inspection (``getsockopt`` through ``pidfd_getfd``)
  or, where that is not permitted, from :func:`probe_deferral`: one
  connection whose server side stays in ``SYN_RECV`` while the accept queue
  has room.
* **the wrong moment or the wrong processes**: a server that closes before
  the look after its reply, workers that are not the ones given.  Then no
  connection is attributed, and :class:`Watch` stops the run after the
  first few connections with one line saying why (:class:`CannotAttribute`),
  instead of firing the whole load for nothing.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

from ..linux import procfs

__all__ = ["FIRST_BYTE", "CannotAttribute", "ConfirmedLook", "Watch", "listener_defers",
           "probe_deferral", "defer_accept", "STOP_AFTER"]

FIRST_BYTE = "first-byte"
"""Send the request's first byte, attribute, then send the rest (for a deferring listener)."""

STOP_AFTER = 5
"""Connections after which a run that attributed none of them stops."""

_AUTO = "the attribution auto looks before the request for such a server"
_ESTABLISHED, _SYN_RECV = 1, 3  # include/net/tcp_states.h (a pending request socket: SYN_RECV)


class CannotAttribute(RuntimeError):
    """No connection of the first few could be attributed; the message says why."""


def defer_accept(found, port: int) -> int | None:
    """The largest ``TCP_DEFER_ACCEPT`` among the inspection's listeners on ``port``.

    None if it could not be read for one of them (then :func:`probe_deferral` can tell).
    """
    values = [listener.defer_accept for listener in found.listeners if listener.port == port]
    if not values or any(value is None for value in values):
        return None
    return max(values)


def listener_defers(found, address: tuple[str, int]) -> bool:
    """Whether the listener at ``address`` defers accepts: the inspection's word, else a probe."""
    known = defer_accept(found, address[1])
    return bool(known) if known is not None else probe_deferral(address)


def probe_deferral(address: tuple[str, int], *, wait: float = 0.05,
                   timeout: float = 2.0) -> bool:
    """Whether the listener at ``address`` defers accepts: one bare connection, looked at.

    Connects and sends nothing.  A listener that hands connections over at
    once has the server's side ``ESTABLISHED`` (in its accept queue) within
    microseconds on loopback; a deferring one keeps it in ``SYN_RECV`` until
    data comes.  ``SYN_RECV`` for ``wait`` seconds while the accept queue has
    room means deferred (a full queue would also hold it there).  The probe
    ends with a reset, so no worker is woken for it.

    Args:
        address: the server's loopback address.
        wait: how long the server side must stay in ``SYN_RECV``.
        timeout: for the connect.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, procfs.SockDiag() as diag:
        sock.settimeout(timeout)
        sock.connect(address)
        client = sock.getsockname()[:2]
        deadline = time.monotonic() + wait
        deferred = False
        while True:
            found = diag.find(address, client)
            if found is None or found.state != _SYN_RECV:
                break
            if time.monotonic() >= deadline:
                full = any(entry.queue >= entry.backlog
                           for entry in diag.listeners(port=address[1]))
                deferred = not full
                break
            time.sleep(0.002)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return deferred


class ConfirmedLook:
    """The attributor of ``auto``'s trial connection: a look after the reply counts only if a
    second look ``pause`` seconds later still finds the connection held.

    A server that closes once it has answered (uWSGI's ``--http-socket``) can
    still hold the connection for the microseconds between its reply and its
    close, and one look can land there; a server that keeps connections open
    keeps them for seconds (its keep-alive timeout).
    """

    def __init__(self, attributor, *, pause: float = 0.05) -> None:
        self.attributor, self.pause = attributor, pause

    def look(self, client: tuple[str, int]) -> tuple[int | None, int]:
        first = self.attributor.look(client)
        if first[0] is None:
            return first
        time.sleep(self.pause)
        return self.attributor.look(client)

    def attribute(self, client: tuple[str, int], *, deadline: float) -> tuple[int | None, int]:
        return self.attributor.attribute(client, deadline=deadline)


class Watch:
    """Counts a run's connections and raises the alarm when the first few attribute nothing.

    :meth:`wrap` wraps the function that makes one connection; once
    :data:`STOP_AFTER` have finished and none was attributed, :attr:`halt` is
    set (the load stops starting connections) and :meth:`check` raises
    :class:`CannotAttribute` with the reason the last look gave.

    Args:
        attributor: the run's :class:`acceptlab.real.observe.Attributor`.
        attribution: the attribution in use (for the message).
        after: connections before giving up.
    """

    def __init__(self, attributor, attribution: str, *, after: int = STOP_AFTER) -> None:
        self.attributor, self.attribution, self.after = attributor, attribution, after
        self.halt = threading.Event()
        self.finished = self.attributed = 0
        self.reason: str | None = None
        self._lock = threading.Lock()

    def wrap(self, run_one: Callable) -> Callable:
        def watched(conn: int):
            item = run_one(conn)
            with self._lock:
                self.finished += 1
                if item.holder is not None:
                    self.attributed += 1
                elif not self.attributed:
                    self.reason = self._why(item)
                if not self.attributed and self.finished >= self.after:
                    self.halt.set()
            return item
        return watched

    def check(self) -> None:
        """Raise :class:`CannotAttribute` if the run was stopped."""
        if self.halt.is_set():
            raise CannotAttribute(f"observe stopped after {self.finished} connections, none "
                                  f"attributed ({self.attribution}): {self.reason}")

    def _why(self, item) -> str:
        """Why this connection was not attributed, from what the last look saw."""
        if not item.record.ok:
            return f"the connections failed ({item.record.error})"
        seen = self.attributor.last_seen()
        if seen is None:
            if self.attribution == "after-reply":
                return ("the server closes each connection once it has answered, so nothing "
                        f"was left to look at after the reply ({_AUTO})")
            return "the server's side of the connection was never found (sock_diag)"
        if seen.state == _SYN_RECV:
            return ("the server's side stayed in SYN_RECV: the listener defers accepts "
                    "(TCP_DEFER_ACCEPT) until data arrives; the first-byte attribution "
                    "sends one byte first (auto chooses it when it sees the option)")
        if not seen.inode and seen.state == _ESTABLISHED:
            return "no worker accepted the connection in time: it stayed in the accept queue"
        if not seen.inode:
            return (f"the server had closed its side when looked at (state "
                    f"{procfs.TCP_STATES.get(seen.state, seen.state)}): it closes each "
                    f"connection once it has answered ({_AUTO})")
        holder = _who_holds(seen.inode)
        workers = " ".join(map(str, self.attributor.workers))
        return (f"process {holder} held the server's side, and it is not among the workers "
                f"({workers})" if holder else
                f"no process we may read held the server's side (workers: {workers})")


def _who_holds(inode: int) -> int | None:
    for pid in procfs.process_ids():
        try:
            if inode in procfs.socket_inodes(pid).values():
                return pid
        except OSError:
            continue
    return None
