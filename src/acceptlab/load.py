"""The client side: fire connections at a server and record each one.

Three ways to fire, the classic shapes of load:

* **sequential** - one connection at a time, optionally with a pause (``gap``)
  between them.  Every worker is back in ``accept()`` before the next
  connection arrives, so this shows the kernel's wake order cleanly.
* **closed loop** (``concurrency=C``) - C clients, each starting its next
  connection when the previous one ends.  The load adapts to the server: a
  slow server simply receives fewer connections.
* **open loop** (``rate=R``) - connections start at random (Poisson) times,
  R per second on average, whether or not the server keeps up, which is how
  independent users behave.  When the server falls behind, the accept queue
  grows: this is what makes queueing visible.

One Python process tops out far below what a server on the same machine can
take (kernel-notes.md has figures), so any mode can be spread over several
client processes (``processes=K``).  A closed loop spread over several
processes (``processes >= 2``, no ``gap``) is the throughput mode: each process
then runs the lean event loop at the end of this module instead of a thread
per client (same records, same errors; see "The lean path" there).

Every run is bounded by a connection count and a duration.  Every connection
becomes one :class:`ConnectionRecord`; :func:`fire` returns them as a pandas
DataFrame (columns in ``CLIENT_COLUMNS``).  A failed connection is a record
with ``ok=False`` and its cause in ``error``, never an exception.
"""

from __future__ import annotations

import collections
import errno
import itertools
import multiprocessing
import operator
import os
import random
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from .conversation import RECV_SIZE, recv_until
from .protocol import Protocol, get_protocol, parse_served_by

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ConnectionRecord", "CLIENT_COLUMNS", "CLIENT_NULLABLE", "one_connection", "fire",
           "check_reply"]

now = time.monotonic_ns
CLIENT_COLUMNS = ("conn", "local_port", "t_start_ns", "t_connected_ns", "t_reply_ns",
                  "t_done_ns", "ok", "error", "worker", "attempt")
# Columns that may have no value (-1 in a record, <NA> in the table): integers with gaps.
CLIENT_NULLABLE = ("local_port", "t_connected_ns", "t_reply_ns", "t_done_ns", "worker")


@dataclass
class ConnectionRecord:
    """One client connection, as the client saw it (times from ``time.monotonic_ns``; -1: never)."""

    conn: int
    local_port: int = -1
    t_start_ns: int = -1
    t_connected_ns: int = -1
    t_reply_ns: int = -1  # the first reply arrived
    t_done_ns: int = -1
    ok: bool = False
    error: str = ""  # '' when ok, else one word: refused, reset, timeout, closed, bad-reply, ...
    worker: int = -1  # the worker named in the reply (http), else -1
    attempt: int = 1  # 2, 3, ... for the retries of connection number ``conn``


# A record as a plain tuple in CLIENT_COLUMNS order (dataclasses.astuple deep-copies: 10 x slower).
_as_row = operator.attrgetter(*CLIENT_COLUMNS)


def check_reply(protocol: Protocol, question: bytes, reply: bytes) -> bool:
    """Is ``reply`` the right answer to ``question``?  (A wrong one is an error, not a success.)"""
    if protocol.reply_end is None:  # http: any 200 will do (nginx answers HTTP/1.1 200)
        return reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    return reply == protocol.table.get(question, protocol.unknown_reply)


def _classify(exc: BaseException) -> str:
    """Name the cause of a failed connection in one word, for counting."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionError):  # includes the server closing mid-reply
        return "closed"
    return type(exc).__name__


def one_connection(address: tuple[str, int], protocol: Protocol, conn: int,
                   timeout: float = 5.0) -> ConnectionRecord:
    """Open one connection, ask the protocol's questions, check the answers, close.

    Never raises for a network problem: the record says what went wrong.
    """
    record = ConnectionRecord(conn, t_start_ns=now())
    try:
        sock = socket.socket(_family(address), socket.SOCK_STREAM)
    except OSError as exc:  # out of file descriptors, say: a failed attempt like any other
        record.error, record.t_done_ns = _classify(exc), now()
        return record
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            record.t_connected_ns = now()
            record.local_port = sock.getsockname()[1]
            for question in protocol.questions:
                sock.sendall(question)
                reply = recv_until(sock, protocol.reply_end)
                if record.t_reply_ns < 0:
                    record.t_reply_ns = now()
                if not check_reply(protocol, question, reply):
                    record.error = "bad-reply"
                    break
                served = parse_served_by(reply)
                record.worker = -1 if served is None else served
            record.ok = not record.error
        except (OSError, ValueError) as exc:
            record.error = _classify(exc)
        if record.local_port < 0:
            try:
                record.local_port = sock.getsockname()[1]
            except OSError:
                pass
    record.t_done_ns = now()
    return record


def _family(address: tuple[str, int]) -> socket.AddressFamily:
    """IPv6 for an address like '::1', IPv4 otherwise."""
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def _with_retries(address: tuple[str, int], protocol: Protocol, conn: int, timeout: float,
                  retries: int) -> list[ConnectionRecord]:
    """:func:`one_connection`, tried again up to ``retries`` times if it fails.

    Every attempt is a connection of its own and gets its own record: a
    failed attempt may still have been accepted by a worker (one killed
    mid-conversation, say), and the event log will show it.
    """
    records = []
    for attempt in range(1, retries + 2):
        record = one_connection(address, protocol, conn, timeout)
        record.attempt = attempt
        records.append(record)
        if record.ok:
            break
    _report(1)  # one connection number done, however many attempts it took
    return records


def _client_loop(address: tuple[str, int], protocol: Protocol, numbers: Iterator[int],
                 stop_at: float, gap: float, timeout: float, retries: int,
                 out: list[ConnectionRecord]) -> None:
    """One closed-loop client: take the next connection number, run it, pause ``gap``, repeat."""
    for conn in numbers:
        if time.monotonic() >= stop_at or _stopped():
            return
        out.extend(_with_retries(address, protocol, conn, timeout, retries))
        if gap:
            _pause(gap)


def _open_loop(address: tuple[str, int], protocol: Protocol, numbers: range, rate: float,
               stop_at: float, timeout: float, retries: int, seed: int | None,
               out: list[ConnectionRecord], max_in_flight: int = 256) -> None:
    """Start connections at Poisson times, ``rate`` per second, each in its own thread.

    ``max_in_flight`` bounds the threads: past it, arrivals wait (and the
    achieved rate falls below the target, which the caller can see).
    """
    pace = random.Random(seed)
    slots = threading.BoundedSemaphore(max_in_flight)
    threads = []
    next_start = time.monotonic()

    def run(conn: int) -> None:
        try:
            out.extend(_with_retries(address, protocol, conn, timeout, retries))
        finally:
            slots.release()

    for conn in numbers:
        next_start += pace.expovariate(rate)  # exponential gaps make Poisson arrivals
        delay = next_start - time.monotonic()
        if delay > 0:
            _pause(delay)
        if time.monotonic() >= stop_at or _stopped():
            break
        slots.acquire()
        thread = threading.Thread(target=run, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    deadline = _last_word(stop_at, timeout, retries)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _last_word(stop_at: float, timeout: float, retries: int) -> float:
    """When the last connection started before ``stop_at`` has surely ended, retries and all."""
    return stop_at + timeout * (retries + 2)


def _fire_in_process(address: tuple[str, int], protocol_name: str, numbers: range,
                     concurrency: int, rate: float | None, duration: float, gap: float,
                     timeout: float, retries: int, seed: int | None,
                     lean: bool = False) -> list[tuple]:
    """Run a share of the load in this process; return plain tuples (cheap to pickle)."""
    protocol = get_protocol(protocol_name)
    if _start_line is not None:  # several client processes: start firing together
        try:
            _start_line.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass  # a sibling failed to start: fire anyway, the records show when
    out: list[ConnectionRecord] = []
    stop_at = time.monotonic() + duration
    if rate:
        _open_loop(address, protocol, numbers, rate, stop_at, timeout, retries, seed, out)
    elif lean:
        return _lean_closed_loop(address, protocol, numbers, concurrency, stop_at, timeout,
                                 retries)
    else:
        shared = iter(numbers)  # next() on a range iterator is atomic under the GIL
        threads = [threading.Thread(target=_client_loop, daemon=True,
                                    args=(address, protocol, shared, stop_at, gap, timeout,
                                          retries, out))
                   for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        deadline = _last_word(stop_at, timeout, retries)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    return [_as_row(record) for record in out]


def fire(
    address: tuple[str, int],
    protocol: str = "zen",
    connections: int = 100,
    concurrency: int = 1,
    rate: float | None = None,
    processes: int = 1,
    duration: float = 60.0,
    gap: float = 0.0,
    timeout: float = 5.0,
    retries: int = 0,
    seed: int | None = None,
    progress: bool = False,
    stop: "threading.Event | None" = None,
) -> "pd.DataFrame":
    """Fire up to ``connections`` connections at ``address`` for at most ``duration`` seconds.

    ``concurrency=C`` is a closed loop of C clients *per client process*
    (``concurrency=1``, one process: sequential); ``rate=R`` an open loop of
    Poisson arrivals at R per second *in all* (``concurrency`` is then
    ignored).  ``processes=K`` splits the connections over K client
    processes, each running the same mode: ``processes=2, concurrency=16``
    keeps 32 connections in flight, ``processes=2, rate=100`` fires 50/s from
    each.  ``gap`` pauses each client between connections; ``retries``
    retries a failed connection; ``timeout`` bounds every single wait.
    Returns one row per connection *attempt* (numbered in ``attempt``; a
    connection number with no ``ok`` row was lost), ordered by start time.

    Throughput: a closed loop over ``processes >= 2`` (no ``rate``, no ``gap``)
    runs the lean event loop, one per client process (Linux; elsewhere the
    threads).  On two cores, ``processes=2, concurrency=16`` is the fastest.

    ``stop``: an Event the caller sets to end the load early (Ctrl-C in the
    CLI).  No new connection starts once it is set; those in flight finish,
    and the rows of everything that ended are returned as usual.
    """
    import pandas as pd

    get_protocol(protocol)  # fail fast on a bad name
    if (connections < 0 or concurrency < 1 or processes < 1 or duration <= 0 or timeout <= 0
            or retries < 0 or gap < 0 or (rate is not None and rate <= 0)):
        raise ValueError("fire() needs connections >= 0, concurrency >= 1, processes >= 1, "
                         "duration > 0, timeout > 0, retries >= 0, gap >= 0 and, if given, "
                         "rate > 0")
    shares = [range(k, connections, processes) for k in range(processes)]
    share_rate = rate / processes if rate is not None else None
    lean = _LEAN and processes > 1 and not rate and not gap
    args = [(address, protocol, numbers, concurrency, share_rate, duration, gap, timeout,
             retries, None if seed is None else seed + k, lean)
            for k, numbers in enumerate(shares)]
    with _Progress(connections, progress, shared=processes > 1) as bar:
        if processes == 1:
            _set_stop_flag(stop)
            try:
                rows = _fire_in_process(*args[0])
            finally:
                _set_stop_flag(None)
        else:
            # spawn: a clean interpreter per client, safe from a threaded parent (a notebook)
            spawn = multiprocessing.get_context("spawn")
            start_line = spawn.Barrier(processes)
            flag = spawn.Event() if stop is not None else None  # stop, as processes see it
            with spawn.Pool(processes, initializer=_count_finished,
                            initargs=(bar.counter, start_line, flag)) as clients:
                pending = clients.starmap_async(_fire_in_process, args)
                while not pending.ready():
                    pending.wait(0.05)
                    if flag is not None and stop.is_set():
                        flag.set()
                rows = list(itertools.chain.from_iterable(pending.get()))
    frame = pd.DataFrame(rows, columns=list(CLIENT_COLUMNS))
    for name in CLIENT_NULLABLE:
        frame[name] = frame[name].astype("Int64").mask(frame[name] < 0)
    return frame.sort_values("t_start_ns", kind="stable").reset_index(drop=True)


# How many connections this process has finished, for the progress bar; set per process.
_finished: "multiprocessing.sharedctypes.Synchronized | None" = None
# In a client process: the barrier all client processes wait at before they start firing.
_start_line: "multiprocessing.synchronize.Barrier | None" = None


def _count_finished(counter: "multiprocessing.sharedctypes.Synchronized | None",
                    start_line: "multiprocessing.synchronize.Barrier | None" = None,
                    stop_flag: "multiprocessing.synchronize.Event | None" = None) -> None:
    """Pool initializer: share the parent's counter, start line and stop flag (sync objects
    cross only at start-up)."""
    global _finished, _start_line
    _finished, _start_line = counter, start_line
    _set_stop_flag(stop_flag)


# -- stopping early (fire's ``stop``) -----------------------------------------------------
# Set while the caller wants the load to end now: every loop checks it beside its deadline.
_stop_flag: "threading.Event | multiprocessing.synchronize.Event | None" = None


def _set_stop_flag(flag: "threading.Event | multiprocessing.synchronize.Event | None") -> None:
    global _stop_flag
    _stop_flag = flag


def _stopped() -> bool:
    """Has the caller asked the load to stop early?"""
    return _stop_flag is not None and _stop_flag.is_set()


def _pause(seconds: float) -> None:
    """Sleep, but wake at once if the caller asks the load to stop."""
    if _stop_flag is None:
        time.sleep(seconds)
    else:
        _stop_flag.wait(seconds)


class _Progress:
    """A tqdm bar fed by a shared counter that every client thread and process bumps."""

    def __init__(self, total: int, enabled: bool, shared: bool) -> None:
        self.total, self.enabled = total, enabled
        # Client processes need a lock that crosses processes, and creating one starts
        # multiprocessing's resource tracker, a process that outlives the load (and delays a
        # notebook kernel's restart).  Threads of this process make do with a thread lock.
        lock = True if shared else threading.RLock()
        self.counter = multiprocessing.get_context("spawn").Value("l", 0, lock=lock)
        self._done = threading.Event()

    def __enter__(self) -> "_Progress":
        _count_finished(self.counter)
        if self.enabled:
            self._thread = threading.Thread(target=self._show, daemon=True)
            self._thread.start()
        return self

    def _show(self) -> None:
        from tqdm.auto import tqdm

        with tqdm(total=self.total, unit="conn", desc="connections") as bar:
            while not self._done.wait(0.1):
                bar.update(self.counter.value - bar.n)
            bar.update(self.counter.value - bar.n)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self.enabled:
            self._thread.join()
        _count_finished(None)


# --------------------------------------------------------------------------------------
# The lean path: a closed loop as ONE epoll loop per client process (Linux)
# --------------------------------------------------------------------------------------
# Why it is shaped so.  A Python client is slow because of Python, not the kernel:
# a thread per client queues for the GIL, settimeout() adds a poll() before every
# recv and send, and a dataclass per connection costs more than the connection's
# system calls.  wrk, the yardstick, runs one event loop per core.  So here each
# client process holds its `concurrency` connections in one thread and one epoll:
# * sockets are created non-blocking (SOCK_NONBLOCK: no extra ioctl);
# * the first question is sent right after connect(): on loopback the handshake
#   has finished by the time connect() returns, so no epoll round trip is needed
#   (if it has not, EAGAIN says so and we wait for "writable" instead);
# * a socket leaves the epoll by being closed (close() removes it), not by a call;
# * timeouts are found by a scan every few milliseconds, not a timer per call;
# * each record is born a plain tuple, and the progress counter, whose lock is
#   shared across processes, is bumped once per batch.
# What stays the same: every record's fields, what an error is called
# (:func:`_classify`), retries (a failed attempt is started again; every attempt
# is a row), and ``timeout`` (any single wait longer than it fails).
_LEAN = hasattr(select, "epoll") and hasattr(socket, "SOCK_NONBLOCK")
_SCAN_NS = 5_000_000  # how often (ns) to look for connections past their timeout
_BATCH = 256  # connections per bump of the shared progress counter


class _Flight:
    """One connection in flight on the lean path (``__slots__``: one is made per attempt)."""

    __slots__ = ("sock", "conn", "attempt", "t_start", "t_connected", "t_reply", "step",
                 "pending", "data", "deadline", "worker")


def _lean_closed_loop(address: tuple[str, int], protocol: Protocol, numbers: range,
                      concurrency: int, stop_at: float, timeout: float,
                      retries: int) -> list[tuple]:
    """Keep ``concurrency`` connections in flight until ``numbers`` or the time runs out."""
    family, kind = _family(address), socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    questions, reply_end = protocol.questions, protocol.reply_end
    timeout_ns = int(timeout * 1e9)
    poller = select.epoll()
    flights: dict[int, _Flight] = {}  # by file descriptor
    starts = collections.deque((conn, 1) for conn in itertools.islice(iter(numbers), concurrency))
    todo = iter(numbers[len(starts):])
    rows: list[tuple] = []
    unreported = 0

    def start(conn: int, attempt: int) -> None:
        flight = _Flight()
        flight.conn, flight.attempt, flight.step, flight.data = conn, attempt, 0, b""
        flight.t_connected = flight.t_reply = flight.worker = -1
        flight.t_start, flight.sock = now(), None
        try:
            flight.sock = sock = socket.socket(family, kind)
        except OSError as exc:  # out of file descriptors, say: a failed attempt like any other
            return finish(flight, exc)
        flights[sock.fileno()] = flight
        flight.deadline = flight.t_start + timeout_ns
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            return finish(flight, OSError(code, os.strerror(code)))
        flight.pending = questions[0]
        try:
            if send(flight):
                flight.t_connected = now()
        except OSError as exc:
            return finish(flight, exc)
        poller.register(sock.fileno(), select.EPOLLOUT if flight.pending else select.EPOLLIN)

    def send(flight: _Flight) -> bool:
        """Send what is pending, as much as fits; False if the socket cannot take any yet."""
        try:
            sent = flight.sock.send(flight.pending)
        except BlockingIOError:  # still connecting (or the send buffer is full)
            return False
        flight.pending = flight.pending[sent:]
        return True

    def writable(flight: _Flight) -> None:
        if send(flight):  # raises if the connection failed, e.g. refused
            if flight.t_connected < 0:
                flight.t_connected = now()
            if not flight.pending:
                poller.modify(flight.sock.fileno(), select.EPOLLIN)

    def readable(flight: _Flight) -> None:
        """Read what has arrived; on a whole reply, check it and ask the next question."""
        sock = flight.sock
        while True:
            try:
                chunk = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return  # all read for now
            if chunk:
                flight.data += chunk
                if len(flight.data) > 1 << 20:
                    raise ValueError("reply longer than 1 MiB")  # the same limit as recv_until
                if reply_end is None or not flight.data.endswith(reply_end):
                    continue
            elif reply_end is not None:
                raise ConnectionError("server closed before the reply ended")
            reply, flight.data = flight.data, b""  # a whole reply
            if flight.t_reply < 0:
                flight.t_reply = now()
            if not check_reply(protocol, questions[flight.step], reply):
                return finish(flight, "bad-reply")
            served = parse_served_by(reply)
            flight.worker = -1 if served is None else served
            flight.step += 1
            if flight.step == len(questions):
                return finish(flight, "")
            flight.pending = questions[flight.step]  # the next question, at once
            send(flight)
            if flight.pending:
                poller.modify(sock.fileno(), select.EPOLLOUT)
                return

    def finish(flight: _Flight, error: str | BaseException) -> None:
        """Record a connection attempt that ended; queue its retry or the next connection."""
        nonlocal unreported, stop_at
        sock, port = flight.sock, -1
        if sock is not None:  # None: the socket could not even be created
            del flights[sock.fileno()]
            try:
                port = sock.getsockname()[1]
            except OSError:
                pass
            sock.close()  # also takes it out of the epoll
        if not isinstance(error, str):
            error = _classify(error)
        rows.append((flight.conn, port, flight.t_start, flight.t_connected, flight.t_reply,
                     now(), not error, error, flight.worker, flight.attempt))
        if error and flight.attempt <= retries:  # every attempt is a row of its own
            starts.append((flight.conn, flight.attempt + 1))
            return
        unreported += 1  # a connection number is done
        if unreported == _BATCH:
            unreported = _report(unreported)
            if _stopped():  # checked here too: failing connections never reach the scan
                stop_at = 0.0
        if time.monotonic() < stop_at:
            conn = next(todo, None)
            if conn is not None:
                starts.append((conn, 1))

    next_scan = now() + _SCAN_NS
    try:
        while True:
            while starts:  # started here, not inside finish(): no recursion when all fail
                start(*starts.popleft())
            if not flights:
                break
            for fd, _ in poller.poll(_SCAN_NS / 1e9):
                flight = flights[fd]
                flight.deadline = now() + timeout_ns
                try:
                    if flight.pending:
                        writable(flight)
                    else:
                        readable(flight)
                except (OSError, ValueError) as exc:
                    finish(flight, exc)
            moment = now()
            if moment >= next_scan:  # fail the connections that waited longer than timeout
                next_scan = moment + _SCAN_NS
                if _stopped():
                    stop_at = 0.0  # start nothing new: finish() reads it
                for flight in [f for f in flights.values() if f.deadline < moment]:
                    finish(flight, TimeoutError("timed out"))
    finally:
        for flight in flights.values():
            flight.sock.close()
        poller.close()
        _report(unreported)
    return rows


def _report(done: int) -> int:
    """Add ``done`` finished connections to the shared progress counter; return 0."""
    if _finished is not None and done:
        with _finished.get_lock():
            _finished.value += done
    return 0
