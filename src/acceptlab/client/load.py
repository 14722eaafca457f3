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
per client (:mod:`acceptlab.client.threads`).  Both engines hold each conversation through the same
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
import signal
import threading
from typing import TYPE_CHECKING, Any

from ..basics import missing_as_na, now, show_address
from ..server.protocol import get_protocol
from ..specs import CLIENT_TIMEOUT, LoadSpec, RunOptions, build_specs
from .control import GRACE, GRACE_NS, SLICE, LoadControl, LoadPart, StopFlag
from .lean import LEAN, ClosedLoop
from .records import (CLIENT_COLUMNS, CLIENT_NULLABLE, ConnectionRecord, ProtocolMismatch, as_row,
                      describe_errors)
from .threads import client_loop, one_connection, open_loop

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["fire", "ConnectionRecord", "CLIENT_COLUMNS", "CLIENT_NULLABLE", "ProtocolMismatch",
           "TIMEOUT", "GRACE", "one_connection", "describe_errors"]

TIMEOUT = CLIENT_TIMEOUT
"""Default seconds any single wait of a client may last (see :data:`acceptlab.specs.CLIENT_TIMEOUT`)."""

_RETURN_SLACK = 0.3  # seconds after the cut for client processes to hand in their records


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
    parts = [LoadPart(tuple(address), load.protocol, range(k, load.connections, processes),
                      load.concurrency, load.rate / processes if load.rate is not None else None,
                      load.gap, load.timeout, load.retries,
                      None if load.seed is None else load.seed + k, lean, stop_ns,
                      stop_ns + GRACE_NS)
             for k in range(processes)]
    with _Progress(load.connections, options.progress, shared=processes > 1) as bar:
        if processes == 1:
            results = [_fire_in_process(parts[0], LoadControl(bar.counter, StopFlag(stop)))]
        else:
            results = _fire_in_processes(parts, bar.counter, stop)
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


def _fire_in_process(part: LoadPart,
                     control: LoadControl | None = None) -> tuple[list[tuple], tuple | None]:
    """Run a part of the load in this process: the lean engine, or threads.

    Returns plain tuples (cheap to pickle) and, if the server spoke another
    protocol, ``(received, likely)`` from the first reply that showed it.
    """
    control = control or _IN_CHILD
    protocol = get_protocol(part.protocol)
    if control.start_line is not None:  # several client processes: start firing together
        try:
            control.start_line.wait(timeout=max(0.001, (part.stop_ns - now()) / 1e9))
        except threading.BrokenBarrierError:
            pass  # a sibling started too late: fire anyway, the duration still holds
        with control.started.get_lock():
            control.started.value += 1  # counted before the clock is read: see the parent
    if part.lean:
        return ClosedLoop(part, protocol, control).run()
    out: list[ConnectionRecord] = []
    if part.rate:
        threads = open_loop(part.address, protocol, part, control, out)
    else:
        numbers = iter(part.numbers)  # next() on a range iterator is atomic under the GIL
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(part.address, protocol, numbers, part, control, out))
                   for _ in range(part.concurrency)]
        for thread in threads:
            thread.start()
    try:
        for thread in threads:  # every wait ends by the cut, so these joins do too
            thread.join(max(0.0, (part.cut_ns - now()) / 1e9 + SLICE))
    except BaseException:  # Ctrl-C: let the threads go at once, and say so upwards
        control.stop.cut_now()
        raise
    records = list(out)  # a copy: a thread still running past its join appends no more here
    mismatch = next((r.mismatch for r in records if r.mismatch is not None), None)
    return [as_row(record) for record in records], mismatch


_IN_CHILD: LoadControl | None = None  # set in a client process by _start_client_process


def _start_client_process(counter: Any, cut: Any, start_line: Any, started: Any) -> None:
    """Pool initializer: keep the parent's shared objects (they cross only at start-up).

    A client process ignores Ctrl-C: the terminal sends it to the whole process
    group, and it is the parent's to handle (it stops its client processes
    itself), so no child prints a traceback of its own.
    """
    global _IN_CHILD
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _IN_CHILD = LoadControl(counter, StopFlag(shared=cut), start_line, started)


def _fire_in_processes(parts: list[LoadPart], counter: Any,
                       event: threading.Event | None) -> list[tuple[list[tuple], tuple | None]]:
    """Run each part in a client process of its own; what each hands in by the deadline.

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
    cut = spawn.RawValue("q", 0)  # StopFlag.cut_ns, shared: one aligned word, no lock needed
    stop = StopFlag(shared=cut)
    start_line = spawn.Barrier(len(parts))
    started = spawn.Value("i", 0)  # client processes past the start line
    stop_ns, deadline = parts[0].stop_ns, parts[0].cut_ns + int(_RETURN_SLACK * 1e9)
    with spawn.Pool(len(parts), initializer=_start_client_process,
                    initargs=(counter, cut, start_line, started)) as clients:
        try:
            jobs = [clients.apply_async(_fire_in_process, (part,)) for part in parts]
            while now() < deadline:
                waiting = [job for job in jobs if not job.ready()]
                if not waiting:
                    break
                # A process counts itself started before it reads the clock, so once none may
                # start, every one that could have fired is counted: those are awaited.
                if ((now() >= stop_ns or stop.cut_ns)
                        and len(jobs) - len(waiting) >= started.value):
                    break
                waiting[0].wait(SLICE / 2)  # a short wait: the caller's Event is polled too
                if event is not None and event.is_set() and not stop.cut_ns:
                    stop.cut_ns = now() + GRACE_NS
                    deadline = min(deadline, stop.cut_ns + int(_RETURN_SLACK * 1e9))
        except BaseException:  # a second Ctrl-C: the pool's exit stops the client processes
            stop.cut_now()
            raise
        return [job.get() for job in jobs if job.ready()]


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
