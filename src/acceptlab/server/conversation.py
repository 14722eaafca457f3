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

__all__ = ["Limits", "converse", "ask", "recv_until"]

RECV_SIZE = 4096


def converse(
    conn: socket.socket,
    protocol: Protocol,
    who: str,
    work: Callable[[], None] = lambda: None,
    limits: Limits = Limits(),
) -> str:
    """Hold one conversation on an accepted socket and say how it ended.

    Returns ``'closed'`` (the client hung up, the normal end for zen and
    lancelot), ``'replied'`` (one-shot protocols such as HTTP/1.0),
    ``'too_long'``, ``'idle'`` or ``'reset'``.  Error handling: misbehaving
    clients get :meth:`Protocol.complaint` and are hung up on; nothing a client
    does raises out of here, so a worker never dies of bad input.  The caller
    closes ``conn``.
    """
    conn.settimeout(limits.idle_timeout)
    buffer = b""
    try:
        while True:
            data = conn.recv(RECV_SIZE)
            if not data:
                return "closed"  # the client closed, perhaps half-way through a request
            buffer += data
            requests, buffer = split_requests(buffer, protocol.request_end)
            for request in requests:
                if len(request) > limits.max_request:
                    return _complain(conn, protocol, Problem.TOO_LONG)
                work()
                conn.sendall(protocol.answer(request, who))
                if protocol.one_request_per_connection:
                    return "replied"
            if len(buffer) > limits.max_request:
                return _complain(conn, protocol, Problem.TOO_LONG)
    except TimeoutError:
        return _complain(conn, protocol, Problem.IDLE)
    except OSError:  # reset by the client, or shut down by the pool while stopping
        return "reset"


def _complain(conn: socket.socket, protocol: Protocol, problem: Problem) -> str:
    """Send the complaint if the client still listens; report the problem either way."""
    try:
        conn.sendall(protocol.complaint(problem))
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
