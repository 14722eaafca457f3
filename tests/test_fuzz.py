"""Bad input: fuzz every parser, then throw misbehaving clients at live pools.

Part 1, property-based fuzzing (hypothesis), thousands of examples per test
(``ACCEPTLAB_FUZZ_EXAMPLES``, default 2000): the request splitter, each
protocol's ``answer`` (zen, lancelot, http), the ``served by`` parser, the
server's request reader (:func:`acceptlab.server.conversation.converse`, which is
the HTTP request reader too), the book client's reply reader
(:func:`acceptlab.server.conversation.recv_until`) and the load's client conversation
(:class:`acceptlab.client.conversation.ClientConversation`).  Inputs mix random bytes with
the protocols' own questions and terminators, so that both the happy paths
and the odd ones are hit.  The reader is fed through a scripted socket that
cuts the byte stream at arbitrary points, since TCP may deliver any split.

The reader is checked against a small model of what a conversation must do
whatever the split: answer each whole request in order; complain and hang
up at the first request longer than ``max_request`` (terminator included) or
when an unterminated tail grows past it; for HTTP answer the first request
and stop; at the end, say ``closed``, complain of idleness or say ``reset``.

Part 2, live pools (both kinds, zen and http, over loopback): oversize
requests, garbage, a half-closed connection, a reset one, a very slow
byte-by-byte sender, a client idle until the idle timeout, a pipelined
burst, a connect-and-leave.  After each, the worker that met the client is
found in the event log; it must still be serving (it accepts a new
connection while the other workers are held busy, see ``still_accepting``)
or have been replaced with the replacement recorded; and the next good
client gets the right answers.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acceptlab.client.conversation import ERRORS, ClientConversation
from acceptlab.server.conversation import Limits, converse, recv_until
from acceptlab.client.load import one_connection
from acceptlab.server.pool import WorkerPool
from acceptlab.server.protocol import (HTTP, LANCELOT, PROTOCOLS, ZEN, Problem, Protocol,
                                parse_served_by, served_by, split_requests)
from helpers import wait_until

EXAMPLES = int(os.environ.get("ACCEPTLAB_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WHO = served_by(3, 4242, 4243)

# -- generators ------------------------------------------------------------------------------

PIECES = sorted({q for p in PROTOCOLS.values() for q in p.questions} | {
    a for p in PROTOCOLS.values() for a in (*p.table.values(), p.unknown_reply)} | {
    b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n\r\n", b"<!DOCTYPE HTML>",
    b"?", b".", b"\r\n", b"\r\n\r\n", b"\n", b"\x00", b"GET ", b"HEAD ", b"POST ",
    b" HTTP/1.0", b" HTTP/1.1", b"GET / HTTP/1.0\r\n\r\n", b"HEAD /x HTTP/1.1\r\n\r\n",
    b"DELETE / HTTP/1.0\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"Host: a\r\n",
    "é?".encode(), b"\xff\xfe", b"served by worker 7 (pid 1, thread 2)",
})


def streams(max_pieces: int = 16) -> st.SearchStrategy[bytes]:
    """Byte streams built from random bytes, long runs and the protocols' own words.

    A long run (one byte repeated up to 2500 times) is what makes requests
    too long; it is drawn as two numbers, which keeps generation cheap.
    """
    run = st.tuples(st.integers(0, 255), st.integers(100, 2500)).map(lambda v: bytes([v[0]]) * v[1])
    piece = st.one_of(st.sampled_from(PIECES), st.binary(max_size=64), run)
    return st.lists(piece, max_size=max_pieces).map(b"".join)


def cuts() -> st.SearchStrategy[list[int]]:
    """Sizes of the successive reads, as TCP might deliver them (cycled if too few)."""
    return st.lists(st.integers(1, 5000), min_size=1, max_size=10)


# -- part 1: the parsers -------------------------------------------------------------------------

@FUZZ
@given(buffer=streams(), terminator=st.sampled_from([b"?", b"\r\n\r\n", b"ab", b"\x00"]))
def test_split_requests_cuts_at_every_terminator_and_loses_nothing(buffer, terminator):
    """Whole requests each end with the terminator and hold no other; the rest holds none."""
    requests, rest = split_requests(buffer, terminator)
    assert b"".join(requests) + rest == buffer
    assert terminator not in rest
    for request in requests:
        assert request.endswith(terminator)
        assert terminator not in request[:-len(terminator)]


@FUZZ
@given(buffer=streams(), sizes=cuts())
def test_split_requests_gives_the_same_requests_however_the_stream_is_cut(buffer, sizes):
    """Feeding the stream in pieces (as a server does, keeping the rest) changes nothing."""
    expected, expected_rest = split_requests(buffer, b"?")
    found, rest = [], b""
    for chunk in chop(buffer, sizes):
        requests, rest = split_requests(rest + chunk, b"?")
        found += requests
    assert found == expected and rest == expected_rest


@FUZZ
@given(request=streams(8), protocol=st.sampled_from([ZEN, LANCELOT]))
def test_zen_and_lancelot_answer_anything_with_an_answer_or_the_books_error(request, protocol):
    """Any bytes get a table answer or the unknown-question error, never an exception."""
    answer = protocol.answer(request, WHO)
    assert answer == protocol.table.get(request, protocol.unknown_reply)
    assert answer.endswith(protocol.reply_end)


@FUZZ
@given(request=streams(8))
def test_http_answers_anything_with_a_well_formed_response(request):
    """Whatever the request, the reply is a complete HTTP/1.0 response whose length adds up."""
    reply = HTTP.answer(request, WHO)
    check_http_response(reply)
    status = int(reply.split(b" ", 2)[1])
    method, _, rest = request.partition(b" ")
    line = rest.split(b"\r\n", 1)[0]
    if not line.endswith((b"HTTP/1.0", b"HTTP/1.1")):
        assert status == 400
    elif method in (b"GET", b"HEAD"):
        assert status == 200
        assert (WHO.encode() in reply) == (method == b"GET")
    else:
        assert status == 405


@pytest.mark.parametrize("problem", list(Problem))
@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_every_complaint_is_a_complete_reply(protocol, problem):
    """A complaint is what the client's reader expects: ends in '.', or a whole HTTP response."""
    complaint = protocol.complaint(problem)
    if protocol.reply_end is None:
        check_http_response(complaint)
    else:
        assert complaint.endswith(protocol.reply_end) and complaint.count(protocol.reply_end) == 1


def check_http_response(reply: bytes) -> None:
    head, blank, body = reply.partition(b"\r\n\r\n")
    assert blank, reply
    status_line, *headers = head.split(b"\r\n")
    assert status_line.startswith(b"HTTP/1.0 ") and status_line[9:12].isdigit()
    fields = dict(h.split(b": ", 1) for h in headers)
    assert fields[b"Connection"] == b"close"
    if body:  # HEAD replies carry the length of the body they leave out
        assert int(fields[b"Content-Length"]) == len(body)


@FUZZ
@given(worker=st.integers(0, 10**6), pid=st.integers(0, 2**31), tid=st.integers(0, 2**31),
       before=st.binary(max_size=100), after=st.binary(max_size=100))
def test_served_by_parses_back_from_anywhere_in_a_reply(worker, pid, tid, before, after):
    sentence = served_by(worker, pid, tid).encode()
    assert parse_served_by(before.replace(b"served by", b"") + sentence + after) == worker


@FUZZ
@given(reply=streams(10))
def test_served_by_parser_never_raises(reply):
    found = parse_served_by(reply)
    assert found is None or (isinstance(found, int) and found >= 0)


# -- the server's request reader, through a scripted socket --------------------------------------

def chop(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Cut ``data`` into pieces of the given sizes, cycling through them."""
    at, k = 0, 0
    while at < len(data):
        yield data[at:at + sizes[k % len(sizes)]]
        at += sizes[k % len(sizes)]
        k += 1


@dataclass
class ScriptedSocket:
    """Enough of a socket for ``converse``: reads come from a script, writes are kept.

    A ``None`` in the script is a moment when the client has sent nothing
    yet: a read that may not wait (``MSG_DONTWAIT`` on a socket with no
    timeout) finds nothing then (``BlockingIOError``), any other read waits
    and gets the next chunk.  After the script, the peer either closes
    (``recv`` returns b''), goes silent or resets.  A silent peer is what the
    idle timeout is for: a read with a timeout raises ``TimeoutError`` (as
    CPython's does), a read that may not wait finds nothing, and a read that
    would wait for ever fails the test, since a real worker would be held for
    ever.  ``send_fails_after`` makes sending raise as for a peer that left.
    """

    chunks: list[bytes | None]
    end: str = "close"
    send_fails_after: int | None = None
    sent: list[bytes] = field(default_factory=list)
    reads: int = 0
    timeout: float | None = None

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, timeout: float | None) -> None:
        assert timeout is None or timeout > 0
        self.timeout = timeout

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.reads += 1
        now_only = bool(flags & socket.MSG_DONTWAIT) and self.timeout is None
        if self.chunks and self.chunks[0] is None:  # the client has not sent this yet
            if now_only:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            self.chunks.pop(0)  # a read that waits: the chunk arrives
        while self.chunks and self.chunks[0] is None:
            self.chunks.pop(0)
        if self.chunks:
            chunk = self.chunks.pop(0)
            if len(chunk) > size:  # a read never returns more than asked
                self.chunks.insert(0, chunk[size:])
                chunk = chunk[:size]
            return chunk
        if self.end == "close":
            return b""
        if self.end == "silent":
            if now_only:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            assert self.timeout is not None, "a blocking read of a silent client, no timeout"
            raise TimeoutError("timed out")
        raise ConnectionResetError(104, "Connection reset by peer")

    def send(self, data: bytes, flags: int = 0) -> int:
        self.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        if self.send_fails_after is not None and len(self.sent) >= self.send_fails_after:
            raise BrokenPipeError(32, "Broken pipe")
        self.sent.append(data)


def late(chunks: Iterator[bytes], waits: list[bool]) -> list[bytes | None]:
    """The chunks, each preceded by a moment of silence (``None``) where ``waits`` says so."""
    script: list[bytes | None] = []
    for k, chunk in enumerate(chunks):
        if waits and waits[k % len(waits)]:
            script.append(None)
        script.append(chunk)
    return script


def expected_conversation(protocol: Protocol, stream: bytes, end: str,
                          limit: int) -> tuple[list[bytes], str]:
    """What any conversation over ``stream`` must send and how it must end, however it is cut."""
    requests, tail = split_requests(stream, protocol.request_end)
    replies = []
    for request in requests:
        if len(request) > limit:
            return replies + [protocol.complaint(Problem.TOO_LONG)], "too_long"
        replies.append(protocol.answer(request, WHO))
        if protocol.one_request_per_connection:
            return replies, "replied"
    if len(tail) > limit:
        return replies + [protocol.complaint(Problem.TOO_LONG)], "too_long"
    if end == "silent":
        return replies + [protocol.complaint(Problem.IDLE)], "idle"
    return replies, {"close": "closed", "reset": "reset"}[end]


@FUZZ
@given(stream=streams(), sizes=cuts(), end=st.sampled_from(["close", "silent", "reset"]),
       limit=st.integers(1, 2500), protocol=st.sampled_from([ZEN, LANCELOT, HTTP]),
       waits=st.lists(st.booleans(), max_size=5))
def test_request_reader_answers_as_the_model_says_however_the_bytes_arrive(
        stream, sizes, end, limit, protocol, waits):
    """``converse`` (zen, lancelot and the HTTP request reader): same replies, same ending,
    whether each piece is there at once or makes the worker wait; a silent client is
    always cut by the idle timeout, never waited for without one."""
    conn = ScriptedSocket(late(chop(stream, sizes), waits), end=end)
    outcome = converse(conn, protocol, WHO, limits=Limits(max_request=limit, idle_timeout=1))
    replies, ending = expected_conversation(protocol, stream, end, limit)
    assert (conn.sent, outcome) == (replies, ending)


@FUZZ
@given(stream=streams(), sizes=cuts(), fails_after=st.integers(0, 3),
       protocol=st.sampled_from([ZEN, LANCELOT, HTTP]))
def test_request_reader_survives_a_client_that_leaves_while_it_answers(
        stream, sizes, fails_after, protocol):
    """A peer gone mid-reply (EPIPE on send) ends the conversation quietly, never raises."""
    conn = ScriptedSocket(list(chop(stream, sizes)), send_fails_after=fails_after)
    outcome = converse(conn, protocol, WHO, limits=Limits(max_request=4096, idle_timeout=1))
    assert outcome in ("closed", "replied", "too_long", "idle", "reset")


@FUZZ
@given(stream=streams(12), sizes=cuts(), end=st.sampled_from([b".", None]))
def test_reply_reader_reads_exactly_to_the_end_mark_or_says_why_not(stream, sizes, end):
    """``recv_until``: the data up to the first read that ends with the mark, else an error."""
    conn = ScriptedSocket(list(chop(stream, sizes)), end="close")
    try:
        data = recv_until(conn, end, limit=50_000)
    except ConnectionError:
        assert end is not None  # closed before the mark: only when a mark is awaited
        return
    except ValueError:
        assert len(stream) > 50_000
        return
    if end is None:
        assert data == stream
    else:
        assert data.endswith(end) and stream.startswith(data)


# -- the load's client conversation, fed what a server might send --------------------------------

def client_talk(protocol: Protocol, pieces: list[bytes], close: bool) -> tuple:
    """Feed ``pieces`` (then the close, if ``close``); return the verdict and what was sent."""
    conversation = ClientConversation(protocol)
    sent = [conversation.start()]
    for piece in [*pieces, *([b""] if close else [])]:
        if conversation.ended:
            break
        sent.append(conversation.receive(piece))
    return (conversation.ended, conversation.error, conversation.likely, conversation.worker,
            conversation.received), b"".join(sent)


@FUZZ
@given(stream=streams(), sizes=cuts(), close=st.booleans(),
       protocol=st.sampled_from([ZEN, LANCELOT, HTTP]))
def test_client_conversation_gives_one_verdict_however_the_reply_is_cut(
        stream, sizes, close, protocol):
    """Whole, at arbitrary cuts, byte by byte: the same end, error, protocol and worker;
    never an exception; questions sent in order, each at most once; a known error word."""
    (ended, error, likely, worker, received), sent = client_talk(
        protocol, [stream] if stream else [], close)
    assert ended or not close
    assert error in ERRORS or error == ""
    assert b"".join(protocol.questions).startswith(sent)
    assert (error == "mismatch") == bool(received) and received in stream
    for pieces in (list(chop(stream, sizes)), [stream[i:i + 1] for i in range(len(stream))]):
        verdict, _ = client_talk(protocol, pieces, close)
        assert verdict[:4] == (ended, error, likely, worker)


# -- part 2: misbehaving clients against live pools -------------------------------------------

IDLE = 0.5  # the pools' idle timeout, seconds: short, so that the idle case is quick
LIMIT = 1024  # the pools' max_request


@dataclass
class Misbehaviour:
    """A bad client: what it does, and a check of what it got back (None: nothing to check)."""

    name: str
    act: Callable[[socket.socket, Protocol], bytes]
    check: Callable[[bytes, Protocol], bool] | None


def _reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    return recv_until(sock, None, limit=1 << 16)


def oversize(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(b"x" * (LIMIT + 100))  # no terminator: the tail alone is too long
    return _reply(sock)


def oversize_terminated(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(b"y" * (LIMIT + 100) + protocol.request_end)
    return _reply(sock)


def _answer_then_whatever_follows(sock: socket.socket, protocol: Protocol) -> bytes:
    """The reply to one request, then (having said "no more") anything else until close."""
    if protocol.one_request_per_connection:
        return _reply(sock)
    reply = recv_until(sock, protocol.reply_end)
    sock.shutdown(socket.SHUT_WR)
    return reply + _reply(sock)


def garbage(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(bytes(range(256)).replace(b"?", b"").replace(b"\r", b"")
                 + protocol.request_end)
    return _answer_then_whatever_follows(sock, protocol)


def half_closed(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(protocol.questions[0][:7])  # half a request, then "I am done sending"
    sock.shutdown(socket.SHUT_WR)
    return _reply(sock)


def reset(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(protocol.questions[0][:7])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # linger 0: RST instead of FIN
    return b""


def slow_bytes(sock: socket.socket, protocol: Protocol) -> bytes:
    """One byte every 20 ms: slow, but never silent for the idle timeout."""
    question = protocol.questions[0]
    for i in range(len(question)):
        sock.sendall(question[i:i + 1])
        time.sleep(0.02)
    return _answer_then_whatever_follows(sock, protocol)


def idle(sock: socket.socket, protocol: Protocol) -> bytes:
    started = time.monotonic()
    reply = _reply(sock)
    waited = time.monotonic() - started
    # Limits(idle_timeout): a client silent that long is told and dropped (the README's
    # lesson 07 defence).  Not early; and within 5x the timeout (IDLE + 2 s), where a broken
    # timer would leave the connection to the client's own 5.5 s timeout.
    assert IDLE * 0.9 <= waited <= IDLE + 2.0, f"dropped after {waited:.2f} s, idle timeout {IDLE}"
    return reply


def pipelined(sock: socket.socket, protocol: Protocol) -> bytes:
    sock.sendall(b"".join(protocol.questions) * 50)  # 150 requests in one go, no reading
    sock.shutdown(socket.SHUT_WR)
    return _reply(sock)


def connect_and_leave(sock: socket.socket, protocol: Protocol) -> bytes:
    return b""


def _answers(protocol: Protocol, requests: list[bytes]) -> bytes:
    return b"".join(protocol.answer(r, WHO) for r in requests)


MISBEHAVIOURS = [
    Misbehaviour("oversize", oversize, lambda r, p: r == p.complaint(Problem.TOO_LONG)),
    Misbehaviour("oversize-terminated", oversize_terminated,
                 lambda r, p: r == p.complaint(Problem.TOO_LONG)),
    Misbehaviour("garbage", garbage, lambda r, p: r == (
        p.complaint(Problem.MALFORMED) if p.one_request_per_connection else p.unknown_reply)),
    Misbehaviour("half-closed", half_closed, lambda r, p: r == b""),
    Misbehaviour("reset", reset, None),
    Misbehaviour("slow-bytes", slow_bytes, lambda r, p: (
        r.startswith(b"HTTP/1.0 200 OK") if p.one_request_per_connection
        else r == p.table[p.questions[0]])),
    Misbehaviour("idle", idle, lambda r, p: r == p.complaint(Problem.IDLE)),
    Misbehaviour("pipelined", pipelined, lambda r, p: (
        r.startswith(b"HTTP/1.0 200 OK") and r.count(b"HTTP/1.0") == 1
        if p.one_request_per_connection else r == _answers(p, list(p.questions) * 50))),
    Misbehaviour("connect-and-leave", connect_and_leave, None),
]


@pytest.fixture(scope="module", params=[("thread", "zen"), ("thread", "http"),
                                        ("process", "zen"), ("process", "http")],
                ids=lambda p: "-".join(p))
def live_pool(request) -> Iterator[WorkerPool]:
    kind, protocol = request.param
    with WorkerPool(workers=2, kind=kind, protocol=protocol, interval=0.05,
                    limits=Limits(max_request=LIMIT, idle_timeout=IDLE)) as pool:
        yield pool


def accepted_by(pool: WorkerPool, port: int, since_ns: int) -> tuple[int, int] | None:
    """(slot, generation) of the worker that accepted the connection from ``port``, if any."""
    events = pool.events()
    mine = events[(events["outcome"] == "accepted") & (events["peer_port"] == port)
                  & (events["t_accept_ns"] >= since_ns)]
    return (int(mine["worker"].iloc[0]), int(mine["generation"].iloc[0])) if len(mine) else None


def still_accepting(pool: WorkerPool, slot: int, generation: int) -> bool:
    """Does worker ``slot`` (this generation) still take connections?

    Which worker the kernel wakes is the scheduler's business (a worker that
    just finished may grab the next connection before a woken one runs), so
    "send good clients until it serves one" could wait for ever.  Instead,
    keep silent connections open, each holding the worker that took it, until
    the one we ask about takes one: with every other worker held, it must.
    """
    holders: list[socket.socket] = []
    try:
        for _ in range(2 * pool.workers + 2):  # the idle timeout may free a holder meanwhile
            since = time.monotonic_ns()
            holder = socket.create_connection(pool.address, timeout=5)
            holders.append(holder)
            port = holder.getsockname()[1]
            if wait_until(lambda: accepted_by(pool, port, since) is not None, timeout=2) is None:
                return False  # nobody free took it: the worker we ask about is not accepting
            if accepted_by(pool, port, since) == (slot, generation):
                return True
        return False
    finally:
        for holder in holders:
            holder.close()


def good_client(pool: WorkerPool) -> None:
    """The next good client gets the right answers."""
    record = one_connection(pool.address, PROTOCOLS[pool.protocol], timeout=5)
    assert record.ok, f"a good client after the bad one failed: {record.error}"


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.parametrize("bad", MISBEHAVIOURS, ids=lambda m: m.name)
def test_a_bad_client_costs_nothing_but_its_own_connection(live_pool, bad):
    """After the bad client, its worker still accepts (or was replaced, on record), and so
    does the pool."""
    pool, protocol = live_pool, PROTOCOLS[live_pool.protocol]
    started = time.monotonic_ns()
    with socket.create_connection(pool.address, timeout=IDLE + 5) as sock:
        port = sock.getsockname()[1]
        reply = bad.act(sock, protocol)
    if bad.check is not None:
        assert bad.check(reply, protocol), f"{bad.name}: unexpected reply {reply[:200]!r}"

    # Which worker met it?  The event log knows (the accept is recorded before the talk).
    assert wait_until(lambda: accepted_by(pool, port, started) is not None, timeout=5) is not None
    slot, generation = accepted_by(pool, port, started)

    def replaced() -> bool:
        return (slot, generation) in {(r.slot, r.generation) for r in pool.replacements}

    if replaced() or not pool.alive()[slot]:
        # It died: allowed, as long as the supervisor replaced it and says so.
        assert wait_until(replaced, timeout=2) is not None, f"worker {slot} died unrecorded"
        assert wait_until(lambda: all(pool.alive()), timeout=5) is not None
        print(f"\n{bad.name}: worker {slot} died and was replaced: {pool.replacements[-1]}")
    else:
        assert still_accepting(pool, slot, generation), (
            f"worker {slot} (generation {generation}) accepts nothing after {bad.name}")
    good_client(pool)
