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
client processes (``processes=K``).

Every run is bounded by a connection count and a duration.  Every connection
becomes one :class:`ConnectionRecord`; :func:`fire` returns them as a pandas
DataFrame (columns in ``CLIENT_COLUMNS``).  A failed connection is a record
with ``ok=False`` and its cause in ``error``, never an exception.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import socket
import threading
import time
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Iterator

from .conversation import recv_until
from .protocol import Protocol, get_protocol, parse_served_by

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ConnectionRecord", "CLIENT_COLUMNS", "one_connection", "fire", "check_reply"]

now = time.monotonic_ns
CLIENT_COLUMNS = ("conn", "local_port", "t_start_ns", "t_connected_ns", "t_reply_ns",
                  "t_done_ns", "ok", "error", "worker", "attempt")


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


def check_reply(protocol: Protocol, question: bytes, reply: bytes) -> bool:
    """Is ``reply`` the right answer to ``question``?  (A wrong one is an error, not a success.)"""
    if protocol.reply_end is None:  # http: any 200 will do
        return reply.startswith(b"HTTP/1.0 200")
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
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
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
    if _finished is not None:
        with _finished.get_lock():
            _finished.value += 1
    return records


def _client_loop(address: tuple[str, int], protocol: Protocol, numbers: Iterator[int],
                 stop_at: float, gap: float, timeout: float, retries: int,
                 out: list[ConnectionRecord]) -> None:
    """One closed-loop client: take the next connection number, run it, pause ``gap``, repeat."""
    for conn in numbers:
        if time.monotonic() >= stop_at:
            return
        out.extend(_with_retries(address, protocol, conn, timeout, retries))
        if gap:
            time.sleep(gap)


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
            time.sleep(delay)
        if time.monotonic() >= stop_at:
            break
        slots.acquire()
        thread = threading.Thread(target=run, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, stop_at - time.monotonic()) + timeout)


def _fire_in_process(address: tuple[str, int], protocol_name: str, numbers: range,
                     concurrency: int, rate: float | None, duration: float, gap: float,
                     timeout: float, retries: int, seed: int | None) -> list[tuple]:
    """Run a share of the load in this process; return plain tuples (cheap to pickle)."""
    protocol = get_protocol(protocol_name)
    out: list[ConnectionRecord] = []
    stop_at = time.monotonic() + duration
    if rate:
        _open_loop(address, protocol, numbers, rate, stop_at, timeout, retries, seed, out)
    else:
        shared = iter(numbers)  # next() on a range iterator is atomic under the GIL
        threads = [threading.Thread(target=_client_loop, daemon=True,
                                    args=(address, protocol, shared, stop_at, gap, timeout,
                                          retries, out))
                   for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + timeout * (retries + 2))
    return [astuple(record) for record in out]


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
) -> "pd.DataFrame":
    """Fire up to ``connections`` connections at ``address`` for at most ``duration`` seconds.

    ``concurrency=1`` and no ``rate`` is sequential; ``concurrency=C`` a closed
    loop of C clients; ``rate=R`` an open loop of Poisson arrivals at R per
    second (``concurrency`` is then ignored).  ``processes=K`` splits the
    connections over K client processes, each running the same mode with its
    share of the rate.  ``gap`` pauses each client between connections;
    ``retries`` retries a failed connection (each attempt is a row, numbered
    in ``attempt``; a connection number with no ``ok`` row was lost).
    Returns one row per connection, ordered by start time.
    """
    import pandas as pd

    get_protocol(protocol)  # fail fast on a bad name
    if connections < 0 or concurrency < 1 or processes < 1 or duration <= 0:
        raise ValueError("connections >= 0, concurrency >= 1, processes >= 1, duration > 0")
    shares = [range(k, connections, processes) for k in range(processes)]
    share_rate = rate / processes if rate else None
    args = [(address, protocol, numbers, concurrency, share_rate, duration, gap, timeout,
             retries, None if seed is None else seed + k) for k, numbers in enumerate(shares)]
    with _Progress(connections, progress) as bar:
        if processes == 1:
            rows = _fire_in_process(*args[0])
        else:
            # spawn: a clean interpreter per client, safe from a threaded parent (a notebook)
            with multiprocessing.get_context("spawn").Pool(
                    processes, initializer=_count_finished, initargs=(bar.counter,)) as clients:
                rows = list(itertools.chain.from_iterable(clients.starmap(_fire_in_process, args)))
    frame = pd.DataFrame(rows, columns=list(CLIENT_COLUMNS))
    for name in ("local_port", "t_connected_ns", "t_reply_ns", "t_done_ns", "worker"):
        frame[name] = frame[name].astype("Int64").mask(frame[name] < 0)
    return frame.sort_values("t_start_ns", kind="stable").reset_index(drop=True)


# How many connections this process has finished, for the progress bar; set per process.
_finished: "multiprocessing.sharedctypes.Synchronized | None" = None


def _count_finished(counter: "multiprocessing.sharedctypes.Synchronized | None") -> None:
    """Pool initializer: share the parent's counter (sync objects cross only at start-up)."""
    global _finished
    _finished = counter


class _Progress:
    """A tqdm bar fed by a shared counter that every client thread and process bumps."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.counter = multiprocessing.get_context("spawn").Value("l", 0)
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
