"""One connection's socket I/O, for the server side and the client side.

:mod:`acceptlab.server.protocol` decides what the bytes mean; this module moves them.
The server side is the book's ``handle_conversation``: read a request, answer
it, repeat until the client closes.  It adds the defences a server facing real
clients needs: a size limit, an idle timeout, and no exception escaping for a
client that resets the connection or sends garbage.

The client side here is the book's client, as a lesson types it: :func:`ask`
and :func:`recv_until`, blocking and trusting.  The load generator's client,
which checks every answer and notices a server of another protocol, holds its
conversations through :class:`acceptlab.client.conversation.ClientConversation`;
both stop reading at the same :data:`~acceptlab.server.protocol.MAX_REPLY`.
"""

from __future__ import annotations

import socket
from typing import Callable

from ..specs import Limits
from .protocol import MAX_REPLY, Problem, Protocol, split_requests

__all__ = ["Limits", "converse", "receive", "send", "ask", "recv_until"]

RECV_SIZE = 4096
_DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)  # Linux, macOS and the BSDs have it


def converse(
    conn: socket.socket,
    protocol: Protocol,
    who: str,
    work: Callable[[], None] | None = None,
    limits: Limits = Limits(),
) -> str:
    """Hold one conversation on an accepted socket and say how it ended.

    Returns ``'closed'`` (the client hung up, the normal end for zen and
    lancelot), ``'replied'`` (one-shot protocols such as HTTP/1.0),
    ``'too_long'``, ``'idle'`` or ``'reset'``.  Error handling: misbehaving
    clients get :meth:`Protocol.complaint` and are hung up on; nothing a client
    does raises out of here, so a worker never dies of bad input.  The caller
    closes ``conn``.  ``work`` is called before each answer (None: answer at once).

    The idle timeout is set on the socket only when the client first makes
    the worker wait (:func:`receive`, :func:`send`): until then every read and
    write is one system call.
    """
    if not _DONT_WAIT or conn.gettimeout() is not None:  # a timeout already? the idle one, then
        conn.settimeout(limits.idle_timeout)
    buffer = b""
    try:
        while True:
            data = receive(conn, limits.idle_timeout)
            if not data:
                return "closed"  # the client closed, perhaps half-way through a request
            buffer += data
            requests, buffer = split_requests(buffer, protocol.request_end)
            for request in requests:
                if len(request) > limits.max_request:
                    return _complain(conn, protocol, Problem.TOO_LONG, limits)
                if work is not None:
                    work()
                send(conn, protocol.answer(request, who), limits.idle_timeout)
                if protocol.one_request_per_connection:
                    return "replied"
            if len(buffer) > limits.max_request:
                return _complain(conn, protocol, Problem.TOO_LONG, limits)
    except TimeoutError:
        return _complain(conn, protocol, Problem.IDLE, limits)
    except OSError:  # reset by the client, or shut down by the pool while stopping
        return "reset"


# Why not settimeout() at once, as the book would?  A socket with a timeout is non-blocking
# underneath (an ioctl to switch it), and CPython then poll()s before every recv() and send()
# to enforce the timeout: three system calls per connection on top of recv, send and close.
# Yet when accept() returns under load, the request has nearly always arrived already, and a
# small reply always fits the socket's send buffer.  So each call first asks without waiting
# (MSG_DONTWAIT); only a client that makes the worker wait gets the timeout set, and from then
# on every call waits at most the idle timeout.  The defence is the same (lesson 07); the
# price of a client that is not there yet is one recv() that finds nothing.  (nginx, too,
# reads a new connection before it asks epoll whether there is anything to read.)


def receive(conn: socket.socket, idle_timeout: float | None) -> bytes:
    """What the client has sent: at once if it is there, else within ``idle_timeout``.

    Raises ``TimeoutError`` when the client stays silent that long (``None``: wait forever).
    """
    try:
        return conn.recv(RECV_SIZE, _DONT_WAIT)  # with a timeout set, CPython waits for it first
    except BlockingIOError:  # nothing yet: wait for it, with the idle timeout from now on
        conn.settimeout(idle_timeout)
        return conn.recv(RECV_SIZE)


def send(conn: socket.socket, data: bytes, idle_timeout: float | None) -> None:
    """Send all of ``data``: at once if it fits the send buffer, else waiting at most
    ``idle_timeout`` each time the client makes no room (``TimeoutError`` past it)."""
    try:
        sent = conn.send(data, _DONT_WAIT)
    except BlockingIOError:
        sent = 0
    if sent < len(data):  # the client does not read: wait for room, with the idle timeout
        conn.settimeout(idle_timeout)
        conn.sendall(data[sent:])


def _complain(conn: socket.socket, protocol: Protocol, problem: Problem, limits: Limits) -> str:
    """Send the complaint if the client still listens; report the problem either way."""
    try:
        send(conn, protocol.complaint(problem), limits.idle_timeout)
    except OSError:
        pass
    return problem.name.lower()


def recv_until(sock: socket.socket, end: bytes | None, limit: int = MAX_REPLY) -> bytes:
    """Read until the data ends with ``end`` (or, for ``end=None``, until the peer closes).

    Raises ``ConnectionError`` when the peer closes before ``end`` arrives,
    and ``ValueError`` past ``limit`` bytes: a client must be bounded too.
    """
    data = b""
    while end is None or not data.endswith(end):
        more = sock.recv(RECV_SIZE)
        if not more:
            if end is None:
                return data
            raise ConnectionError(f"server closed after {len(data)} bytes, before {end!r}")
        data += more
        if len(data) > limit:
            raise ValueError(f"reply longer than {limit} bytes")
    return data


def ask(sock: socket.socket, protocol: Protocol) -> list[bytes]:
    """The client's side: send each of the protocol's questions, collect each reply."""
    replies = []
    for question in protocol.questions:
        sock.sendall(question)
        replies.append(recv_until(sock, protocol.reply_end))
    return replies
