"""The fast client engine: a closed loop as ONE epoll loop per client process (Linux).

:func:`acceptlab.client.load.fire` runs this engine for a closed loop spread over
several client processes (``processes >= 2``, no ``rate``, no ``gap``); every
other mode runs a thread per client.  Both engines hold each conversation
through the same :class:`~acceptlab.client.conversation.ClientConversation`,
so they frame, check and name errors alike and give the same table; this
module only moves bytes and watches the clock.

Why it is shaped so.  A Python client is slow because of Python, not the
kernel: a thread per client queues for the GIL, ``settimeout()`` adds a
``poll()`` before every ``recv`` and ``send``, and a dataclass per connection
costs more than the connection's system calls.  wrk, the yardstick, runs one
event loop per core.  So here each client process holds its ``concurrency``
connections in one thread and one epoll:

* sockets are created non-blocking (``SOCK_NONBLOCK``: no extra ``ioctl``);
* the first question is sent right after ``connect()``: on loopback the
  handshake has finished by the time ``connect()`` returns, so no epoll round
  trip is needed (if it has not, ``EAGAIN`` says so and we wait for "writable");
* a socket leaves the epoll by being closed (``close()`` removes it), not by a call;
* timeouts, the end of the duration and the stop flag are found by a scan
  every few milliseconds, not a timer per call;
* each record is born a plain tuple, and the progress counter, whose lock is
  shared across processes, is bumped once per batch.
"""

from __future__ import annotations

import collections
import errno
import itertools
import os
import select
import socket
from typing import Callable

from ..basics import address_family, now
from .conversation import PROBE_WAIT, ClientConversation, error_name
from ..server.conversation import RECV_SIZE
from ..server.protocol import Protocol

__all__ = ["LEAN", "closed_loop"]

LEAN = hasattr(select, "epoll") and hasattr(socket, "SOCK_NONBLOCK")
"""Can this machine run the epoll engine?  (Linux: yes; elsewhere the threads do the work.)"""

_SCAN_NS = 5_000_000  # how often (ns) to look for connections past their timeout
_BATCH = 256  # connections per bump of the shared progress counter


class _Flight:
    """One connection in flight (``__slots__``: one is made per attempt)."""

    __slots__ = ("sock", "conn", "attempt", "t_start", "t_connected", "t_reply", "pending",
                 "deadline", "talk")


def closed_loop(address: tuple[str, int], protocol: Protocol, numbers: range, *,
                concurrency: int, stop_ns: int, cut_ns: int, timeout: float, retries: int,
                report: Callable[[int], None], stop) -> tuple[list[tuple], tuple | None]:
    """Keep ``concurrency`` connections in flight until ``numbers`` or the time runs out.

    Args:
        address: the server's ``(host, port)``.
        protocol: what to ask and how to check the answers.
        numbers: the connection numbers this process fires.
        concurrency: connections kept in flight at once.
        stop_ns: no connection (nor retry) starts at or after this ``now()``.
        cut_ns: connections still in flight at this ``now()`` end as ``unfinished``.
        timeout: seconds any single wait may last.
        retries: failed attempts started again per connection number.
        report: called with a count of finished connection numbers (the progress bar).
        stop: the load's stop flag: ``stop.value`` is 0 while the load runs, else the
            ``now()`` at which connections still in flight are cut (none starts once it is
            set).  Anyone may set it; this loop sets it to "now" when a reply shows that
            the server speaks another protocol.

    Returns:
        The rows (tuples in ``acceptlab.client.load.CLIENT_COLUMNS`` order) and, if a
        server spoke another protocol, ``(received, likely)`` from the first such reply.
    """
    family, kind = address_family(address[0]), socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    timeout_ns, probe_ns = int(timeout * 1e9), int(PROBE_WAIT * 1e9)
    poller = select.epoll()
    flights: dict[int, _Flight] = {}  # by file descriptor
    first = concurrency if now() < stop_ns else 0  # a process that started late fires nothing
    starts = collections.deque((conn, 1) for conn in itertools.islice(iter(numbers), first))
    todo = iter(numbers[len(starts):])
    rows: list[tuple] = []
    mismatch: tuple | None = None
    unreported = 0

    def start(conn: int, attempt: int) -> None:
        flight = _Flight()
        flight.conn, flight.attempt, flight.sock = conn, attempt, None
        flight.t_connected = flight.t_reply = -1
        flight.talk = talk = ClientConversation(protocol)
        flight.t_start = now()
        try:
            flight.sock = sock = socket.socket(family, kind)
        except OSError as exc:  # out of file descriptors, say: a failed attempt like any other
            return finish(flight, talk.fail(error_name(exc)))
        flights[sock.fileno()] = flight
        flight.deadline = flight.t_start + timeout_ns
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            return finish(flight, talk.fail(error_name(OSError(code, os.strerror(code)))))
        flight.pending = talk.start()
        try:
            if send(flight):
                flight.t_connected = now()
        except OSError as exc:
            return finish(flight, talk.fail(error_name(exc)))
        poller.register(sock.fileno(), select.EPOLLOUT if flight.pending else select.EPOLLIN)

    def send(flight: _Flight) -> bool:
        """Send what is pending, as much as fits; False if the socket cannot take any yet."""
        try:
            sent = flight.sock.send(flight.pending)
        except BlockingIOError:  # still connecting (or the send buffer is full)
            return False
        flight.pending = flight.pending[sent:]
        return True

    def writable(flight: _Flight) -> None:
        if send(flight):  # raises if the connection failed, e.g. refused
            if flight.t_connected < 0:
                flight.t_connected = now()
            if not flight.pending:
                poller.modify(flight.sock.fileno(), select.EPOLLIN)

    def readable(flight: _Flight) -> None:
        """Feed what has arrived to the conversation; send what it asks next."""
        sock, talk = flight.sock, flight.talk
        while True:
            try:
                chunk = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return  # all read for now
            outgoing = talk.receive(chunk)
            if flight.t_reply < 0 and talk.replies:
                flight.t_reply = now()
            if talk.ended:
                return finish(flight, talk.error)
            if outgoing:
                flight.pending = outgoing  # the next question, at once
                send(flight)
                if flight.pending:
                    poller.modify(sock.fileno(), select.EPOLLOUT)
                    return

    def expired(flight: _Flight, moment: int) -> None:
        """A wait outlasted ``timeout``: probe the server once (see ClientConversation), or end."""
        talk = flight.talk
        if flight.t_connected < 0 or flight.pending:  # never connected, or could not even send
            return finish(flight, talk.fail("timeout"))
        flight.pending = talk.timed_out()
        if talk.ended:
            return finish(flight, talk.error)
        flight.deadline = moment + probe_ns
        try:
            send(flight)
        except OSError as exc:
            return finish(flight, talk.fail(error_name(exc)))
        if flight.pending:
            poller.modify(flight.sock.fileno(), select.EPOLLOUT)

    def finish(flight: _Flight, error: str) -> None:
        """Record a connection attempt that ended; queue its retry or the next connection."""
        nonlocal unreported, mismatch
        sock, port = flight.sock, -1
        if sock is not None:  # None: the socket could not even be created
            del flights[sock.fileno()]
            try:
                port = sock.getsockname()[1]
            except OSError:
                pass
            sock.close()  # also takes it out of the epoll
        moment = now()
        rows.append((flight.conn, port, flight.t_start, flight.t_connected, flight.t_reply,
                     moment, not error, error, flight.talk.worker, flight.attempt))
        going = moment < stop_ns and not stop.value
        if error == "mismatch":
            if mismatch is None:
                mismatch = (flight.talk.received, flight.talk.likely)
            stop.value, going = moment, False  # no retry, no next connection, anywhere
        elif error and flight.attempt <= retries and going:  # every attempt is a row of its own
            starts.append((flight.conn, flight.attempt + 1))
            return
        unreported += 1  # a connection number is done
        if unreported == _BATCH:
            report(unreported)
            unreported = 0
        if going:
            conn = next(todo, None)
            if conn is not None:
                starts.append((conn, 1))

    next_scan = now() + _SCAN_NS
    try:
        while True:
            while starts:  # started here, not inside finish(): no recursion when all fail
                start(*starts.popleft())
            if not flights:
                break
            for fd, _ in poller.poll(_SCAN_NS / 1e9):
                flight = flights[fd]
                flight.deadline = now() + timeout_ns
                try:
                    if flight.pending:
                        writable(flight)
                    else:
                        readable(flight)
                except OSError as exc:
                    finish(flight, flight.talk.fail(error_name(exc)))
            moment = now()
            if moment >= next_scan:
                next_scan = moment + _SCAN_NS
                stopped = stop.value
                if moment >= cut_ns or (stopped and moment >= stopped):  # cut what is going
                    for flight in list(flights.values()):
                        finish(flight, flight.talk.fail("unfinished"))
                    starts.clear()
                    continue
                for flight in [f for f in flights.values() if f.deadline < moment]:
                    expired(flight, moment)
    finally:
        for flight in flights.values():
            flight.sock.close()
        poller.close()
        report(unreported)
    return rows, mismatch
