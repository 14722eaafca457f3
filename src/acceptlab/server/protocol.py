"""The conversations a worker holds with a client: bytes in, bytes out, no sockets.

Theory of operation
-------------------
A protocol here is three small decisions:

1. *Where does a request end?*  ``zen`` and ``lancelot`` requests end at ``?``
   (there is no newline); an ``http`` request ends at the blank line
   ``\\r\\n\\r\\n``.  :func:`split_requests` cuts a receive buffer at that mark.
2. *What is the answer?*  :meth:`Protocol.answer` maps one whole request to
   one reply.  It never touches a socket, which is what makes it easy to test
   (the same idea as h11: the I/O lives elsewhere, in :mod:`acceptlab.server.conversation`).
3. *Does the connection go on?*  ``zen`` and ``lancelot`` answer question after
   question until the client closes; ``http`` (HTTP/1.0) answers once and closes.

Bad input never raises: :meth:`Protocol.complaint` gives the reply for each
:class:`Problem`, and the caller closes the connection after sending it.

The bytes come from *Foundations of Python Network Programming*: the 3rd
edition's ``zen`` aphorisms and the 2nd edition's Monty Python questions
(both served on port 1060 in the book).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Mapping

__all__ = [
    "MAX_REPLY",
    "Problem",
    "Protocol",
    "ZEN",
    "LANCELOT",
    "HTTP",
    "PROTOCOLS",
    "get_protocol",
    "split_requests",
    "served_by",
    "parse_served_by",
]


MAX_REPLY = 1 << 20
"""Bytes a reply may reach before a client gives up ("too-long"): a client must be bounded too.
(1 MiB: the kit's own replies are under 200 bytes; any real page a test might fetch fits.)"""


class Problem(enum.Enum):
    """Ways a client can misbehave; each gets a clear reply, then the connection closes."""

    TOO_LONG = "request too long"
    IDLE = "idle timeout"
    MALFORMED = "malformed request"


def served_by(worker: int, pid: int, tid: int) -> str:
    """The sentence an ``http`` reply uses to name the worker that served it.

    >>> served_by(2, 4242, 4243)
    'served by worker 2 (pid 4242, thread 4243)'
    """
    return f"served by worker {worker} (pid {pid}, thread {tid})"


_SERVED_BY = re.compile(rb"served by worker (\d+) \(pid (\d+), thread (\d+)\)")


def parse_served_by(reply: bytes) -> int | None:
    """Return the worker slot named in a reply (the inverse of :func:`served_by`), or None."""
    match = _SERVED_BY.search(reply)
    return int(match.group(1)) if match else None


def split_requests(buffer: bytes, terminator: bytes) -> tuple[list[bytes], bytes]:
    """Cut ``buffer`` into whole requests (each keeping its ``terminator``) and the rest.

    TCP is a byte stream: one ``recv`` may hold half a question, or three.
    The rest is kept for the next ``recv``.

    >>> split_requests(b'Simple is better than?Explicit is', b'?')
    ([b'Simple is better than?'], b'Explicit is')
    """
    requests = []
    start = 0
    while True:
        end = buffer.find(terminator, start)
        if end < 0:
            return requests, buffer[start:]
        end += len(terminator)
        requests.append(buffer[start:end])
        start = end


@dataclass(frozen=True)
class Protocol:
    """One conversation: how requests end, what each is answered, and when to close.

    The server side (:mod:`acceptlab.server.conversation`) uses ``request_end``,
    :meth:`answer`, :meth:`complaint` and ``one_request_per_connection``.
    The client side uses ``questions`` (what the kit's client asks on each
    connection) and ``reply_end`` (how it knows a reply is complete; ``None``
    means "read until the server closes").
    """

    name: str
    request_end: bytes
    reply_end: bytes | None
    table: Mapping[bytes, bytes] = field(default_factory=dict)
    unknown_reply: bytes = b"Error: unknown question."
    questions: tuple[bytes, ...] = ()
    one_request_per_connection: bool = False

    def answer(self, request: bytes, who: str) -> bytes:
        """Reply to one whole request (terminator included); ``who`` names the worker."""
        return self.table.get(request, self.unknown_reply)

    def complaint(self, problem: Problem) -> bytes:
        """The reply sent before closing a connection that misbehaved."""
        return b"Error: " + problem.value.encode() + b"."


# 3rd edition (chapter 7): three aphorisms from `import this`, answered with their opposites.
ZEN = Protocol(
    name="zen",
    request_end=b"?",
    reply_end=b".",
    table={
        b"Beautiful is better than?": b"Ugly.",
        b"Explicit is better than?": b"Implicit.",
        b"Simple is better than?": b"Complex.",
    },
    unknown_reply=b"Error: unknown aphorism.",
    questions=(
        b"Beautiful is better than?",
        b"Explicit is better than?",
        b"Simple is better than?",
    ),
)

# 2nd edition: the bridge-keeper's three questions.
LANCELOT = Protocol(
    name="lancelot",
    request_end=b"?",
    reply_end=b".",
    table={
        b"What is your name?": b"My name is Sir Lancelot of Camelot.",
        b"What is your quest?": b"To seek the Holy Grail.",
        b"What is your favorite color?": b"Blue.",
    },
    unknown_reply=b"Error: unknown question.",
    questions=(
        b"What is your name?",
        b"What is your quest?",
        b"What is your favorite color?",
    ),
)


class HttpProtocol(Protocol):
    """HTTP/1.0, just enough for curl, a browser and wrk: every GET names its worker."""

    _STATUS = {
        Problem.TOO_LONG: b"431 Request Header Fields Too Large",
        Problem.IDLE: b"408 Request Timeout",
        Problem.MALFORMED: b"400 Bad Request",
    }

    def answer(self, request: bytes, who: str) -> bytes:
        """``200 OK`` naming the worker for GET and HEAD; ``400``/``405`` otherwise."""
        method, _, rest = request.partition(b" ")
        if not rest.split(b"\r\n", 1)[0].endswith((b"HTTP/1.0", b"HTTP/1.1")):
            return self.complaint(Problem.MALFORMED)
        if method not in (b"GET", b"HEAD"):
            return _http_response(b"405 Method Not Allowed", b"only GET is served here\n")
        return _served_by_reply(who, method == b"GET")

    def complaint(self, problem: Problem) -> bytes:
        """An HTTP error status whose body says what went wrong."""
        return _http_response(self._STATUS[problem], problem.value.encode() + b"\n")


@functools.lru_cache(maxsize=256)
def _served_by_reply(who: str, include_body: bool) -> bytes:
    """The ``200 OK`` naming worker ``who``: the same bytes every time, so built once per worker."""
    return _http_response(b"200 OK", (who + "\n").encode(), include_body=include_body)


def _http_response(status: bytes, body: bytes, include_body: bool = True) -> bytes:
    head = (
        b"HTTP/1.0 " + status + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"\r\n"
    )
    return head + body if include_body else head


HTTP = HttpProtocol(
    name="http",
    request_end=b"\r\n\r\n",
    reply_end=None,
    # "/?" (the root, with an empty query) is "/" to any HTTP server, but a zen or lancelot
    # server reads up to the "?" and answers its "unknown question" error at once: the client
    # then knows in one round trip that it is talking to the wrong protocol.
    questions=(b"GET /? HTTP/1.0\r\nHost: acceptlab\r\n\r\n",),
    one_request_per_connection=True,
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (ZEN, LANCELOT, HTTP)}


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name, with an error that lists the choices."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None
