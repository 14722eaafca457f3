"""The kernel's own account of a run: scheduler wakeups and TCP state changes from tracefs.

The event log counts wakeups from user space (``nvcsw``, the voluntary context
switches of a wait).  This module asks the kernel instead: while a run lasts,
a private tracefs instance records every ``sched:sched_wakeup`` and
``sched:sched_switch`` of the workers' threads and every
``sock:inet_sock_set_state`` of the server's port.  :func:`cross_check` then
sets the two accounts side by side, connection by connection.

Theory of operation
-------------------
* One tracefs *instance* per trace (``instances/acceptlab-<pid>-<random>``):
  its own ring buffer, clock, events and filters, so the machine's global
  tracing is not touched and two traces do not disturb each other.
* ``trace_clock`` is ``mono``, the clock of ``time.monotonic_ns()``
  (:data:`acceptlab.basics.now`), so a trace row and an event-log row can be
  subtracted.  tracefs prints times in microseconds, so ``t_ns`` is a multiple
  of 1000.
* Events are filtered in the kernel: wakeups by the woken thread's id,
  switches by either thread's id, state changes by the port.  Nothing is read
  while the run lasts (a reader would itself be scheduled on the 2 CPUs the
  workers use); the buffer (8 MiB per CPU by default) is read once at the end,
  and the events the buffer had to drop are counted (:attr:`KernelTrace.lost`).
* Worker threads started after the trace began (a replaced worker) are not in
  the filter, so they are not traced.

Cleaning up
-----------
The instance is removed by :meth:`KernelTrace.stop` / :meth:`KernelTrace.close`,
by the ``with`` block on an exception or Ctrl-C (``KeyboardInterrupt``), and
by ``atexit`` at a normal interpreter exit.  A process killed outright (SIGKILL)
cannot clean up, so each new trace first removes the ``acceptlab-*`` instances
whose owner process (the pid in the name) no longer exists.

Without the privilege (not root, tracefs not mounted, a kernel without the
tracepoints) :class:`KernelTrace` raises :class:`TracingUnavailable`, a one-line
reason; :func:`trace_pool` turns it into a :class:`TracingUnavailableWarning`
and lets the run go on untraced.

The ``trace`` table (``trace.csv``): one row per kernel event
-------------------------------------------------------------
=============  ==============================================================
column         meaning
=============  ==============================================================
``t_ns``       when (``time.monotonic_ns()`` clock; microsecond resolution)
``cpu``        the CPU the event happened on
``event``      ``sched_wakeup``, ``sched_switch``, ``inet_sock_set_state``,
               or ``marker`` (a line written to ``trace_marker``)
``by_tid``     the thread that was running when it happened (for a wakeup:
               the waker, often the client whose packet arrived; 0 = idle)
``tid``        ``sched_wakeup``: the thread woken; ``sched_switch``: the
               thread leaving the CPU; empty for the others
``next_tid``   ``sched_switch``: the thread taking the CPU; else empty
``state``      ``sched_switch``: how the leaving thread left (``S``: went to
               sleep, a voluntary switch; ``R``/``R+``: preempted; ``D``:
               uninterruptible sleep; ``X``: exited); ``inet_sock_set_state``:
               the new TCP state (``SYN_RECV``, ``ESTABLISHED``, ...); else empty
``old_state``  ``inet_sock_set_state``: the TCP state before; else empty
``sport``      ``inet_sock_set_state``: the socket's local port (the server's
               port for the server's side of a connection); else empty
``dport``      ``inet_sock_set_state``: the remote port (for the server's side,
               the client's port: joins to ``events.peer_port``); else empty
=============  ==============================================================

A connection *arrives* when the server's side of it goes ``SYN_RECV`` ->
``ESTABLISHED`` (``sport`` = the server's port): that is the moment it enters
the accept queue and the kernel wakes a waiting worker.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

from .instances import (PREFIX, TracingUnavailable, find_instances, remove_instance,
                        sweep_abandoned, tracefs_root)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRACE_COLUMNS", "TRACE_NULLABLE", "TracingUnavailable", "TracingUnavailableWarning",
           "KernelTrace", "trace_pool", "tracefs_root", "find_instances", "cross_check",
           "agreement"]

TRACE_COLUMNS = ("t_ns", "cpu", "event", "by_tid", "tid", "next_tid", "state", "old_state",
                 "sport", "dport")
TRACE_NULLABLE = ("tid", "next_tid", "sport", "dport")  # integers with gaps: Int64 on reading

_EVENTS = ("sched/sched_wakeup", "sched/sched_switch", "sock/inet_sock_set_state")
_SAME_SOFTIRQ_NS = 200_000  # an arrival and the wakeup it causes: one softirq, microseconds apart
_MAX_THREADS = 64  # a filter is one page of text; 64 threads' switch terms fit well within it

_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<by>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
                   r"(?P<sec>\d+)\.(?P<usec>\d{6}):\s+(?P<event>\w+):\s?(?P<body>.*)$")
_WAKEUP = re.compile(r"\bpid=(?P<tid>\d+)")
_SWITCH = re.compile(r"prev_pid=(?P<tid>\d+) .*prev_state=(?P<state>\S+) ==> .*"
                     r"next_pid=(?P<next>\d+)")
_STATE = re.compile(r"sport=(?P<sport>\d+) dport=(?P<dport>\d+) .*oldstate=TCP_(?P<old>\w+) "
                    r"newstate=TCP_(?P<new>\w+)")


class TracingUnavailableWarning(UserWarning):
    """A run asked for a trace and goes on without one (the message says why)."""


class KernelTrace:
    """A private tracefs instance recording what the kernel did to some threads and one port.

    Use it as ``with KernelTrace(tids=..., port=...) as trace: ...; table = trace.stop()``,
    or call :meth:`start` and :meth:`stop` yourself (``stop`` removes the
    instance; so does ``close``, which is safe to call any number of times).

    Args:
        tids: the thread ids whose wakeups and switches to record (worker
            processes: their pids; worker threads: their native ids).
        port: the TCP port whose connections' state changes to record.
        root: where tracefs is mounted (found by itself when None).
        buffer_kb: ring-buffer size per CPU; what does not fit is dropped and
            counted in :attr:`lost`.
    """

    def __init__(self, *, tids: Iterable[int], port: int, root: str | os.PathLike | None = None,
                 buffer_kb: int = 8192) -> None:
        self.tids = sorted({int(tid) for tid in tids})
        if not self.tids:
            raise ValueError("no thread to trace")
        if len(self.tids) > _MAX_THREADS:
            raise TracingUnavailable(f"{len(self.tids)} threads are more than a tracefs filter "
                                     f"holds here (at most {_MAX_THREADS})")
        self.port = int(port)
        self.root = Path(root) if root is not None else tracefs_root()
        self.buffer_kb = buffer_kb
        self.path: Path | None = None
        self.lost = 0
        self.table: pd.DataFrame | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> "KernelTrace":
        """Create the instance, set clock, buffer, filters and events, and start recording."""
        if self.path is not None:
            raise RuntimeError("this trace has already been started")
        sweep_abandoned(self.root)
        path = self.root / "instances" / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except PermissionError:
            raise TracingUnavailable(f"tracing needs root: cannot create {path}") from None
        except OSError as exc:
            raise TracingUnavailable(f"cannot create a tracefs instance: {exc.strerror}") from None
        self.path = path
        atexit.register(self.close)
        try:
            self._configure(path)
        except BaseException:
            self.close()
            raise
        return self

    def _configure(self, path: Path) -> None:
        for event in _EVENTS:
            if not (path / "events" / event).is_dir():
                raise TracingUnavailable(f"this kernel has no {event.replace('/', ':')} "
                                         f"tracepoint (sock:inet_sock_set_state needs Linux 4.16)")
        clocks = (path / "trace_clock").read_text().replace("[", " ").replace("]", " ").split()
        if "mono" not in clocks:
            raise TracingUnavailable("this kernel's tracefs has no 'mono' trace clock")
        (path / "tracing_on").write_text("0")
        (path / "trace_clock").write_text("mono")
        (path / "buffer_size_kb").write_text(str(self.buffer_kb))
        woken = " || ".join(f"pid == {tid}" for tid in self.tids)
        switched = " || ".join(f"prev_pid == {tid} || next_pid == {tid}" for tid in self.tids)
        filters = {"sched/sched_wakeup": woken, "sched/sched_switch": switched,
                   "sock/inet_sock_set_state": f"sport == {self.port} || dport == {self.port}"}
        for event, expression in filters.items():
            (path / "events" / event / "filter").write_text(expression)
            (path / "events" / event / "enable").write_text("1")
        (path / "tracing_on").write_text("1")

    def mark(self, text: str) -> None:
        """Write ``text`` into the trace (a ``marker`` row), e.g. to check the clock."""
        if self.path is None:
            raise RuntimeError("start the trace first")
        (self.path / "trace_marker").write_text(text)

    def stop(self) -> "pd.DataFrame":
        """Stop recording, read the buffer into the ``trace`` table, remove the instance.

        Returns the table (also kept in :attr:`table`).  Calling it again
        returns the same table.
        """
        if self.table is not None:
            return self.table
        if self.path is None:
            raise RuntimeError("start the trace first")
        try:
            (self.path / "tracing_on").write_text("0")
            text = (self.path / "trace").read_text(errors="replace")
            self.lost = sum(_overrun(stats) for stats in self.path.glob("per_cpu/cpu*/stats"))
        finally:
            self.close()
        self.table = parse_trace(text)
        return self.table

    def close(self) -> None:
        """Remove the instance (and with it its buffer and events); safe to call twice."""
        path, self.path = self.path, None
        atexit.unregister(self.close)
        if path is not None:
            remove_instance(path)

    def __enter__(self) -> "KernelTrace":
        return self.start() if self.path is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path.name if self.path is not None else "not running"
        return f"<KernelTrace {len(self.tids)} threads, port {self.port}, {where}>"


def _overrun(stats: Path) -> int:
    """Events a CPU's ring buffer dropped (its ``overrun:`` line)."""
    for line in stats.read_text().splitlines():
        if line.startswith("overrun:"):
            return int(line.split(":")[1])
    return 0


def parse_trace(text: str) -> "pd.DataFrame":
    """Turn tracefs's text output into the ``trace`` table (columns in :data:`TRACE_COLUMNS`).

    Why text and not the binary ``trace_pipe_raw``: the text format is stable,
    documented per event (``events/*/*/format``) and readable by a learner
    with ``cat``; its microsecond resolution is finer than anything compared here.

    Args:
        text: the contents of an instance's ``trace`` file.
    """
    import pandas as pd

    rows = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or line.startswith("#"):
            continue
        event, body = match["event"], match["body"]
        row: list[Any] = [int(match["sec"]) * 1_000_000_000 + int(match["usec"]) * 1000,
                          int(match["cpu"]), event, int(match["by"]), -1, -1, "", "", -1, -1]
        if event == "sched_wakeup" and (found := _WAKEUP.search(body)):
            row[4] = int(found["tid"])
        elif event == "sched_switch" and (found := _SWITCH.search(body)):
            row[4], row[6], row[5] = int(found["tid"]), found["state"], int(found["next"])
        elif event == "inet_sock_set_state" and (found := _STATE.search(body)):
            row[6], row[7] = found["new"], found["old"]
            row[8], row[9] = int(found["sport"]), int(found["dport"])
        elif event == "tracing_mark_write":
            row[2] = "marker"
        else:
            continue  # an event we did not ask for, or one whose format we do not know
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    frame["t_ns"] = frame["t_ns"].astype("int64")
    for name in TRACE_NULLABLE:
        frame[name] = frame[name].astype("Int64").mask(frame[name] < 0)
    return frame.sort_values("t_ns", kind="stable").reset_index(drop=True)


def trace_pool(pool: Any, *, buffer_kb: int = 8192) -> tuple[KernelTrace | None, str]:
    """Start tracing a started pool's workers and port; or say in one line why not.

    Why it warns instead of raising: a trace is an extra account of a run, and
    a learner without root should still get the run (and can read the
    reference traces in ``data/``).  Returns ``(trace, "recorded")``, or
    ``(None, "unavailable: <reason>")`` after a :class:`TracingUnavailableWarning`.

    Args:
        pool: a started :class:`~acceptlab.server.pool.WorkerPool` (its ``address``
            and its workers' thread ids are used).
        buffer_kb: ring-buffer size per CPU.
    """
    idents = getattr(pool, "idents", None)
    tids = set(idents if idents is not None else pool.pids)
    try:
        tids.update(int(tid) for tid in pool.events()["tid"].unique())
    except (KeyError, OSError):
        pass  # the event log is off: the pool's own list will do
    try:
        return KernelTrace(tids=tids, port=pool.address[1], buffer_kb=buffer_kb).start(), "recorded"
    except TracingUnavailable as exc:
        warnings.warn(f"tracing unavailable: {exc}; the run goes on untraced",
                      TracingUnavailableWarning, stacklevel=2)
        return None, f"unavailable: {exc}"


# -- the two accounts side by side ---------------------------------------------------------
class CrossCheckRow(NamedTuple):
    """One accepted connection in :func:`cross_check`: the kernel's account beside the log's."""

    connection: int  # its place in the accept order
    peer_port: int
    worker: int  # the slot that accepted it
    t_arrival_ns: int
    arrival_from: str  # 'kernel' (ESTABLISHED on the server's side), 'client', or ''
    t_accept_ns: int
    kernel_woken: str  # the slots the kernel woke while they waited, in wake order
    kernel_wakeups: int
    kernel_other: int  # of those, wakeups that were not the arrival's
    kernel_same_waits: int  # the kernel's wakeups of the waits the log charges here
    log_wakeups: Any  # nvcsw summed over the waits that returned here (<NA>: not counted)
    log_returns: int
    log_outcomes: str
    difference: Any  # log_wakeups - kernel_wakeups (<NA> without a count)
    cause: str


CROSS_COLUMNS = CrossCheckRow._fields


class _Spans:
    """Each connection's span of time: from its arrival to the next connection's arrival."""

    def __init__(self, arrivals: list[int]) -> None:
        import numpy as np

        self.order = np.argsort(np.asarray(arrivals, dtype=np.int64), kind="stable")
        self.sorted = np.asarray(arrivals, dtype=np.int64)[self.order]

    def holding(self, times: Any) -> Any:
        """The connection whose span holds each time (-1: before the first arrival)."""
        import numpy as np

        found = np.searchsorted(self.sorted, times, side="right") - 1
        return np.where(found >= 0, self.order[np.clip(found, 0, None)], -1)


def cross_check(run: Any) -> "pd.DataFrame":
    """For each accepted connection, the wakeups the kernel saw against those the event log counted.

    Why: ``nvcsw`` is a user-space proxy for "the kernel woke this worker";
    the trace is the kernel's own account.  Each connection owns the time from
    its arrival (the server side's ``SYN_RECV -> ESTABLISHED``, or, if the
    trace lacks it, the client's ``t_start_ns``) to the next connection's
    arrival.  Within it:

    * ``kernel_woken`` / ``kernel_wakeups``: the worker slots the kernel woke
      (``sched_wakeup``) while they were waiting (inside an event-log wait),
      in wake order, and how many wakeups that was: the herd as the kernel saw it;
    * ``kernel_other``: how many of those were *not* the arrival's: a wakeup
      counts as the arrival's when the task that woke the worker also moved a
      connection of the port to ``ESTABLISHED`` at most 200 us before (the
      same softirq); the others are a lock or the GIL handed over by another
      thread, or a timer;
    * ``log_wakeups``: the ``nvcsw`` summed over the waits that *returned* in
      that time, ``log_returns`` how many waits that was and ``log_outcomes``
      how each ended;
    * ``kernel_same_waits``: the kernel's count for exactly those waits (over
      each wait's whole span);
    * ``difference``: ``log_wakeups - kernel_wakeups``, and ``cause``, a guess
      at why it is not 0.

    The causes: a waiter woken but put back to sleep inside the kernel
    (``epoll``: the connection was gone when it looked) has its wakeup charged
    by the log to whichever connection finally ends that wait (``kernel_same_waits``
    then matches the log but ``kernel_wakeups`` does not); a wakeup that is not
    the listener's (a timeout's timer, the GIL handed over by another thread of
    the process) is counted by both accounts, since both see the thread sleep
    and wake.  Threads other than the workers' (the orphan watchdog of a
    process worker) are outside the trace's filter and outside ``nvcsw`` (a
    per-thread counter), so neither account sees them.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run` with a ``trace`` table.
    """
    import pandas as pd

    trace = getattr(run, "trace", None)
    if trace is None or not len(trace):
        raise ValueError("this run has no kernel trace: record one with trace=True (as root) "
                         "or load a reference trace from data/trace-*")
    events = run.events
    port = int(run.meta["port"])
    slot_of = dict(zip(events["tid"].astype(int), events["worker"].astype(int)))
    accepted = (events[events["outcome"] == "accepted"]
                .sort_values("t_accept_ns", kind="stable").reset_index(drop=True))
    established = trace[(trace["event"] == "inet_sock_set_state") & (trace["sport"] == port)
                        & (trace["state"] == "ESTABLISHED")]
    ports = accepted["peer_port"].astype(int).tolist()
    # Phase 1: when each connection arrived, and so the span of time it owns.
    arrival, source = _arrivals(ports, established, run.client)
    spans = _Spans(arrival)
    # Phase 2: the kernel's account: wakeups of workers inside a wait of the event log.
    waits = events[events["tid"].isin(list(slot_of))].copy()
    woken, other, same_wait = _kernel_account(trace, waits, established, slot_of, spans,
                                              len(ports))
    # Phase 3: the log's account: the waits that returned within each connection's span.
    returned = _returned_waits(waits, same_wait, spans)
    by_connection = returned.groupby("connection")
    log = by_connection["nvcsw"].sum(min_count=1)
    has_gap = by_connection["nvcsw"].apply(lambda column: column.isna().any())
    outcomes = by_connection["outcome"].apply(lambda column: " ".join(map(str, column)))
    returns = by_connection.size()
    # Phase 4: one row per connection, the two accounts side by side.
    rows = []
    for index, row in accepted.iterrows():
        kernel = len(woken[index])
        gap = bool(has_gap.get(index, False))
        counted = log.get(index, 0)
        log_value = pd.NA if gap else (0 if pd.isna(counted) else int(counted))
        same = int(returned.loc[returned["connection"] == index, "same"].sum())
        difference = pd.NA if gap else log_value - kernel
        rows.append(CrossCheckRow(
            connection=index, peer_port=ports[index], worker=int(row["worker"]),
            t_arrival_ns=arrival[index], arrival_from=source[index],
            t_accept_ns=int(row["t_accept_ns"]),
            kernel_woken=" ".join(map(str, woken[index])), kernel_wakeups=kernel,
            kernel_other=other[index], kernel_same_waits=same, log_wakeups=log_value,
            log_returns=int(returns.get(index, 0)), log_outcomes=outcomes.get(index, ""),
            difference=difference, cause=_cause(difference, kernel, same, log_value, gap)))
    frame = pd.DataFrame(rows, columns=list(CROSS_COLUMNS))
    for name in ("log_wakeups", "difference"):
        frame[name] = frame[name].astype("Int64")
    return frame


def _arrivals(ports: list[int], established: "pd.DataFrame",
              client: "pd.DataFrame") -> tuple[list[int], list[str]]:
    """Each connection's arrival: the kernel's ESTABLISHED on the server's side, else the
    client's start (-1 if neither saw it), and which of the two it was."""
    arrived = dict(zip(established["dport"].astype(int), established["t_ns"].astype(int)))
    started = {}
    if len(client):
        known = client.dropna(subset=["local_port"])
        started = dict(zip(known["local_port"].astype(int), known["t_start_ns"].astype(int)))
    arrival = [arrived.get(p, started.get(p, -1)) for p in ports]
    source = ["kernel" if p in arrived else "client" if p in started else "" for p in ports]
    return arrival, source


def _kernel_account(trace: "pd.DataFrame", waits: "pd.DataFrame", established: "pd.DataFrame",
                    slot_of: dict[int, int], spans: _Spans,
                    connections: int) -> tuple[list[list[int]], list[int], Any]:
    """The kernel's wakeups of worker threads while they were inside a wait of the event log.

    Returns, per connection, the slots woken in its span and how many of those
    wakeups were not the arrival's; and, per wait, how many times the kernel woke it.
    """
    import numpy as np

    waits["end"] = waits["t_wake_ns"].fillna(np.iinfo(np.int64).max).astype("int64")
    wakeups = trace[(trace["event"] == "sched_wakeup") & trace["tid"].isin(list(slot_of))]
    inside, same_wait = [], np.zeros(len(waits), dtype=np.int64)
    of_thread = {tid: group for tid, group in waits.groupby("tid")}
    by_waker = {waker: group["t_ns"].astype("int64").to_numpy()
                for waker, group in established.groupby("by_tid")}
    for t_ns, tid, waker in zip(wakeups["t_ns"].astype("int64"), wakeups["tid"].astype(int),
                                wakeups["by_tid"].astype(int)):
        group = of_thread.get(tid)
        if group is None:
            continue
        hit = (group["t_wait_ns"].to_numpy() <= t_ns) & (t_ns <= group["end"].to_numpy())
        if hit.any():
            # The arrival's wakeup: its waker moved a connection to ESTABLISHED just before.
            mine = by_waker.get(waker, np.empty(0, dtype=np.int64))
            by_arrival = bool(((mine <= t_ns) & (mine >= t_ns - _SAME_SOFTIRQ_NS)).any())
            inside.append((t_ns, tid, by_arrival))
            same_wait[waits.index.get_indexer(group.index[hit][:1])[0]] += 1
    woken: list[list[int]] = [[] for _ in range(connections)]
    other = [0] * connections
    if inside:
        times = np.array([t for t, _, _ in inside], dtype=np.int64)
        for connection, (_, tid, by_arrival) in zip(spans.holding(times), inside):
            if connection >= 0:
                woken[connection].append(slot_of[tid])
                other[connection] += not by_arrival
    return woken, other, same_wait


def _returned_waits(waits: "pd.DataFrame", same_wait: Any, spans: _Spans) -> "pd.DataFrame":
    """The waits that returned, each with the kernel's wakeups of it and the connection it ends in."""
    returned = waits[waits["outcome"] != "waiting"].copy()
    returned["same"] = same_wait[waits.index.get_indexer(returned.index)]
    returned["connection"] = spans.holding(returned["t_wake_ns"].astype("int64").to_numpy())
    return returned[returned["connection"] >= 0]


def _cause(difference: Any, kernel: int, same: int, log: Any, gap: bool) -> str:
    """A short reason why the two accounts differ for one connection ('' when they agree)."""
    if gap:
        return "no per-thread nvcsw counter"
    if difference == 0:
        return ""
    if log == same:
        return ("a wakeup charged to another connection: the kernel woke a waiter that went "
                "back to sleep without returning, and the log counts it when that wait returns")
    return "the log's nvcsw and the kernel's wakeups of the same waits differ"


def agreement(runs: Mapping[str, Any] | Iterable[Any]) -> "pd.DataFrame":
    """Per run (label), how often the two accounts of a connection's wakeups agree.

    Columns: ``strategy``, ``kind``, ``connections`` (accepted and checked),
    ``exact`` (share with ``difference == 0``), ``within_one`` (share with
    ``|difference| <= 1``), ``kernel_per_connection`` and ``log_per_connection``
    (mean wakeups per connection by each account), ``other_per_connection``
    (mean wakeups per connection that were not the arrival's: a lock, the GIL,
    a timer; see :func:`cross_check`), ``one_wakeup`` (share of
    connections the kernel woke exactly one waiting worker for), and
    ``same_waits_exact``: share of connections whose ``log_wakeups`` equals
    the kernel's count for the *same waits* (``kernel_same_waits``): the
    proxy judged wait by wait, without the question of which connection a
    wakeup is charged to.

    Args:
        runs: runs with a ``trace`` table, as a mapping label -> run or a list.
    """
    import pandas as pd

    items = runs.items() if isinstance(runs, Mapping) else ((run.label, run) for run in runs)
    rows = {}
    for label, run in items:
        cross = cross_check(run)
        known = cross.dropna(subset=["difference"])
        difference = known["difference"].astype(int)
        rows[label] = {
            "strategy": run.meta.get("strategy"), "kind": run.meta.get("kind"),
            "connections": len(cross),
            "exact": float((difference == 0).mean()) if len(known) else float("nan"),
            "within_one": float((difference.abs() <= 1).mean()) if len(known) else float("nan"),
            "kernel_per_connection": float(cross["kernel_wakeups"].mean()),
            "log_per_connection": float(known["log_wakeups"].astype(float).mean()),
            "other_per_connection": float(cross["kernel_other"].mean()),
            "one_wakeup": float((cross["kernel_wakeups"] == 1).mean()),
            "same_waits_exact": float((known["log_wakeups"] == known["kernel_same_waits"]).mean())
            if len(known) else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
