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
then runs the epoll engine of :mod:`acceptlab.client.lean` instead of a thread
per client.  Both engines hold each conversation through the same
:class:`~acceptlab.client.conversation.ClientConversation`, which frames and
checks the replies, so they give the same records and the same errors.

Every run is bounded by a connection count and a duration, and the duration
is a promise: no connection starts after it, and whatever is still in flight
:data:`GRACE` seconds later is cut (``error='unfinished'``), however many
client processes there are and however silent the server.  Every connection
becomes one :class:`ConnectionRecord`; :func:`fire` returns them as a pandas
DataFrame (columns in ``CLIENT_COLUMNS``).  A failed connection is a record
with ``ok=False`` and its cause in ``error``, never an exception, with one
exception: a server that speaks another protocol stops the load at once
(:class:`ProtocolMismatch`), since every further connection would fail alike.
"""

from __future__ import annotations

import itertools
import multiprocessing
import operator
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from ..basics import address_family, missing_as_na, now, show_address
from .conversation import (ERRORS, PROBE_WAIT, ClientConversation, error_name,
                                  printable)
from ..server.conversation import RECV_SIZE
from .lean import LEAN, closed_loop
from ..server.protocol import PROTOCOLS, Protocol, get_protocol
from ..specs import CLIENT_TIMEOUT, LoadSpec, RunOptions, build_specs

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ConnectionRecord", "CLIENT_COLUMNS", "CLIENT_NULLABLE", "ProtocolMismatch",
           "TIMEOUT", "GRACE", "one_connection", "fire", "describe_errors"]

CLIENT_COLUMNS = ("conn", "local_port", "t_start_ns", "t_connected_ns", "t_reply_ns",
                  "t_done_ns", "ok", "error", "worker", "attempt")
# Columns that may have no value (-1 in a record, <NA> in the table): integers with gaps.
CLIENT_NULLABLE = ("local_port", "t_connected_ns", "t_reply_ns", "t_done_ns", "worker")

TIMEOUT = CLIENT_TIMEOUT
"""Default seconds any single wait of a client may last (see :data:`acceptlab.specs.CLIENT_TIMEOUT`)."""

GRACE = 0.25
"""Seconds after the duration (or a stop) that connections in flight get to finish before they
are cut: on loopback a conversation under way ends within milliseconds, unless the server is
stuck, and then waiting longer would only break the promise of the duration."""
_GRACE_NS = int(GRACE * 1e9)

_SLICE = 0.1  # a client thread blocked in recv() looks at the stop flag this often (seconds)
_NEVER = 1 << 62  # a now() no load reaches (146 years of nanoseconds)
_RETURN_SLACK = 0.3  # seconds after the cut for client processes to hand in their records


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
    error: str = ""  # '' when ok, else one word of client_conversation.ERRORS (or an exception's)
    worker: int = -1  # the worker named in the reply (http), else -1
    attempt: int = 1  # 2, 3, ... for the retries of connection number ``conn``
    # Not a column: when error == 'mismatch', (what was received, the likely protocol).
    mismatch: tuple[bytes, str] | None = field(default=None, repr=False)


# A record as a plain tuple in CLIENT_COLUMNS order (dataclasses.astuple deep-copies: 10 x slower).
_as_row = operator.attrgetter(*CLIENT_COLUMNS)


class ProtocolMismatch(ValueError):
    """The server answered in another protocol (or in bytes no protocol the kit knows sends).

    Raised by :func:`fire` after the first such connection: every other one
    would fail the same way.  ``received`` holds the bytes (at most 200),
    ``likely`` the protocol they belong to (``''``: none the kit knows).
    """

    def __init__(self, address: tuple[str, int], protocol: str, received: bytes,
                 likely: str) -> None:
        self.address, self.protocol, self.received, self.likely = (
            address, protocol, received, likely)
        said = f"{show_address(*address[:2])} answered {printable(received)}"
        if likely:
            super().__init__(f"{said}, which is {likely}, not {protocol}: try --protocol {likely}")
        else:
            super().__init__(f"{said}, which is no protocol the kit knows (not {protocol}): is "
                             f"that the right port? (--protocol: {', '.join(PROTOCOLS)})")


class _Stop:
    """The stop flag of a load within one process (across processes: a ``RawValue('q')``).

    ``value`` is 0 while the load runs, else the ``now()`` at which the
    connections still in flight are cut; no connection starts once it is set.
    A protocol mismatch sets it to "now".  The caller's ``stop`` Event (the
    CLI sets one on Ctrl-C) counts as a stop :data:`GRACE` seconds ahead, so
    that conversations under way get the same grace as at the end of the duration.
    """

    __slots__ = ("_value", "event")

    def __init__(self, event: threading.Event | None = None) -> None:
        self._value, self.event = 0, event

    @property
    def value(self) -> int:
        if not self._value and self.event is not None and self.event.is_set():
            self._value = now() + _GRACE_NS
        return self._value

    @value.setter
    def value(self, moment: int) -> None:
        self._value = moment


class _Together:
    """What every client thread (and, with processes, every client process) of one load shares.

    ``counter``: connections finished, for the progress bar.  ``stop``: a flag
    that ends the load early (a protocol mismatch, an interrupt).  ``start_line``:
    where client processes wait for each other so that they start firing together;
    ``started``: how many of them got past it (the parent need not wait for the others).
    """

    def __init__(self, counter, stop, start_line=None, started=None) -> None:
        self.counter, self.stop, self.start_line, self.started = counter, stop, start_line, started

    def report(self, done: int) -> None:
        """Add ``done`` finished connections to the progress counter."""
        if self.counter is not None and done:
            with self.counter.get_lock():
                self.counter.value += done


_IN_CHILD: _Together | None = None  # set in a client process by _start_client_process


def _start_client_process(counter, stop, start_line, started) -> None:
    """Pool initializer: keep the parent's shared objects (they cross only at start-up).

    A client process ignores Ctrl-C: the terminal sends it to the whole process
    group, and it is the parent's to handle (it stops its client processes
    itself), so no child prints a traceback of its own.
    """
    global _IN_CHILD
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _IN_CHILD = _Together(counter, stop, start_line, started)


# -- the threaded engine: one blocking socket per client thread ----------------------------------

def client_socket(address: tuple[str, int], talk: ClientConversation) -> socket.socket | None:
    """A TCP socket for ``address``, or None once ``talk`` has been told why none could be made.

    Out of file descriptors, say: a failed attempt like any other, recorded, never raised.
    """
    try:
        return socket.socket(address_family(address[0]), socket.SOCK_STREAM)
    except OSError as exc:
        talk.fail(error_name(exc))
        return None


def one_connection(address: tuple[str, int], protocol: Protocol, *, conn: int = 0,
                   timeout: float = TIMEOUT, cut_ns: int | None = None,
                   stop: _Stop | None = None) -> ConnectionRecord:
    """Open one connection, ask the protocol's questions, check the answers, close.

    Never raises for a network problem: the record says what went wrong.
    The conversation's rules (framing, checks, mismatch, size limit) are
    :class:`ClientConversation`'s; this function only moves the bytes.

    Args:
        address: the server's ``(host, port)``.
        protocol: what to ask and how to check the answers.
        conn: the connection number to record.
        timeout: seconds any single wait may last.
        cut_ns: past this ``now()`` the connection is given up as ``unfinished``.
        stop: the load's stop flag (see :class:`_Stop`): past the moment it holds, the
            connection is given up as ``unfinished`` within a tenth of a second.
    """
    record = ConnectionRecord(conn, t_start_ns=now())
    talk = ClientConversation(protocol)
    waits = _Waits(timeout, cut_ns, stop)
    sock = client_socket(address, talk)
    if sock is not None:
        with sock:
            try:
                waits.connect(sock, address)
                record.t_connected_ns = now()
                record.local_port = sock.getsockname()[1]
                outgoing, wait = talk.start(), timeout
                while not talk.ended:
                    if outgoing:
                        waits.sendall(sock, outgoing)
                    data = waits.recv(sock, wait)
                    if data is None:  # the wait ran out: a probe to send, or the end
                        outgoing, wait = talk.timed_out(), PROBE_WAIT
                        continue
                    outgoing = talk.receive(data)
                    if record.t_reply_ns < 0 and talk.replies:
                        record.t_reply_ns = now()
            except TimeoutError:
                talk.fail("unfinished" if waits.over() else "timeout")
            except OSError as exc:
                talk.fail(error_name(exc))
            if record.local_port < 0:
                try:
                    record.local_port = sock.getsockname()[1]
                except OSError:
                    pass
    record.ok, record.error, record.worker = not talk.error, talk.error, talk.worker
    if talk.error == "mismatch":
        record.mismatch = (talk.received, talk.likely)
    record.t_done_ns = now()
    return record


class _Waits:
    """The waits of one threaded connection: each at most ``timeout``, none past ``cut_ns``,
    and none long after ``stop`` is set (a blocked ``recv`` wakes every :data:`_SLICE` to look).

    The cut is read once and again only when a slice of a wait ends empty, so a
    conversation that goes well pays one clock reading per wait, no more.
    """

    __slots__ = ("timeout", "cut", "stop", "slice")

    def __init__(self, timeout: float, cut_ns: int | None, stop: _Stop | None) -> None:
        self.timeout, self.stop = timeout, stop
        self.cut = _NEVER if cut_ns is None else cut_ns
        self.slice = _SLICE if stop is not None else timeout
        self.look()

    def look(self) -> None:
        """Take an earlier cut from the stop flag, if it has been set."""
        stopped = self.stop.value if self.stop is not None else 0
        if stopped and stopped < self.cut:
            self.cut = stopped

    def over(self) -> bool:
        """Has the load ended (cut, or stopped) for this connection?"""
        self.look()
        return now() >= self.cut

    def _left(self) -> float:
        """Seconds until the cut; TimeoutError if it has come."""
        left = (self.cut - now()) / 1e9
        if left <= 0:
            raise TimeoutError("the load is over")
        return left

    def connect(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.settimeout(min(self.timeout, self._left()))
        sock.connect(address)

    def sendall(self, sock: socket.socket, data: bytes) -> None:
        sock.settimeout(min(self.timeout, self._left()))
        sock.sendall(data)

    def recv(self, sock: socket.socket, seconds: float) -> bytes | None:
        """What arrives within ``seconds``; None if nothing did (TimeoutError if the load ended)."""
        end = now() + int(seconds * 1e9)
        while True:
            left = (min(end, self.cut) - now()) / 1e9
            if left <= 0:
                if self.over():
                    raise TimeoutError("the load is over")
                return None
            sock.settimeout(min(left, self.slice))
            try:
                return sock.recv(RECV_SIZE)
            except TimeoutError:
                self.look()  # a slice ended empty: has the load been stopped meanwhile?


def _with_retries(address: tuple[str, int], protocol: Protocol, conn: int, share: "_Share",
                  together: _Together) -> list[ConnectionRecord]:
    """:func:`one_connection`, tried again up to ``retries`` times if it fails.

    Every attempt is a connection of its own and gets its own record: a
    failed attempt may still have been accepted by a worker (one killed
    mid-conversation, say), and the event log will show it.  No retry starts
    after the duration, nor after a mismatch (it would fail alike).
    """
    records = []
    for attempt in range(1, share.retries + 2):
        record = one_connection(address, protocol, conn=conn, timeout=share.timeout,
                                cut_ns=share.cut_ns, stop=together.stop)
        record.attempt = attempt
        records.append(record)
        if record.error == "mismatch":
            together.stop.value = now()  # the others end at once: they would fail alike
        if record.ok or not _going(share, together):
            break
    together.report(1)  # one connection number done, however many attempts it took
    return records


def _going(share: "_Share", together: _Together) -> bool:
    """May a new connection (or retry) start now?"""
    return now() < share.stop_ns and not together.stop.value


def _pause_until(moment_ns: int, share: "_Share", together: _Together) -> None:
    """Sleep until ``moment_ns``, but no later than the end of the duration or a stop."""
    while _going(share, together):
        left = (min(moment_ns, share.stop_ns) - now()) / 1e9
        if left <= 0:
            return
        time.sleep(min(left, _SLICE))


def _client_loop(address: tuple[str, int], protocol: Protocol, numbers: Iterator[int],
                 share: "_Share", together: _Together, out: list[ConnectionRecord]) -> None:
    """One closed-loop client: take the next connection number, run it, pause ``gap``, repeat."""
    for conn in numbers:
        if not _going(share, together):
            return
        out.extend(_with_retries(address, protocol, conn, share, together))
        if share.gap:
            _pause_until(now() + int(share.gap * 1e9), share, together)


def _open_loop(address: tuple[str, int], protocol: Protocol, share: "_Share",
               together: _Together, out: list[ConnectionRecord],
               max_in_flight: int = 256) -> list[threading.Thread]:
    """Start connections at Poisson times, ``rate`` per second, each in its own thread.

    ``max_in_flight`` bounds the threads: past it, arrivals wait (and the
    achieved rate falls below the target, which the caller can see).
    Returns the threads started, for the caller to join.
    """
    pace = random.Random(share.seed)
    slots = threading.BoundedSemaphore(max_in_flight)
    threads = []
    next_start = now()

    def run(conn: int) -> None:
        try:
            out.extend(_with_retries(address, protocol, conn, share, together))
        finally:
            slots.release()

    for conn in share.numbers:
        next_start += int(pace.expovariate(share.rate) * 1e9)  # exponential gaps: Poisson
        _pause_until(next_start, share, together)
        while _going(share, together) and not slots.acquire(timeout=_SLICE):
            pass
        if not _going(share, together):
            break
        thread = threading.Thread(target=run, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


@dataclass(frozen=True)
class _Share:
    """One client process's part of a load (plain values: it travels to a spawned process)."""

    address: tuple[str, int]
    protocol: str
    numbers: range
    concurrency: int
    rate: float | None
    gap: float
    timeout: float
    retries: int
    seed: int | None
    lean: bool
    stop_ns: int  # no connection starts at or after this now()
    cut_ns: int  # connections still going at this now() are cut


def _fire_in_process(share: _Share,
                     together: _Together | None = None) -> tuple[list[tuple], tuple | None]:
    """Run a share of the load in this process.

    Returns plain tuples (cheap to pickle) and, if the server spoke another
    protocol, ``(received, likely)`` from the first reply that showed it.
    """
    together = together or _IN_CHILD
    protocol = get_protocol(share.protocol)
    if together.start_line is not None:  # several client processes: start firing together
        try:
            together.start_line.wait(timeout=max(0.001, (share.stop_ns - now()) / 1e9))
        except threading.BrokenBarrierError:
            pass  # a sibling started too late: fire anyway, the duration still holds
        with together.started.get_lock():
            together.started.value += 1  # counted before the clock is read: see the parent
    if share.lean:
        return closed_loop(share.address, protocol, share.numbers,
                           concurrency=share.concurrency, stop_ns=share.stop_ns,
                           cut_ns=share.cut_ns, timeout=share.timeout, retries=share.retries,
                           report=together.report, stop=together.stop)
    out: list[ConnectionRecord] = []
    if share.rate:
        threads = _open_loop(share.address, protocol, share, together, out)
    else:
        numbers = iter(share.numbers)  # next() on a range iterator is atomic under the GIL
        threads = [threading.Thread(target=_client_loop, daemon=True,
                                    args=(share.address, protocol, numbers, share, together, out))
                   for _ in range(share.concurrency)]
        for thread in threads:
            thread.start()
    try:
        for thread in threads:  # every wait ends by the cut, so these joins do too
            thread.join(max(0.0, (share.cut_ns - now()) / 1e9 + _SLICE))
    except BaseException:  # Ctrl-C: let the threads go at once, and say so upwards
        together.stop.value = now()
        raise
    records = list(out)  # a copy: a thread still running past its join appends no more here
    mismatch = next((r.mismatch for r in records if r.mismatch is not None), None)
    return [_as_row(record) for record in records], mismatch


def fire(address: tuple[str, int], load: LoadSpec | None = None, *,
         options: RunOptions | None = None, **shortcuts: Any) -> "pd.DataFrame":
    """Fire up to ``load.connections`` connections at ``address`` for at most ``load.duration`` s.

    ``fire(address, LoadSpec(connections=200, gap=0.001))`` and
    ``fire(address, connections=200, gap=0.001)`` fire the same load: keywords
    are shortcuts for the fields of :class:`~acceptlab.specs.LoadSpec` (what
    each means, and its checks, are there) and for ``progress`` and ``stop``
    of :class:`~acceptlab.specs.RunOptions`.

    Returns one row per connection *attempt* (numbered in ``attempt``; a
    connection number with no ``ok`` row was lost), ordered by start time.
    ``frame.attrs`` holds the ``address`` (as text), ``protocol``, ``timeout``,
    ``duration``, the load's wall-clock bounds ``t_begin_ns``/``t_end_ns`` and
    ``late_processes`` (client processes that had not handed in their records
    by the end of the duration, whose rows are missing): what a summary needs
    to explain its errors (:func:`describe_errors`) and to give rates over the
    time the load really took.

    Throughput: a closed loop over ``processes >= 2`` (no ``rate``, no ``gap``)
    runs the epoll engine, one per client process (Linux; elsewhere the
    threads).  On two cores, ``processes=2, concurrency=16`` is the fastest.
    The duration is a promise: no connection starts after it, whatever is
    still going :data:`GRACE` s later is cut (``unfinished``), and ``fire``
    returns well within a second after it.  Starting client processes counts
    against it.

    Args:
        address: the server's ``(host, port)``; loopback, as every load of the kit.
        load: what to fire (``LoadSpec()`` if None).
        options: ``progress`` (a tqdm bar whose rate is over the load's wall time)
            and ``stop`` (an Event the caller may set, as the CLI does on Ctrl-C, to
            end the load early as if its duration ran out then: no new connection,
            :data:`GRACE` s for those in flight, every row so far returned, and
            ``frame.attrs['stopped']`` true); the other options are a run's.
        **shortcuts: fields of ``LoadSpec`` (and ``progress``, ``stop``) replacing
            those of ``load`` and ``options``.

    Raises:
        ProtocolMismatch: a reply cannot belong to ``load.protocol`` (the load stops at once).
    """
    import pandas as pd

    _, load, options = build_specs(None, load, options, caller="fire",
                                   only=(LoadSpec, RunOptions), **shortcuts)
    processes, stop = load.processes, options.stop
    began = now()
    stop_ns = began + int(load.duration * 1e9)
    lean = LEAN and processes > 1 and not load.rate and not load.gap
    shares = [_Share(tuple(address), load.protocol, range(k, load.connections, processes),
                     load.concurrency, load.rate / processes if load.rate is not None else None,
                     load.gap, load.timeout, load.retries,
                     None if load.seed is None else load.seed + k, lean, stop_ns,
                     stop_ns + int(GRACE * 1e9))
              for k in range(processes)]
    with _Progress(load.connections, options.progress, shared=processes > 1) as bar:
        if processes == 1:
            results = [_fire_in_process(shares[0], _Together(bar.counter, _Stop(stop)))]
        else:
            results = _fire_in_processes(shares, bar.counter, stop)
    late = processes - len(results)
    rows = list(itertools.chain.from_iterable(rows for rows, _ in results))
    mismatch = next((found for _, found in results if found is not None), None)
    if mismatch is not None:
        raise ProtocolMismatch(address, load.protocol, *mismatch)
    frame = missing_as_na(pd.DataFrame(rows, columns=list(CLIENT_COLUMNS)), CLIENT_NULLABLE)
    frame = frame.sort_values("t_start_ns", kind="stable").reset_index(drop=True)
    frame.attrs.update(address=show_address(*address[:2]), protocol=load.protocol,
                       timeout=load.timeout, duration=load.duration, t_begin_ns=began,
                       t_end_ns=now(), late_processes=late,
                       stopped=stop is not None and stop.is_set())
    return frame


def _fire_in_processes(shares: list[_Share], counter,
                       event: threading.Event | None) -> list[tuple[list[tuple], tuple | None]]:
    """Run each share in a client process of its own; what each hands in by the deadline.

    spawn: a clean interpreter per client, safe from a threaded parent (a
    notebook).  Starting one takes a few tenths of a second, more on a busy
    machine, and counts against the duration.  Once no connection may start
    (the duration is over, or the load was stopped), a client process that
    never got past the start line has nothing to hand in: it is not waited
    for.  One that fired but has not handed in its records :data:`_RETURN_SLACK`
    s after the cut is stopped too and its share is missing from the table:
    the duration is the promise kept.
    """
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.RawValue("q", 0)  # _Stop's value, shared: one aligned word, no lock needed
    start_line = spawn.Barrier(len(shares))
    started = spawn.Value("i", 0)  # client processes past the start line
    stop_ns, deadline = shares[0].stop_ns, shares[0].cut_ns + int(_RETURN_SLACK * 1e9)
    with spawn.Pool(len(shares), initializer=_start_client_process,
                    initargs=(counter, stop, start_line, started)) as clients:
        try:
            jobs = [clients.apply_async(_fire_in_process, (share,)) for share in shares]
            while now() < deadline:
                waiting = [job for job in jobs if not job.ready()]
                if not waiting:
                    break
                # A process counts itself started before it reads the clock, so once none may
                # start, every one that could have fired is counted: those are awaited.
                if ((now() >= stop_ns or stop.value)
                        and len(jobs) - len(waiting) >= started.value):
                    break
                waiting[0].wait(_SLICE / 2)  # a short wait: the caller's Event is polled too
                if event is not None and event.is_set() and not stop.value:
                    stop.value = now() + _GRACE_NS
                    deadline = min(deadline, stop.value + int(_RETURN_SLACK * 1e9))
        except BaseException:  # a second Ctrl-C: the pool's exit stops the client processes
            stop.value = now()
            raise
        return [job.get() for job in jobs if job.ready()]


def describe_errors(client: "pd.DataFrame") -> dict[str, str]:
    """Each kind of failed attempt in ``client``: ``{error: "N (what it means)"}``, most first.

    A summary that says ``refused: 10`` leaves the reader guessing where; this
    one says ``10 (nothing listens on 127.0.0.1:1060)``.  The words come from
    :data:`~acceptlab.client.conversation.ERRORS`, one place for what each means.

    Args:
        client: a table from :func:`fire`; the ``address`` and ``timeout`` it
            leaves in ``client.attrs`` fill in the explanations (a table read
            back from a file has no attrs, and then says "the server's address").
    """
    counts = client.loc[~client["ok"].astype(bool), "error"].value_counts()
    address = client.attrs.get("address", "the server's address")
    timeout = client.attrs.get("timeout", "?")
    described = {}
    for error, count in counts.items():
        meaning = ERRORS.get(error, "an error of the client's own machine")
        described[error] = f"{count} ({meaning.format(address=address, timeout=timeout)})"
    return described


class _Progress:
    """A tqdm bar fed by a shared counter that every client thread and process bumps.

    Its rate is connections over the wall time since the load began
    (``smoothing=0``), the figure a summary gives too: tqdm's default, a moving
    average of the latest updates, divides a burst by the few milliseconds
    between two updates and shows rates no client reached.
    """

    def __init__(self, total: int, enabled: bool, shared: bool) -> None:
        self.total, self.enabled = total, enabled
        # Client processes need a lock that crosses processes, and creating one starts
        # multiprocessing's resource tracker, a process that outlives the load (and delays a
        # notebook kernel's restart).  Threads of this process make do with a thread lock.
        lock = True if shared else threading.RLock()
        self.counter = multiprocessing.get_context("spawn").Value("l", 0, lock=lock)
        self._done = threading.Event()

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from tqdm.auto import tqdm

            # Made here, before the first connection, so that its clock covers the whole load.
            bar = tqdm(total=self.total, unit="conn", desc="connections", smoothing=0)
            self._thread = threading.Thread(target=self._show, args=(bar,), daemon=True)
            self._thread.start()
        return self

    def _show(self, bar) -> None:
        with bar:
            while not self._done.wait(0.1):
                bar.update(self.counter.value - bar.n)
            bar.update(self.counter.value - bar.n)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self.enabled:
            self._thread.join()
