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

from ..basics import address_family, now
from ..server.conversation import RECV_SIZE
from ..server.protocol import Protocol
from .control import LoadControl, LoadPart
from .conversation import PROBE_WAIT, ClientConversation, error_name

__all__ = ["LEAN", "ClosedLoop"]

LEAN = hasattr(select, "epoll") and hasattr(socket, "SOCK_NONBLOCK")
"""Can this machine run the epoll engine?  (Linux: yes; elsewhere the threads do the work.)"""

_SCAN_NS = 5_000_000  # how often (ns) to look for connections past their timeout
_BATCH = 256  # connections per bump of the shared progress counter


class _InFlight:
    """One connection attempt in flight (``__slots__``: one is made per attempt)."""

    __slots__ = ("sock", "conn", "attempt", "t_start", "t_connected", "t_reply", "pending",
                 "deadline", "conversation")


class ClosedLoop:
    """Keep ``part.concurrency`` connections in flight until ``part.numbers`` or the time runs out.

    Call :meth:`run` once.  Its steps: :meth:`_start` opens a connection and
    sends the first question; the epoll loop in :meth:`run` hands each ready
    socket to :meth:`_writable` or :meth:`_readable`; :meth:`_scan` finds
    connections past their timeout (:meth:`_expired`) or past the cut; and
    :meth:`_finish` records an attempt that ended and queues its retry or the
    next connection number.

    Args:
        part: this client process's part of the load (address, numbers,
            concurrency, timeout, retries, when to stop and when to cut).
        protocol: what to ask and how to check the answers.
        control: the load's stop flag (this loop cuts at once when a reply shows
            that the server speaks another protocol) and progress counter.
    """

    def __init__(self, part: LoadPart, protocol: Protocol, control: LoadControl) -> None:
        self.part, self.protocol, self.control = part, protocol, control
        self.family = address_family(part.address[0])
        self.timeout_ns, self.probe_ns = int(part.timeout * 1e9), int(PROBE_WAIT * 1e9)
        self.poller = select.epoll()
        self.in_flight: dict[int, _InFlight] = {}  # by file descriptor
        first = part.concurrency if now() < part.stop_ns else 0  # a late process fires nothing
        self.starts = collections.deque(
            (conn, 1) for conn in itertools.islice(iter(part.numbers), first))
        self.todo = iter(part.numbers[len(self.starts):])
        self.rows: list[tuple] = []
        self.mismatch: tuple | None = None
        self.unreported = 0

    def run(self) -> tuple[list[tuple], tuple | None]:
        """Fire the part.

        Returns:
            The rows (tuples in ``acceptlab.client.records.CLIENT_COLUMNS`` order) and,
            if a server spoke another protocol, ``(received, likely)`` from the
            first such reply.
        """
        next_scan = now() + _SCAN_NS
        try:
            while True:
                while self.starts:  # started here, not inside _finish(): no recursion
                    self._start(*self.starts.popleft())
                if not self.in_flight:
                    break
                ready = self.poller.poll(_SCAN_NS / 1e9)
                deadline = now() + self.timeout_ns  # one clock reading for the whole batch
                for fd, _ in ready:
                    flight = self.in_flight[fd]
                    flight.deadline = deadline
                    try:
                        if flight.pending:
                            self._writable(flight)
                        else:
                            self._readable(flight)
                    except OSError as exc:
                        self._finish(flight, flight.conversation.fail(error_name(exc)))
                moment = now()
                if moment >= next_scan:
                    next_scan = moment + _SCAN_NS
                    self._scan(moment)
        finally:
            for flight in self.in_flight.values():
                flight.sock.close()
            self.poller.close()
            self.control.report(self.unreported)
        return self.rows, self.mismatch

    # -- one connection's steps ------------------------------------------------------------------
    def _start(self, conn: int, attempt: int) -> None:
        """Open a non-blocking connection and send the first question at once."""
        flight = _InFlight()
        flight.conn, flight.attempt, flight.sock = conn, attempt, None
        flight.t_connected = flight.t_reply = -1
        flight.conversation = conversation = ClientConversation(self.protocol)
        flight.t_start = now()
        try:
            flight.sock = sock = socket.socket(self.family,
                                               socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as exc:  # out of file descriptors, say: a failed attempt like any other
            return self._finish(flight, conversation.fail(error_name(exc)))
        fd = sock.fileno()
        self.in_flight[fd] = flight
        flight.deadline = flight.t_start + self.timeout_ns
        code = sock.connect_ex(self.part.address)
        if code not in (0, errno.EINPROGRESS):
            return self._finish(flight, conversation.fail(error_name(OSError(code,
                                                                             os.strerror(code)))))
        flight.pending = conversation.start()
        try:
            if self._send(flight):
                flight.t_connected = now()
        except OSError as exc:
            return self._finish(flight, conversation.fail(error_name(exc)))
        self.poller.register(fd, select.EPOLLOUT if flight.pending else select.EPOLLIN)

    @staticmethod
    def _send(flight: _InFlight) -> bool:
        """Send what is pending, as much as fits; False if the socket cannot take any yet."""
        try:
            sent = flight.sock.send(flight.pending)
        except BlockingIOError:  # still connecting (or the send buffer is full)
            return False
        flight.pending = flight.pending[sent:]
        return True

    def _writable(self, flight: _InFlight) -> None:
        if self._send(flight):  # raises if the connection failed, e.g. refused
            if flight.t_connected < 0:
                flight.t_connected = now()
            if not flight.pending:
                self.poller.modify(flight.sock.fileno(), select.EPOLLIN)

    def _readable(self, flight: _InFlight) -> None:
        """Feed what has arrived to the conversation; send what it asks next."""
        sock, conversation = flight.sock, flight.conversation
        while True:
            try:
                chunk = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return  # all read for now
            outgoing = conversation.receive(chunk)
            if flight.t_reply < 0 and conversation.replies:
                flight.t_reply = now()
            if conversation.ended:
                return self._finish(flight, conversation.error)
            if outgoing:
                flight.pending = outgoing  # the next question, at once
                self._send(flight)
                if flight.pending:
                    self.poller.modify(sock.fileno(), select.EPOLLOUT)
                    return

    def _scan(self, moment: int) -> None:
        """Every few milliseconds: cut everything past the cut, or handle expired waits."""
        stopped = self.control.stop.cut_ns
        if moment >= self.part.cut_ns or (stopped and moment >= stopped):  # cut what is going
            for flight in list(self.in_flight.values()):
                self._finish(flight, flight.conversation.fail("unfinished"))
            self.starts.clear()
            return
        for flight in [f for f in self.in_flight.values() if f.deadline < moment]:
            self._expired(flight, moment)

    def _expired(self, flight: _InFlight, moment: int) -> None:
        """A wait outlasted ``timeout``: probe the server once (see ClientConversation), or end."""
        conversation = flight.conversation
        if flight.t_connected < 0 or flight.pending:  # never connected, or could not even send
            return self._finish(flight, conversation.fail("timeout"))
        flight.pending = conversation.timed_out()
        if conversation.ended:
            return self._finish(flight, conversation.error)
        flight.deadline = moment + self.probe_ns
        try:
            self._send(flight)
        except OSError as exc:
            return self._finish(flight, conversation.fail(error_name(exc)))
        if flight.pending:
            self.poller.modify(flight.sock.fileno(), select.EPOLLOUT)

    def _finish(self, flight: _InFlight, error: str) -> None:
        """Record a connection attempt that ended; queue its retry or the next connection."""
        sock, port = flight.sock, -1
        if sock is not None:  # None: the socket could not even be created
            del self.in_flight[sock.fileno()]
            try:
                port = sock.getsockname()[1]
            except OSError:
                pass
            sock.close()  # also takes it out of the epoll
        moment = now()
        conversation = flight.conversation
        self.rows.append((flight.conn, port, flight.t_start, flight.t_connected, flight.t_reply,
                          moment, not error, error, conversation.worker, flight.attempt))
        going = moment < self.part.stop_ns and not self.control.stop.cut_ns
        if error == "mismatch":
            if self.mismatch is None:
                self.mismatch = (conversation.received, conversation.likely)
            self.control.stop.cut_ns = moment  # no retry, no next connection, anywhere
            going = False
        elif error and flight.attempt <= self.part.retries and going:  # each attempt is a row
            self.starts.append((flight.conn, flight.attempt + 1))
            return
        self.unreported += 1  # a connection number is done
        if self.unreported == _BATCH:
            self.control.report(self.unreported)
            self.unreported = 0
        if going:
            conn = next(self.todo, None)
            if conn is not None:
                self.starts.append((conn, 1))
