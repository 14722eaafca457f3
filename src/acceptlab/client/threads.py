"""The threaded client engine: one blocking socket per client thread.

:func:`one_connection` is the book's client, made careful: open one
connection, ask the protocol's questions, check the answers through a
:class:`~acceptlab.client.conversation.ClientConversation`, close, and record
what happened (never raise for a network problem).  Around it, the three
shapes of load: :func:`client_loop` (sequential, or one client of a closed
loop), :func:`open_loop` (Poisson arrivals, a thread each) and
:func:`with_retries`.  :mod:`acceptlab.client.lean` is the other engine.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Iterator

from ..basics import address_family, now
from ..server.conversation import RECV_SIZE
from ..server.protocol import Protocol
from ..specs import CLIENT_TIMEOUT
from .control import SLICE, LoadControl, LoadPart, StopFlag
from .conversation import PROBE_WAIT, ClientConversation, error_name
from .records import ConnectionRecord

__all__ = ["client_socket", "one_connection", "with_retries", "client_loop", "open_loop"]

_NEVER = 1 << 62  # a now() no load reaches (146 years of nanoseconds)


def client_socket(address: tuple[str, int], conversation: ClientConversation) -> socket.socket | None:
    """A TCP socket for ``address``, or None once ``conversation`` has been told why none could be made.

    Out of file descriptors, say: a failed attempt like any other, recorded, never raised.
    """
    try:
        return socket.socket(address_family(address[0]), socket.SOCK_STREAM)
    except OSError as exc:
        conversation.fail(error_name(exc))
        return None


def one_connection(address: tuple[str, int], protocol: Protocol, *, conn: int = 0,
                   timeout: float = CLIENT_TIMEOUT, cut_ns: int | None = None,
                   stop: StopFlag | None = None) -> ConnectionRecord:
    """Open one connection, ask the protocol's questions, check the answers, close.

    Never raises for a network problem: the record says what went wrong.
    The conversation's rules (framing, checks, mismatch, size limit) are
    :class:`ClientConversation`'s; this function only moves the bytes.

    Args:
        address: the server's ``(host, port)``.
        protocol: what to ask and how to check the answers.
        conn: the connection number to record.
        timeout: seconds any single wait may last.
        cut_ns: past this ``now()`` the connection is given up as ``unfinished``.
        stop: the load's :class:`~acceptlab.client.control.StopFlag`: past the moment
            it holds, the connection is given up as ``unfinished`` within a tenth of a
            second.
    """
    record = ConnectionRecord(conn, t_start_ns=now())
    conversation = ClientConversation(protocol)
    waits = _Waits(timeout, cut_ns, stop)
    sock = client_socket(address, conversation)
    if sock is not None:
        with sock:
            try:
                waits.connect(sock, address)
                record.t_connected_ns = now()
                record.local_port = sock.getsockname()[1]
                outgoing, wait = conversation.start(), timeout
                while not conversation.ended:
                    if outgoing:
                        waits.sendall(sock, outgoing)
                    data = waits.recv(sock, wait)
                    if data is None:  # the wait ran out: a probe to send, or the end
                        outgoing, wait = conversation.timed_out(), PROBE_WAIT
                        continue
                    outgoing = conversation.receive(data)
                    if record.t_reply_ns < 0 and conversation.replies:
                        record.t_reply_ns = now()
            except TimeoutError:
                conversation.fail("unfinished" if waits.over() else "timeout")
            except OSError as exc:
                conversation.fail(error_name(exc))
            if record.local_port < 0:
                try:
                    record.local_port = sock.getsockname()[1]
                except OSError:
                    pass
    record.ok, record.error, record.worker = not conversation.error, conversation.error, conversation.worker
    if conversation.error == "mismatch":
        record.mismatch = (conversation.received, conversation.likely)
    record.t_done_ns = now()
    return record


class _Waits:
    """The waits of one threaded connection: each at most ``timeout``, none past ``cut_ns``,
    and none long after ``stop`` is set (a blocked ``recv`` wakes every :data:`SLICE` to look).

    The cut is read once and again only when a slice of a wait ends empty, so a
    conversation that goes well pays one clock reading per wait, no more.
    """

    __slots__ = ("timeout", "cut", "stop", "slice")

    def __init__(self, timeout: float, cut_ns: int | None, stop: StopFlag | None) -> None:
        self.timeout, self.stop = timeout, stop
        self.cut = _NEVER if cut_ns is None else cut_ns
        self.slice = SLICE if stop is not None else timeout
        self.look()

    def look(self) -> None:
        """Take an earlier cut from the stop flag, if it has been set."""
        stopped = self.stop.cut_ns if self.stop is not None else 0
        if stopped and stopped < self.cut:
            self.cut = stopped

    def over(self) -> bool:
        """Has the load ended (cut, or stopped) for this connection?"""
        self.look()
        return now() >= self.cut

    def _left(self) -> float:
        """Seconds until the cut; TimeoutError if it has come."""
        left = (self.cut - now()) / 1e9
        if left <= 0:
            raise TimeoutError("the load is over")
        return left

    def connect(self, sock: socket.socket, address: tuple[str, int]) -> None:
        _set_timeout(sock, min(self.timeout, self._left()))
        sock.connect(address)

    def sendall(self, sock: socket.socket, data: bytes) -> None:
        _set_timeout(sock, min(self.timeout, self._left()))
        sock.sendall(data)

    def recv(self, sock: socket.socket, seconds: float) -> bytes | None:
        """What arrives within ``seconds``; None if nothing did (TimeoutError if the load ended)."""
        end = now() + int(seconds * 1e9)
        while True:
            left = (min(end, self.cut) - now()) / 1e9
            if left <= 0:
                if self.over():
                    raise TimeoutError("the load is over")
                return None
            _set_timeout(sock, min(left, self.slice))
            try:
                return sock.recv(RECV_SIZE)
            except TimeoutError:
                self.look()  # a slice ended empty: has the load been stopped meanwhile?


def _set_timeout(sock: socket.socket, seconds: float) -> None:
    """``sock.settimeout(seconds)``, unless it has that timeout already: each call is an ioctl,
    and a conversation that goes well asks for the same timeout wait after wait."""
    if sock.gettimeout() != seconds:
        sock.settimeout(seconds)


def with_retries(address: tuple[str, int], protocol: Protocol, conn: int, part: LoadPart,
                 control: LoadControl) -> list[ConnectionRecord]:
    """:func:`one_connection`, tried again up to ``retries`` times if it fails.

    Every attempt is a connection of its own and gets its own record: a
    failed attempt may still have been accepted by a worker (one killed
    mid-conversation, say), and the event log will show it.  No retry starts
    after the duration, nor after a mismatch (it would fail alike).
    """
    records = []
    for attempt in range(1, part.retries + 2):
        record = one_connection(address, protocol, conn=conn, timeout=part.timeout,
                                cut_ns=part.cut_ns, stop=control.stop)
        record.attempt = attempt
        records.append(record)
        if record.error == "mismatch":
            control.stop.cut_now()  # the others end at once: they would fail alike
        if record.ok or not part.may_start(control):
            break
    control.report(1)  # one connection number done, however many attempts it took
    return records


def _pause_until(moment_ns: int, part: LoadPart, control: LoadControl) -> None:
    """Sleep until ``moment_ns``, but no later than the end of the duration or a stop."""
    while part.may_start(control):
        left = (min(moment_ns, part.stop_ns) - now()) / 1e9
        if left <= 0:
            return
        time.sleep(min(left, SLICE))


def client_loop(address: tuple[str, int], protocol: Protocol, numbers: Iterator[int],
                part: LoadPart, control: LoadControl, out: list[ConnectionRecord]) -> None:
    """One closed-loop client: take the next connection number, run it, pause ``gap``, repeat."""
    for conn in numbers:
        if not part.may_start(control):
            return
        out.extend(with_retries(address, protocol, conn, part, control))
        if part.gap:
            _pause_until(now() + int(part.gap * 1e9), part, control)


def open_loop(address: tuple[str, int], protocol: Protocol, part: LoadPart,
              control: LoadControl, out: list[ConnectionRecord],
              max_in_flight: int = 256) -> list[threading.Thread]:
    """Start connections at Poisson times, ``rate`` per second, each in its own thread.

    ``max_in_flight`` bounds the threads: past it, arrivals wait (and the
    achieved rate falls below the target, which the caller can see).
    Returns the threads started, for the caller to join.
    """
    pace = random.Random(part.seed)
    slots = threading.BoundedSemaphore(max_in_flight)
    threads = []
    next_start = now()

    def run(conn: int) -> None:
        try:
            out.extend(with_retries(address, protocol, conn, part, control))
        finally:
            slots.release()

    for conn in part.numbers:
        next_start += int(pace.expovariate(part.rate) * 1e9)  # exponential gaps: Poisson
        _pause_until(next_start, part, control)
        while part.may_start(control) and not slots.acquire(timeout=SLICE):
            pass
        if not part.may_start(control):
            break
        thread = threading.Thread(target=run, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    return threads
