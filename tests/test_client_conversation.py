"""The client's conversation object, with no sockets: bytes in, what to send and a verdict out.

Every reply is also fed in pieces (down to one byte at a time, and at the
cuts hypothesis picks), since TCP may deliver any split: the verdict must not
depend on it (test_fuzz.py checks that for arbitrary bytes too).  The engines
that drive this object over real sockets are tested in test_load.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acceptlab.client.conversation import (MAX_REPLY, PROBE, ClientConversation, check_reply,
                                           printable, recognise)
from acceptlab.server.protocol import HTTP, LANCELOT, PROTOCOLS, ZEN, Problem, served_by

ZEN_REPLIES = b"Ugly." b"Implicit." b"Complex."
LANCELOT_REPLIES = b"My name is Sir Lancelot of Camelot." b"To seek the Holy Grail." b"Blue."
HTTP_REPLY = HTTP.answer(HTTP.questions[0], served_by(3, 4242, 4243))
RIGHT = {"zen": ZEN_REPLIES, "lancelot": LANCELOT_REPLIES, "http": HTTP_REPLY}


def talk(protocol, pieces, *, close=True, keep_alive=False):
    """Feed ``pieces`` one by one (then the server's close); return (conversation, sent)."""
    conversation = ClientConversation(protocol, keep_alive=keep_alive)
    sent = [conversation.start()]
    for piece in [*pieces, *([b""] if close else [])]:
        if conversation.ended:
            break
        outgoing = conversation.receive(piece)
        if outgoing:
            sent.append(outgoing)
    return conversation, b"".join(sent)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in pieces of the given sizes (cycled)."""
    pieces, at, k = [], 0, 0
    while at < len(data):
        pieces.append(data[at:at + sizes[k % len(sizes)]])
        at += sizes[k % len(sizes)]
        k += 1
    return pieces


def verdict(conversation):
    return conversation.ended, conversation.error, conversation.likely, conversation.worker


# -- the right answers ---------------------------------------------------------------------

def one_by_one(protocol) -> list[bytes]:
    """The right replies, each as the server sends it: whole, after its question."""
    return [protocol.answer(question, served_by(3, 4242, 4243))
            for question in protocol.questions]


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_right_answers_whole_or_byte_by_byte_end_well_after_every_question(protocol):
    for pieces in (one_by_one(protocol), bytewise(RIGHT[protocol.name])):
        conversation, sent = talk(protocol, pieces)
        assert verdict(conversation)[:2] == (True, "")
        assert sent == b"".join(protocol.questions)
        assert conversation.replies == len(protocol.questions)


def test_the_http_reply_names_its_worker_however_it_arrives():
    for pieces in ([HTTP_REPLY], bytewise(HTTP_REPLY)):
        conversation, _ = talk(HTTP, pieces)
        assert conversation.worker == 3 and conversation.error == ""


@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       protocol=st.sampled_from(list(PROTOCOLS.values())))
def test_right_answers_at_any_cut_end_well(sizes, protocol):
    """Even cut across replies (answers arriving ahead of their questions, which a real
    server does not do): each question at most once, in order, and a good end."""
    conversation, sent = talk(protocol, cut(RIGHT[protocol.name], sizes))
    assert conversation.error == "" and b"".join(protocol.questions).startswith(sent)


def test_zen_and_lancelot_do_not_end_before_the_last_answer():
    conversation, _ = talk(ZEN, [b"Ugly.", b"Implicit."], close=False)
    assert not conversation.ended and conversation.replies == 2


# -- who still holds the connection at the end (what acceptlab.real.observe looks at) ---------------

KEPT = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 9\r\n"
        b"Content-Type: text/plain\r\n\r\npid 4242\n")


def test_zen_and_lancelot_servers_hold_the_connection_after_the_last_answer():
    for protocol in (ZEN, LANCELOT):
        conversation, _ = talk(protocol, [RIGHT[protocol.name]], close=False)
        assert (conversation.ended, conversation.error, conversation.held_open) == (True, "", True)


def test_keep_alive_asks_in_http_1_1_and_ends_at_the_length_without_a_close():
    for pieces in ([KEPT], bytewise(KEPT), cut(KEPT, [7, 1, 30])):
        conversation, sent = talk(HTTP, pieces, close=False, keep_alive=True)
        assert sent == HTTP.questions[0].replace(b"HTTP/1.0", b"HTTP/1.1")
        assert (conversation.ended, conversation.error, conversation.held_open) == (True, "", True)
    # not one byte early: the body's last byte ends it
    conversation, _ = talk(HTTP, [KEPT[:-1]], close=False, keep_alive=True)
    assert not conversation.ended


@pytest.mark.parametrize("reply", [
    KEPT.replace(b"Server: nginx", b"Connection: close"),
    KEPT.replace(b"Server: nginx", b"connection: Close"),
    KEPT.replace(b"HTTP/1.1", b"HTTP/1.0"),  # an HTTP/1.0 server closes after answering
    HTTP_REPLY,  # the kit's own http server: HTTP/1.0 and Connection: close
], ids=["close", "close-lowercase", "http-1.0", "kit"])
def test_a_server_that_says_it_will_close_does_not_hold_the_connection(reply):
    conversation, _ = talk(HTTP, [reply], close=False, keep_alive=True)
    assert (conversation.ended, conversation.error, conversation.held_open) == (True, "", False)


def test_a_reply_without_a_length_is_read_to_the_close_even_with_keep_alive():
    reply = KEPT.replace(b"Content-Length: 9\r\n", b"")
    conversation, _ = talk(HTTP, [reply], close=False, keep_alive=True)
    assert not conversation.ended
    conversation, _ = talk(HTTP, [reply], keep_alive=True)
    assert (conversation.ended, conversation.error, conversation.held_open) == (True, "", False)


def test_without_keep_alive_http_is_read_to_the_close_and_never_held_open():
    conversation, sent = talk(HTTP, [KEPT], close=False)
    assert not conversation.ended and sent == HTTP.questions[0]
    conversation, _ = talk(HTTP, [KEPT])
    assert (conversation.ended, conversation.error, conversation.held_open) == (True, "", False)


def test_a_wrong_status_with_keep_alive_is_still_a_bad_reply():
    reply = KEPT.replace(b"200 OK", b"404 Not Found")
    conversation, _ = talk(HTTP, [reply], close=False, keep_alive=True)
    assert (conversation.ended, conversation.error, conversation.held_open) == (
        True, "bad-reply", False)


# -- wrong answers in the right protocol ---------------------------------------------------

@pytest.mark.parametrize("protocol, reply", [
    (ZEN, b"Pretty."),
    (ZEN, b"Error: unknown aphorism."),  # zen's own error for a question it should know
    (ZEN, ZEN.complaint(Problem.IDLE)),  # the kit's complaint: a zen server, unhappy
    (LANCELOT, b"Red."),
    (HTTP, b"HTTP/1.1 404 Not Found\r\n\r\n"),
    (HTTP, HTTP.complaint(Problem.MALFORMED)),
], ids=["zen-wrong", "zen-unknown", "zen-complaint", "lancelot-wrong", "http-404", "http-400"])
def test_a_wrong_answer_of_the_right_protocol_is_a_bad_reply(protocol, reply):
    for pieces in ([reply], bytewise(reply)):
        conversation, _ = talk(protocol, pieces)
        assert verdict(conversation)[:2] == (True, "bad-reply")


def test_check_reply_takes_any_http_200_and_only_the_books_answers():
    question = HTTP.questions[0]
    assert check_reply(HTTP, question, b"HTTP/1.1 200 OK\r\n\r\n")  # nginx
    assert check_reply(HTTP, question, b"HTTP/1.0 200 OK\r\n\r\n")  # the kit
    assert not check_reply(HTTP, question, b"HTTP/1.1 404 Not Found\r\n\r\n")
    assert check_reply(ZEN, b"Beautiful is better than?", b"Ugly.")
    assert not check_reply(ZEN, b"Beautiful is better than?", b"Pretty.")


# -- the other protocol, or garbage: a mismatch, named -----------------------------------------

MISMATCHES = [
    # (client, what the server sends, the protocol it gives away: '' for garbage)
    (ZEN, HTTP.complaint(Problem.MALFORMED), "http"),
    (ZEN, b"HTTP/1.0 501 Unsupported method ('Beautiful')\r\n\r\n", "http"),
    (LANCELOT, b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n", "http"),
    (HTTP, b"Error: unknown aphorism.", "zen"),
    (HTTP, b"Error: unknown question.", "lancelot"),
    (LANCELOT, b"Error: unknown aphorism.", "zen"),
    (ZEN, b"Error: unknown question.", "lancelot"),
    (ZEN, b"\x00\x01\xfe\xff.", ""),
    (ZEN, b"SSH-2\x00", ""),
    (HTTP, b"SSH-2.0-OpenSSH_9.6\r\n", ""),
    (HTTP, b"\x16\x03\x01\x00\xa5", ""),  # a TLS record
    (ZEN, b"<!DOCTYPE HTML>\n<html lang=\"en\">", "http"),  # HTTP/0.9-style: a page, no status
]


@pytest.mark.parametrize("client, sent, likely", MISMATCHES,
                         ids=[f"{c.name}<-{s[:12]!r}" for c, s, _ in MISMATCHES])
def test_a_reply_of_another_protocol_ends_as_a_mismatch_that_names_it(client, sent, likely):
    for pieces in ([sent], bytewise(sent)):
        conversation, _ = talk(client, pieces, close=False)  # no close needed to tell
        assert verdict(conversation)[:3] == (True, "mismatch", likely), pieces[:3]
        assert conversation.received and conversation.received in sent


def test_a_text_reply_that_ends_like_zen_is_judged_as_zen_whatever_follows():
    """'SSH-2.' is a (wrong) zen answer, whether or not the rest of ssh's banner came with it:
    the verdict must not depend on where TCP cut the stream."""
    for pieces in ([b"SSH-2.0-OpenSSH_9.6\r\n"], bytewise(b"SSH-2.0-OpenSSH_9.6\r\n")):
        conversation, _ = talk(ZEN, pieces, close=False)
        assert conversation.error == "bad-reply"


def test_an_http_status_line_is_told_by_its_first_five_bytes():
    conversation, _ = talk(ZEN, [b"HTTP/"], close=False)
    assert (conversation.error, conversation.likely) == ("mismatch", "http")
    conversation, _ = talk(ZEN, [b"HTTP"], close=False)
    assert not conversation.ended  # "HTTP" alone could still be a (strange) zen answer


def test_a_zen_answer_after_right_ones_is_still_a_mismatch_for_its_question():
    conversation, _ = talk(ZEN, [b"Ugly.", b"HTTP/1.0 400 Bad Request\r\n\r\n"])
    assert (conversation.error, conversation.likely) == ("mismatch", "http")
    assert conversation.replies == 2


# -- silence: the probe ------------------------------------------------------------------------

def test_a_silent_server_is_probed_once_and_an_http_answer_names_it():
    conversation = ClientConversation(ZEN)
    conversation.start()
    assert conversation.timed_out() == PROBE  # the blank line that ends an HTTP request
    for byte in bytewise(b"HTTP/1.0 400 Bad request version ('than?')\r\n"):
        conversation.receive(byte)
    assert (conversation.error, conversation.likely) == ("mismatch", "http")


@pytest.mark.parametrize("after_probe", [[b""], [b"Ugly."], [b"Complex", b""]],
                         ids=["closed", "late-right-answer", "late-text"])
def test_a_probe_that_shows_nothing_foreign_leaves_a_timeout(after_probe):
    conversation = ClientConversation(ZEN)
    conversation.start()
    conversation.timed_out()
    for piece in after_probe:
        assert conversation.receive(piece) == b""  # no question is asked after a timeout
    assert (conversation.ended, conversation.error) == (True, "timeout")


def test_an_unanswered_probe_times_out_and_a_socket_error_then_is_still_a_timeout():
    conversation = ClientConversation(ZEN)
    conversation.timed_out()
    assert conversation.timed_out() == b"" and conversation.error == "timeout"
    conversation = ClientConversation(ZEN)
    conversation.timed_out()
    assert conversation.fail("reset") == "timeout"


def test_no_probe_after_a_right_answer_nor_for_http():
    conversation = ClientConversation(ZEN)
    conversation.receive(b"Ugly.")
    assert conversation.timed_out() == b"" and conversation.error == "timeout"
    conversation = ClientConversation(HTTP)
    assert conversation.timed_out() == b"" and conversation.error == "timeout"


# -- early ends, size limit ---------------------------------------------------------------------

@pytest.mark.parametrize("protocol, pieces", [(ZEN, [b"Ugl"]), (ZEN, [b"Ugly.", b"Impl"]),
                                              (HTTP, []), (LANCELOT, [])],
                         ids=["zen-half", "zen-second-half", "http-nothing", "lancelot-nothing"])
def test_a_server_that_closes_before_the_reply_ends_is_closed(protocol, pieces):
    conversation, _ = talk(protocol, pieces)
    assert (conversation.ended, conversation.error) == (True, "closed")


@pytest.mark.parametrize("protocol, head", [(ZEN, b""), (HTTP, b"HTTP/1.0 200 OK\r\n\r\n")],
                         ids=["zen", "http"])
def test_a_reply_past_the_limit_is_too_long(protocol, head):
    conversation = ClientConversation(protocol)
    if head:
        conversation.receive(head)
    chunk = b"x" * 65536
    for _ in range(MAX_REPLY // len(chunk) + 1):
        conversation.receive(chunk)
    assert (conversation.ended, conversation.error) == (True, "too-long")


def test_a_failed_socket_names_the_end_once():
    conversation = ClientConversation(ZEN)
    assert conversation.fail("refused") == "refused"
    assert conversation.fail("reset") == "refused"  # the first cause stays
    assert conversation.receive(b"Ugly.") == b"" and conversation.error == "refused"


# -- helpers -----------------------------------------------------------------------------------

def test_recognise_names_each_protocol_by_its_own_words_only():
    assert recognise(b"HTTP/1.1 200 OK") == "http"
    assert recognise(b"Error: unknown aphorism.") == "zen"
    assert recognise(b"My name is Sir Lancelot of Camelot.") == "lancelot"
    assert recognise(b"Error: idle timeout.") is None  # both book protocols say this
    assert recognise(b"\x00\xff") is None


def test_printable_shows_one_short_escaped_line():
    shown = printable(b"HTTP/1.0 400 Bad Request\r\nServer: x\r\n\r\n")
    assert shown == "'HTTP/1.0 400 Bad Request'..."
    assert printable(b"Ugly.") == "'Ugly.'"
    shown = printable(b"\x00\x1b[31m" + b"x" * 100)
    assert "\x1b" not in shown and "\x00" not in shown and shown.endswith("...")
    assert len(shown) < 100
