"""The client's side of one conversation, with no I/O: bytes in, a verdict out.

A client engine (the thread-per-client loop in :mod:`acceptlab.client.load`, the
epoll loop in :mod:`acceptlab.client.lean`) owns the socket and the clock.
Everything else about a conversation lives here, once: where a reply ends,
whether it is the right answer, which worker it names, how long it may grow,
whether it comes from a server of another protocol, and the one word that
says how the conversation ended.  This is h11's design (``receive_data`` /
``next_event`` in its ``_connection.py``): the protocol object never reads or
writes a socket, so it can be fed one byte at a time in a test and driven by
two very different engines without a second copy of its rules.

An engine's side of the bargain::

    conversation = ClientConversation(ZEN)
    outgoing = conversation.start()                # the first question
    while not conversation.ended:
        send(outgoing)
        data = recv()                              # b'' when the server closed
        outgoing = conversation.receive(data)      # the next question(s), or b''
    # on a wait that ran out:  outgoing = conversation.timed_out()  (a probe, or b'': ended)
    # on a socket error:       conversation.fail(error_name(exc))
    record(conversation.error, conversation.worker)  # '' when every answer was right

Recognising the wrong protocol.  The zen client's questions end at ``?`` with
no newline, and an HTTP server waits for a blank line, so a zen client talking
to an HTTP server hears nothing at all.  When such a wait runs out before any
right answer came, :meth:`ClientConversation.timed_out` returns a *probe*, the
blank line that ends an HTTP request head: an HTTP server then answers at once
with an error status (``HTTP/1.0 400 ...``), which names the mismatch, while a
zen or lancelot server (which reads up to ``?``) ignores it.  The probe goes
only to a connection already given up as timed out, so it cannot disturb a
conversation that was going well.  The other way round needs no probe: the
``http`` question asks for ``/?``, so a zen server answers its
"unknown aphorism" error at once instead of waiting for a question mark.
"""

from __future__ import annotations

import re
import socket

from ..server.protocol import MAX_REPLY, PROTOCOLS, Protocol, parse_served_by

__all__ = ["ClientConversation", "MAX_REPLY", "PROBE", "PROBE_WAIT", "ERRORS", "error_name",
           "check_reply", "recognise", "printable"]

PROBE = b"\r\n\r\n"
"""Sent to a silent server after a timeout: the blank line that ends an HTTP request head."""

PROBE_WAIT = 0.25
"""Seconds to wait for an answer to :data:`PROBE`.  An HTTP server on loopback answers a complete
request in well under a millisecond; a quarter second leaves room for a busy machine while
adding little to a connection that has already timed out."""

# How a client connection can end: its one-word ``error`` (``''`` is success) and what it means.
# ``{address}`` and ``{timeout}`` are filled in by whoever explains a table of them.
ERRORS = {
    "refused": "nothing listens on {address}",
    "reset": "the server reset the connection",
    "closed": "the server closed the connection before the reply ended",
    "timeout": "no reply within the {timeout} s timeout",
    "bad-reply": "a wrong answer (right protocol, wrong words)",
    "too-long": f"a reply longer than {MAX_REPLY} bytes",
    "mismatch": "the server speaks another protocol",
    "unfinished": "still going when the load's duration ran out (or the load was stopped)",
}


def error_name(exc: BaseException) -> str:
    """Name the cause of a failed connection in one word, for counting.

    An error outside :data:`ERRORS` (``OSError`` for "too many open files", say)
    keeps its exception's name, which is more use to a reader than "other".
    """
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionError):  # a broken pipe, an aborted connection
        return "closed"
    return type(exc).__name__


def check_reply(protocol: Protocol, question: bytes, reply: bytes) -> bool:
    """Is ``reply`` the right answer to ``question``?  (A wrong one is an error, not a success.)"""
    if protocol.reply_end is None:  # http: any 200 will do (nginx answers HTTP/1.1 200)
        return reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    return reply == protocol.table.get(question, protocol.unknown_reply)


# The answers only a server of one protocol gives (zen's "unknown aphorism" is zen's alone;
# the complaints, "Error: idle timeout." and the like, are shared and so prove nothing).
_ANSWERS = {}
for _p in PROTOCOLS.values():
    if _p.reply_end is not None:
        for _answer in (*_p.table.values(), _p.unknown_reply):
            _ANSWERS[_answer] = _p.name
_LONGEST_ANSWER = max(map(len, _ANSWERS))
_HTTP_HEAD = b"HTTP/"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSING = re.compile(rb"\r\nconnection:[^\r\n]*\bclose\b", re.IGNORECASE)
# A page with no status line: an HTTP server answering a request line without a version as
# HTTP/0.9 did (Python's http.server does so for zen's question and the probe).
_HTML_HEADS = (b"<!doctype", b"<html")
# Bytes a one-line text reply (zen, lancelot) never holds: control characters, line breaks.
_CONTROL = bytes(range(32)) + b"\x7f"


def recognise(data: bytes) -> str | None:
    """The protocol whose server would send ``data`` (the start of a reply), or None if unsure.

    >>> recognise(b"HTTP/1.0 400 Bad Request"), recognise(b"Error: unknown aphorism.")
    ('http', 'zen')
    >>> recognise(b"<!DOCTYPE HTML>")
    'http'
    """
    if data.startswith(_HTTP_HEAD) or data[:9].lower().startswith(_HTML_HEADS):
        return "http"
    head = data[:_LONGEST_ANSWER]  # enough to see any answer, and cheap on a long reply
    end = head.find(b".")
    return _ANSWERS.get(head[:end + 1]) if end >= 0 else None


def _foreign(protocol: Protocol, data: bytes, whole: bool) -> str | None:
    """If ``data`` cannot come from a ``protocol`` server: the likely protocol, or '' (garbage).

    None means it could (a right or a wrong answer of ``protocol``), or that too
    little has arrived to say (``whole=False``: the reply may still grow).
    """
    likely = recognise(data)
    if protocol.reply_end is None and likely == "http" and not data.startswith(_HTTP_HEAD):
        likely = None  # a page with no status line is no answer to an HTTP/1.0 request
    if likely is not None:
        return None if likely == protocol.name else likely
    if not data:
        return None  # nothing at all is a closed connection or a timeout, not garbage
    if protocol.reply_end is None:  # an HTTP reply starts with its status line, nothing else
        if _HTTP_HEAD.startswith(data):
            return None  # "HTTP" so far: the rest may follow (or it was cut short: bad-reply)
        if not whole and any(answer.startswith(data) for answer in _ANSWERS):
            return None  # the start of a zen or lancelot answer: wait to name the protocol
        return ""
    if _has_control(data):  # zen, lancelot: one line of text
        return ""
    return None


def _has_control(data: bytes) -> bool:
    return len(data.translate(None, _CONTROL)) < len(data)


def printable(data: bytes, limit: int = 60) -> str:
    """The first line of ``data`` (at most ``limit`` bytes), quoted, escaped, safe on one line."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    shown = repr(line[:limit])[1:]  # repr escapes what a terminal should not see; drop the b
    return shown + ("..." if len(line) > limit or len(line) < len(data.rstrip(b"\r\n")) else "")


class ClientConversation:
    """One client connection's conversation, fed the bytes that arrive; no sockets, no clock.

    Attributes an engine reads:

    * ``ended``: True once the conversation is over (nothing more to send or read);
    * ``error``: how it ended: ``''`` when every answer was right, else one word
      of :data:`ERRORS`;
    * ``replies``: whole replies received so far (the engine notes the time of the first);
    * ``worker``: the worker named in the last right reply (``http``), else -1;
    * ``held_open``: after a good end, True if the server still holds its side of the
      connection, waiting for more (zen and lancelot always do until the client
      closes; an HTTP server does when asked ``keep_alive`` and its reply gave
      its length and did not say ``Connection: close``);
    * ``received``, ``likely``: when ``error == 'mismatch'``, the bytes that gave it away
      and the protocol they belong to (``''`` when none the kit knows).
    """

    __slots__ = ("protocol", "keep_alive", "step", "buffer", "replies", "worker", "ended",
                 "error", "held_open", "probing", "received", "likely")

    def __init__(self, protocol: Protocol, *, keep_alive: bool = False) -> None:
        """Args:
            protocol: the protocol to speak.
            keep_alive: for ``http``, ask in HTTP/1.1 (whose connections persist
                unless the server says otherwise) and end the conversation
                as soon as the reply's ``Content-Length`` has arrived, instead
                of at the server's close.  A server that replies without a
                length, or says ``Connection: close``, is then read to its
                close as usual.  The other protocols ignore it.
        """
        self.protocol = protocol
        self.keep_alive = keep_alive and protocol.reply_end is None
        self.step = 0  # the question being answered
        self.buffer = b""  # bytes of the reply being read
        self.replies = 0
        self.worker = -1
        self.ended = False
        self.error = ""
        self.held_open = False
        self.probing = False  # the probe has gone out: waiting for the server to give itself away
        self.received = b""
        self.likely = ""

    def start(self) -> bytes:
        """The first bytes to send: the protocol's first question."""
        if self.keep_alive:
            return self.protocol.questions[0].replace(b" HTTP/1.0\r\n", b" HTTP/1.1\r\n", 1)
        return self.protocol.questions[0]

    def receive(self, data: bytes) -> bytes:
        """Feed what arrived (``b''``: the server closed).  Return what to send next, or ``b''``.

        ``b''`` means "wait for more", or, when :attr:`ended` is set, "stop".
        More than one question comes back at once only if the server answered
        ahead of its questions (a reply split differently changes nothing).
        """
        if self.ended:
            return b""
        if self.probing:
            return self._probed(data)
        if not data:
            return self._closed()
        buffer = self.buffer + data if self.buffer else data
        if len(buffer) > MAX_REPLY:
            return self._end("too-long", buffer)
        end = self.protocol.reply_end
        if end is None:  # http: the reply is everything until the server closes
            self.buffer = buffer
            if self.replies == 0 and not buffer.startswith(_HTTP_HEAD):
                self._check_partial(buffer, data)  # judge the status line as soon as it shows
            elif self.keep_alive:
                self._end_by_length(buffer)
            return b""
        outgoing = b""
        while True:
            at = buffer.find(end)
            if at < 0:
                break
            at += len(end)
            reply, buffer = buffer[:at], buffer[at:]
            self.replies += 1
            if not self._judge(reply, reply + buffer):
                return b""
            self.step += 1
            if self.step == len(self.protocol.questions):
                self.held_open = True  # the server answers until the client closes
                return self._end("")
            outgoing += self.protocol.questions[self.step]
        self.buffer = buffer
        if buffer:
            self._check_partial(buffer, data)
        return b"" if self.ended else outgoing

    def timed_out(self) -> bytes:
        """The engine's wait ran out.  Return the probe to send (then wait :data:`PROBE_WAIT`),
        or ``b''``: the conversation has ended (``timeout``, or ``mismatch`` if what did arrive
        gives the server away).

        The probe goes out once, and only before any right answer: a server
        that has answered this protocol correctly is not asked in another one.
        """
        if self.ended:
            return b""
        if self.probing or self.replies or self.protocol.reply_end is None:
            return self._end("timeout", self.buffer)
        self.probing = True
        self.buffer = b""  # from here on, only what the probe brings back is judged
        return PROBE

    def fail(self, error: str) -> str:
        """The socket failed (``error``: a word from :func:`error_name`, or ``'unfinished'``).

        Returns the word to record: after the probe went out, the truth is still
        "timeout", whatever the socket did next.
        """
        if not self.ended:
            self._end("timeout" if self.probing else error)
        return self.error

    # -- the verdicts --------------------------------------------------------------------------

    def _judge(self, reply: bytes, received: bytes) -> bool:
        """Check one whole reply; False if it ended the conversation.

        The verdict rests on ``reply`` alone, so that it is the same however
        the bytes were cut; ``received`` (the reply and whatever came after it)
        is only kept to show in a mismatch's message.
        """
        protocol = self.protocol
        if check_reply(protocol, protocol.questions[self.step], reply):
            served = parse_served_by(reply)
            self.worker = -1 if served is None else served
            return True
        likely = _foreign(protocol, reply, whole=True)
        if likely is None:
            self._end("bad-reply")
        else:
            self._mismatch(received, likely)
        return False

    def _check_partial(self, buffer: bytes, data: bytes) -> None:
        """Part of a reply is here: end at once if it already cannot be ``protocol``'s.

        For zen and lancelot only the newest ``data`` is searched for control
        bytes (the older part of ``buffer`` was searched when it arrived), so a
        reply fed in many small pieces costs no more than one fed whole.
        """
        if self.protocol.reply_end is None:
            likely = _foreign(self.protocol, buffer, whole=False)
        elif recognise(buffer) not in (None, self.protocol.name):
            likely = recognise(buffer)
        elif _has_control(data):
            likely = ""
        else:
            return
        if likely is not None:
            self._mismatch(buffer, likely)

    def _end_by_length(self, buffer: bytes) -> None:
        """``keep_alive`` http: end once the head and ``Content-Length`` bytes of body are in."""
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = buffer[:head_end + 2]  # the last header line keeps its \r\n for the patterns
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            return  # no length given: the reply ends when the server closes
        reply_end = head_end + 4 + int(length.group(1))
        if len(buffer) < reply_end:
            return
        self.replies = 1
        if self._judge(buffer[:reply_end], buffer):
            # HTTP/1.1 connections persist unless a side says otherwise; an HTTP/1.0 reply
            # to our HTTP/1.1 question means the server will close.
            self.held_open = head.startswith(b"HTTP/1.1") and _CLOSING.search(head) is None
            self._end("")

    def _closed(self) -> bytes:
        """The server closed: for http the reply is complete; otherwise it ended too soon."""
        buffer = self.buffer
        if self.protocol.reply_end is None and buffer and self.replies == 0:
            self.replies = 1
            if self._judge(buffer, buffer):
                self._end("")
            return b""
        return self._end("closed", buffer)

    def _probed(self, data: bytes) -> bytes:
        """After the probe: an answer in another protocol is a mismatch; anything else a timeout."""
        self.buffer += data
        likely = _foreign(self.protocol, self.buffer, whole=not data)
        if likely is not None:
            self._mismatch(self.buffer, likely)
        elif not data or recognise(self.buffer) == self.protocol.name:
            self._end("timeout")  # closed, or a late answer in the right protocol
        elif len(self.buffer) > MAX_REPLY:
            self._end("timeout")
        return b""

    def _end(self, error: str, leftover: bytes = b"") -> bytes:
        """End with ``error``, unless ``leftover`` (what arrived of an unfinished reply) shows
        the server speaks another protocol: that is the more useful thing to say."""
        likely = _foreign(self.protocol, leftover, whole=True) if leftover and error else None
        if likely is not None:
            self._mismatch(leftover, likely)
        else:
            self.ended, self.error = True, error
        return b""

    def _mismatch(self, received: bytes, likely: str) -> None:
        self.ended, self.error = True, "mismatch"
        self.received, self.likely = received[:200], likely
