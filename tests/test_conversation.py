"""One connection's I/O: the server's defences and the client's reading, over real sockets."""

import socket
import threading
import time

import pytest

from acceptlab.server.conversation import Limits, ask, converse, recv_until
from acceptlab.server.protocol import HTTP, LANCELOT, ZEN


@pytest.fixture
def pair():
    """A connected pair of sockets: (server side, client side)."""
    server, client = socket.socketpair()
    with server, client:
        client.settimeout(5)
        yield server, client


def run_server(server, protocol, limits=Limits()):
    """Run converse() in a thread; return a function that waits for its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        end=converse(server, protocol, "served by worker 0 (pid 1, thread 1)", limits=limits)))
    thread.start()

    def finish():
        thread.join(5)
        assert not thread.is_alive()
        return result["end"]
    return finish


def test_zen_conversation_answers_several_questions_until_the_client_closes(pair):
    server, client = pair
    finish = run_server(server, ZEN)
    assert ask(client, ZEN) == [b"Ugly.", b"Implicit.", b"Complex."]
    client.shutdown(socket.SHUT_WR)
    assert finish() == "closed"


def test_requests_split_across_sends_and_merged_into_one_send(pair):
    server, client = pair
    finish = run_server(server, LANCELOT)
    client.sendall(b"What is your")
    client.sendall(b" name?What is your quest?")
    expected = b"My name is Sir Lancelot of Camelot.To seek the Holy Grail."
    replies = recv_until(client, b".")
    if replies != expected:  # the two answers may arrive in one recv() or in two
        replies += recv_until(client, b".")
    assert replies == expected
    client.shutdown(socket.SHUT_WR)
    assert finish() == "closed"


def test_unknown_question_gets_the_books_error_and_the_conversation_goes_on(pair):
    server, client = pair
    finish = run_server(server, ZEN)
    client.sendall(b"\x00\xff garbage?")
    assert recv_until(client, b".") == b"Error: unknown aphorism."
    client.sendall(b"Simple is better than?")
    assert recv_until(client, b".") == b"Complex."
    client.shutdown(socket.SHUT_WR)
    assert finish() == "closed"


def test_oversize_request_gets_a_complaint_and_the_connection_closes(pair):
    server, client = pair
    finish = run_server(server, ZEN, Limits(max_request=100))
    client.sendall(b"x" * 500)
    assert recv_until(client, b".") == b"Error: request too long."
    assert finish() == "too_long"


def test_oversize_request_with_terminator_is_refused_too(pair):
    server, client = pair
    finish = run_server(server, ZEN, Limits(max_request=100))
    client.sendall(b"y" * 150 + b"?")
    assert recv_until(client, b".") == b"Error: request too long."
    assert finish() == "too_long"


def test_silent_client_is_told_and_dropped_at_the_idle_timeout(pair):
    server, client = pair
    finish = run_server(server, ZEN, Limits(idle_timeout=0.2))
    assert recv_until(client, b".") == b"Error: idle timeout."
    assert finish() == "idle"


def test_half_a_request_then_close_is_not_an_error_for_the_server(pair):
    server, client = pair
    finish = run_server(server, ZEN)
    client.sendall(b"Beautiful is better than")  # the book's client.py -e does this
    client.shutdown(socket.SHUT_WR)
    assert finish() == "closed"


@pytest.mark.system
def test_reset_mid_request_ends_the_conversation_quietly():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with server:
            finish = run_server(server, ZEN)
            client.sendall(b"Beautiful is")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()  # linger 0: the kernel sends RST
            assert finish() in ("reset", "closed")


def test_http_answers_once_and_ends(pair):
    server, client = pair
    finish = run_server(server, HTTP)
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert finish() == "replied"
    server.close()
    reply = recv_until(client, None)
    assert reply.startswith(b"HTTP/1.0 200 OK") and b"served by worker 0" in reply


def test_recv_until_reports_a_server_that_closes_early(pair):
    server, client = pair
    server.sendall(b"Ugl")
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError, match="before b'.'"):
        recv_until(client, b".")


# -- the idle timeout, set only when the client makes the worker wait (issue 21) ---------------

class CountingSocket(socket.socket):
    """A socket that counts settimeout() calls: each one is an ioctl, and makes CPython
    poll() before every later recv() and send()."""

    timeouts_set = 0

    def settimeout(self, value):
        self.timeouts_set += 1
        super().settimeout(value)


def counting(sock: socket.socket) -> CountingSocket:
    return CountingSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())


def test_a_request_already_there_is_answered_without_setting_any_timeout(pair):
    server, client = pair
    server = counting(server)
    with server:
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")  # there before the conversation starts
        finish = run_server(server, HTTP, Limits(idle_timeout=5))
        assert finish() == "replied"
        assert server.timeouts_set == 0 and server.gettimeout() is None


def test_a_client_that_is_not_there_yet_is_waited_for_with_the_idle_timeout(pair):
    server, client = pair
    server = counting(server)
    with server:
        finish = run_server(server, ZEN, Limits(idle_timeout=5))
        time.sleep(0.1)  # the first read finds nothing: the worker now waits, with the timeout
        assert ask(client, ZEN) == [b"Ugly.", b"Implicit.", b"Complex."]
        client.shutdown(socket.SHUT_WR)
        assert finish() == "closed"
        assert server.timeouts_set == 1 and server.gettimeout() == 5


def test_a_client_that_answers_at_once_then_falls_silent_is_cut_at_the_idle_timeout(pair):
    server, client = pair
    client.sendall(b"Simple is better than?")  # there at once: no timeout set yet
    finish = run_server(server, ZEN, Limits(idle_timeout=0.2))
    assert recv_until(client, b".") == b"Complex."
    # then silence: the next read has to wait, and the idle timeout cuts it
    assert recv_until(client, b".") == b"Error: idle timeout."
    assert finish() == "idle"


def test_a_socket_with_a_default_timeout_gets_the_idle_timeout_from_the_start(pair):
    server, client = pair
    server.settimeout(60)  # as socket.setdefaulttimeout() would give every accepted socket
    finish = run_server(server, ZEN, Limits(idle_timeout=0.2))
    assert recv_until(client, b".") == b"Error: idle timeout."  # 0.2 s, not 60
    assert finish() == "idle"


def test_no_idle_timeout_waits_as_the_book_does(pair):
    server, client = pair
    finish = run_server(server, ZEN, Limits(idle_timeout=None))
    time.sleep(0.3)  # longer than any idle timeout of these tests: still waiting
    assert ask(client, ZEN) == [b"Ugly.", b"Implicit.", b"Complex."]
    client.shutdown(socket.SHUT_WR)
    assert finish() == "closed"
