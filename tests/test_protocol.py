"""The protocols, bytes in and bytes out, checked against the book's exact bytes."""

import pytest
from hypothesis import given, strategies as st

from acceptlab.server.protocol import (HTTP, LANCELOT, ZEN, Problem, get_protocol, parse_served_by,
                                served_by, split_requests)

# The 3rd edition's conversation, written out from the bytes the issue gives.
ZEN_BYTES = [
    (b"Beautiful is better than?", b"Ugly."),
    (b"Explicit is better than?", b"Implicit."),
    (b"Simple is better than?", b"Complex."),
    (b"Complicated is better than?", b"Error: unknown aphorism."),
]
LANCELOT_BYTES = [
    (b"What is your name?", b"My name is Sir Lancelot of Camelot."),
    (b"What is your quest?", b"To seek the Holy Grail."),
    (b"What is your favorite color?", b"Blue."),
]


@pytest.mark.parametrize("question, answer", ZEN_BYTES)
def test_zen_answers_are_the_books(question, answer):
    assert ZEN.answer(question, "anyone") == answer


@pytest.mark.parametrize("question, answer", LANCELOT_BYTES)
def test_lancelot_answers_are_the_books(question, answer):
    assert LANCELOT.answer(question, "anyone") == answer


def test_zen_and_lancelot_frame_requests_at_question_marks_and_replies_at_periods():
    for protocol in (ZEN, LANCELOT):
        assert protocol.request_end == b"?" and protocol.reply_end == b"."
        assert all(q.endswith(b"?") for q in protocol.questions)
        assert all(protocol.answer(q, "").endswith(b".") for q in protocol.questions)


def test_split_requests_keeps_partial_request_for_later():
    requests, rest = split_requests(b"Simple is better than?Beautiful is better than?Expl", b"?")
    assert requests == [b"Simple is better than?", b"Beautiful is better than?"]
    assert rest == b"Expl"


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"?" not in b), max_size=8),
       st.binary(max_size=30).filter(lambda b: b"?" not in b))
def test_split_requests_round_trips_any_byte_stream(parts, tail):
    stream = b"".join(p + b"?" for p in parts) + tail
    requests, rest = split_requests(stream, b"?")
    assert requests == [p + b"?" for p in parts]
    assert rest == tail
    assert b"".join(requests) + rest == stream


@given(st.binary(max_size=200))
def test_any_request_gets_a_reply_never_an_exception(request_bytes):
    for protocol in (ZEN, LANCELOT, HTTP):
        assert isinstance(protocol.answer(request_bytes, "w"), bytes)


def test_http_reply_names_the_worker():
    reply = HTTP.answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", served_by(2, 1234, 1235))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b"served by worker 2 (pid 1234, thread 1235)\n"
    assert parse_served_by(reply) == 2


def test_http_rejects_what_it_does_not_serve():
    assert HTTP.answer(b"POST / HTTP/1.0\r\n\r\n", "w").startswith(b"HTTP/1.0 405")
    assert HTTP.answer(b"\x00\xffgarbage\r\n\r\n", "w").startswith(b"HTTP/1.0 400")
    assert HTTP.answer(b"HEAD / HTTP/1.0\r\n\r\n", "w").endswith(b"\r\n\r\n")


@pytest.mark.parametrize("problem", list(Problem))
def test_every_problem_has_a_clear_complaint(problem):
    assert problem.value.encode() in ZEN.complaint(problem)
    assert ZEN.complaint(problem).endswith(b".")  # the book's client reads up to a period
    assert HTTP.complaint(problem).startswith(b"HTTP/1.0 4")


def test_unknown_protocol_lists_the_choices():
    with pytest.raises(ValueError, match="zen, lancelot, http"):
        get_protocol("gopher")
