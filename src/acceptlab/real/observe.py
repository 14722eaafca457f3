"""Fire the kit's load at any running server and attribute every connection to its worker.

Why: the kit's own workers log who accepted what; gunicorn, uvicorn, nginx or
Node do not, and their maintainers answer "the kernel decides" without data.
From outside, without the server's help, the answer is still there: while the
client holds a connection open, the server's side of it is a socket with an
inode, and exactly one worker process has a descriptor on that inode.

How one connection is attributed (:class:`Attributor`): the kit asks the
kernel's ``sock_diag`` table for the server's side of this very connection
(looked up by its four addresses; about ten microseconds), and the worker
whose ``/proc/PID/fd`` holds that socket's inode is the one.  The look-up has
to happen while the server still holds its side, and when depends on the
server (``attribution``, chosen by one unrecorded trial connection first):

* ``after-reply``, for a server that keeps a connection open after
  answering (zen and lancelot always do until the client closes; nginx,
  uvicorn, Node and gunicorn's gthread worker do for an HTTP/1.1 request,
  so this client asks in HTTP/1.1 and reads the reply by its
  ``Content-Length``): converse as any client would, then look once before
  closing.  The server answers without delay; the price is the close, which
  it now sees while waiting for a next request (one more wakeup).
* ``before-request``, for a server that closes as soon as it has answered
  (gunicorn's sync worker, the kit's own ``http`` server, both HTTP/1.0):
  connect, then hold the request back and look, backing off from 20 µs to
  1 ms while the socket's inode is 0 (still in the accept queue), until a
  worker has accepted it; only then send.  A worker that reads at once
  after accept() sleeps once more than it would have, and the look-ups cost
  the client several times what ``after-reply``'s one does.
* ``first-byte``, for a server that closes after answering *and* whose
  listener defers accepts (``TCP_DEFER_ACCEPT``, uWSGI's default: no worker
  gets a connection before its data): send the request's first byte, then
  look as ``before-request`` does, then send the rest
  (:mod:`acceptlab.real.attribution`).

When none of the first few connections can be attributed (the wrong
attribution forced, pids that are not the server's), the run stops there with
one line saying why (:class:`acceptlab.real.attribution.CannotAttribute`).

Either way the server does a little more than for a plain client, so
:func:`observe` also fires the same load a second time with the plain
client (:func:`acceptlab.client.load.fire`), no attribution, and records the
context switches and latency of that unobserved pass beside the observed
ones (``meta["baseline"]``).  Where an HTTP reply names a pid (``pid
4242``: the kit's real servers and its own ``http`` server do), the two are
compared.

The result is a :class:`~acceptlab.lab.experiment.Run` like any other:
``events`` has one ``accepted`` row per attributed connection (``worker`` is
the index of the worker's pid in ``meta["worker_pids"]``) and one ``waiting`` row
per worker at the end carrying that worker's voluntary context switches over
the run (summed over its threads: the herd, seen from outside); ``client``,
``queue`` (every listener on the port, from ``/proc``) and ``meta`` (with the
inspection, coverage and pid cross-check) as usual.  What is not known from
outside is said in the columns: ``t_wait_ns``, ``t_wake_ns`` and
``t_accept_ns`` are all the moment the socket was seen in the worker (the
accept happened before: by at most one poll interval for ``before-request``,
by the reply's round trip for ``after-reply``), ``tid`` is the
worker's pid (the thread is not visible in its descriptors), and the per
connection ``nvcsw`` is ``<NA>``.

Threads of one process cannot be told apart this way (they share their
descriptors): a pool of threads is one worker here.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import analysis
from ..server import eventlog
from ..linux import procfs
from ..basics import missing_as_na, now
from ..client.conversation import PROBE_WAIT, ClientConversation, error_name
from ..server.conversation import RECV_SIZE
from ..lab.experiment import Run, machine
from ..linux.kernel import QUEUE_COLUMNS
from ..client.load import fire
from ..client.records import CLIENT_COLUMNS, CLIENT_NULLABLE, ConnectionRecord, ProtocolMismatch
from ..client.threads import client_socket
from ..server.protocol import get_protocol
from ..specs import LoadSpec, build_specs
from .topology import Topology, settled_topology
from .attribution import FIRST_BYTE, ConfirmedLook, Watch, defer_accept, listener_defers

__all__ = ["Attributor", "observe", "coverage", "reply_pid", "ATTRIBUTIONS"]

ATTRIBUTIONS = ("auto", "after-reply", "before-request", FIRST_BYTE)
"""When a connection is attributed (see the module's docstring); ``auto`` lets a trial decide."""

_log = logging.getLogger(__name__)
_PID_IN_REPLY = re.compile(rb"\bpid[ =:]*(\d+)")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def reply_pid(reply: bytes) -> int | None:
    """The process id a reply names (``pid 4242``, or the kit's ``(pid 4242, thread ...)``)."""
    match = _PID_IN_REPLY.search(reply)
    return int(match.group(1)) if match else None


class Attributor:
    """Find the worker process that holds the server's side of a client's connection.

    One ``sock_diag`` netlink socket per client thread (a netlink socket
    answers one question at a time); :meth:`close` closes them all.
    """

    def __init__(self, workers: list[int], server: tuple[str, int]) -> None:
        self.workers = list(workers)
        self.server = server
        self._local = threading.local()
        self._opened: list[procfs.SockDiag] = []
        self._lock = threading.Lock()
        self._hints: dict[int, str] = {}  # worker pid -> descriptor of its last connection

    def _diag(self) -> procfs.SockDiag:
        diag = getattr(self._local, "diag", None)
        if diag is None:
            diag = self._local.diag = procfs.SockDiag()
            with self._lock:
                self._opened.append(diag)
        return diag

    def holder(self, inode: int) -> int | None:
        """The worker pid with a descriptor on socket ``inode``, or None.

        A server usually gives each new connection the descriptor number its
        last one had (the lowest free), so the descriptor where each worker's
        previous connection was found is tried first: one ``stat`` per worker
        instead of one per descriptor.  Only when that misses are all the
        workers' descriptors listed.
        """
        hints = self._hints
        for pid, name in list(hints.items()):
            if self._holds(pid, name, inode):
                return pid
        for pid in self.workers:
            try:
                names = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for name in names:
                if name != hints.get(pid) and self._holds(pid, name, inode):
                    hints[pid] = name
                    return pid
        return None

    @staticmethod
    def _holds(pid: int, name: str, inode: int) -> bool:
        try:
            return os.stat(f"/proc/{pid}/fd/{name}").st_ino == inode
        except OSError:  # closed meanwhile
            return False

    def attribute(self, client: tuple[str, int], *, deadline: float) -> tuple[int | None, int]:
        """Wait (until ``deadline``, monotonic seconds) for a worker to accept; return its pid.

        Returns ``(pid, seen_ns)``: ``seen_ns`` is when the socket was first
        seen in the worker; ``(None, -1)`` if no worker held it in time.

        Args:
            client: the client's own address (``sock.getsockname()[:2]``).
            deadline: when to give up.
        """
        pause = 20e-6
        diag = self._diag()
        while True:
            found = self._local.last = diag.find(self.server, client[:2])
            if found is not None and found.inode:
                pid = self.holder(found.inode)
                if pid is not None:
                    return pid, now()
            if time.monotonic() >= deadline:
                return None, -1
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def last_seen(self) -> procfs.DiagSocket | None:
        """What this thread's last look found of the server's side (None: nothing, or no look)."""
        return getattr(self._local, "last", None)

    def look(self, client: tuple[str, int]) -> tuple[int | None, int]:
        """One look, no waiting: :meth:`attribute` for a connection already answered."""
        return self.attribute(client, deadline=0.0)

    def close(self) -> None:
        with self._lock:
            for diag in self._opened:
                diag.close()
            self._opened.clear()


@dataclass
class _Observed:
    """One connection as observed: the client's record, who held it, and what the reply said."""

    record: ConnectionRecord
    holder: int | None = None
    seen_ns: int = -1
    named: int | None = None


def _one_connection(address: tuple[str, int], protocol, conn: int, attributor: Attributor,
                    timeout: float, after: bool, first_byte: bool = False) -> _Observed:
    """One connection, attributed ``after`` the reply (one look) or before the request
    (after its ``first_byte``, for a listener that defers accepts).

    The conversation's rules (framing, checks, protocol mismatch, size limit)
    are :class:`~acceptlab.client.conversation.ClientConversation`'s, as for
    the kit's load; this engine only adds the look-up, and for ``after`` asks
    the conversation to leave the connection open (``keep_alive``).
    """
    observed = _Observed(ConnectionRecord(conn, t_start_ns=now()))
    record, received = observed.record, []
    conversation = ClientConversation(protocol, keep_alive=after)
    sock = client_socket(address, conversation)
    if sock is not None:
        with sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
                record.t_connected_ns = now()
                client = sock.getsockname()
                record.local_port = client[1]
                outgoing = conversation.start()
                if first_byte:  # a deferring listener hands the connection over on data
                    sock.sendall(outgoing[:1])
                    outgoing = outgoing[1:]
                if not after:  # hold the request back until a worker holds the connection
                    observed.holder, observed.seen_ns = attributor.attribute(
                        client, deadline=time.monotonic() + timeout)
                while not conversation.ended:
                    if outgoing:
                        sock.sendall(outgoing)
                    try:
                        data = sock.recv(RECV_SIZE)
                    except TimeoutError:  # a probe to send (and a short wait for it), or the end
                        outgoing = conversation.timed_out()
                        sock.settimeout(PROBE_WAIT)
                        continue
                    received.append(data)
                    outgoing = conversation.receive(data)
                    if record.t_reply_ns < 0 and conversation.replies:
                        record.t_reply_ns = now()
                if after and conversation.held_open:  # answered and still held: one look
                    observed.holder, observed.seen_ns = attributor.look(client)
            except OSError as exc:
                conversation.fail(error_name(exc))
    record.ok, record.error = not conversation.error, conversation.error
    if conversation.error == "mismatch":
        record.mismatch = (conversation.received, conversation.likely)
    if record.ok:
        observed.named = reply_pid(b"".join(received[-2:]))  # the pid is in the last reply
    record.t_done_ns = now()
    return observed


def _choose_attribution(address: tuple[str, int], protocol, attributor: Attributor,
                        timeout: float, deferred=lambda: False) -> str:
    """``after-reply`` if a trial connection is still held by a worker after its reply.

    The trial is a connection like the load's, asking the server to keep it
    open, looked at twice 50 ms apart (one look can land between a reply and
    the close: :class:`~acceptlab.real.attribution.ConfirmedLook`); it is not
    recorded.  A server that closes (or errs) gets ``before-request``, or
    ``first-byte`` if ``deferred()`` says its listener defers accepts (no
    worker holds a connection before its data).
    """
    trial = _one_connection(address, protocol, -1, ConfirmedLook(attributor), timeout, after=True)
    if trial.holder is not None:
        return "after-reply"
    return FIRST_BYTE if deferred() else "before-request"


def _drive(run_one, *, connections: int, concurrency: int, rate: float | None, duration: float,
           gap: float, seed: int | None, halt: threading.Event | None = None) -> list[_Observed]:
    """Run ``run_one(conn)`` as a closed loop of ``concurrency`` threads or, with ``rate``, as
    Poisson arrivals (a thread each, at most 256 at once); stop after ``duration`` seconds,
    or once ``halt`` is set."""
    out: list[_Observed] = []
    stop_at = time.monotonic() + duration
    halt = halt or threading.Event()
    numbers = iter(range(connections))
    if rate:
        pace, slots, threads = random.Random(seed), threading.BoundedSemaphore(256), []
        start = time.monotonic()

        def arrival(conn: int) -> None:
            try:
                out.append(run_one(conn))
            finally:
                slots.release()

        for conn in numbers:
            start += pace.expovariate(rate)
            time.sleep(max(0.0, start - time.monotonic()))
            if time.monotonic() >= stop_at or halt.is_set():
                break
            slots.acquire()
            threads.append(threading.Thread(target=arrival, args=(conn,), daemon=True))
            threads[-1].start()
    else:
        def client_loop() -> None:
            for conn in numbers:  # next() on a range iterator is atomic under the GIL
                if time.monotonic() >= stop_at or halt.is_set():
                    return
                out.append(run_one(conn))
                if gap:
                    time.sleep(gap)

        threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join()
    return out


def _switches(workers: list[int]) -> dict[tuple[int, int], int]:
    """Voluntary context switches of every thread of every worker, now."""
    counts = {}
    for pid in workers:
        try:
            tids = procfs.thread_ids(pid)
        except OSError:
            continue
        for tid in tids:
            try:
                counts[(pid, tid)] = procfs.voluntary_switches(pid, tid)
            except (OSError, KeyError, ValueError):
                continue
    return counts


def _per_worker_delta(before: dict, after: dict, workers: list[int]) -> dict[int, int]:
    """Switches per worker process between two snapshots (threads born meanwhile count from 0)."""
    totals = {pid: 0 for pid in workers}
    for (pid, tid), count in after.items():
        totals[pid] += count - before.get((pid, tid), 0)
    return totals


def coverage(run: Run) -> dict:
    """How much of an observed run was attributed, and how the reply's pid agreed.

    Keys: ``connections`` (client rows), ``attributed``, ``coverage``
    (attributed / connections), ``named`` (replies naming a pid),
    ``agree``, ``disagree`` (attribution and reply pid differ).
    """
    return dict(run.meta.get("coverage", {}))


def _pick_port(found: Topology, port: int | None) -> int:
    ports = sorted({listener.port for listener in found.listeners})
    if port is not None:
        if ports and port not in ports:
            raise ValueError(f"process {found.pid} does not listen on port {port} "
                             f"(it listens on {', '.join(map(str, ports))})")
        return port
    if len(ports) != 1:
        raise ValueError(f"process {found.pid} listens on "
                         f"{', '.join(map(str, ports)) or 'no port we can see'}: pass port=")
    return ports[0]


def observe(pid: int, load: LoadSpec | None = None, *, port: int | None = None,
            host: str = "127.0.0.1", baseline: bool = True, queue_interval: float = 0.005,
            label: str | None = None, server: dict | None = None, attribution: str = "auto",
            **shortcuts: Any) -> Run:
    """Fire a load at the running server ``pid`` and attribute each connection to its worker.

    Inspects the server first (:func:`acceptlab.real.topology.topology`), then
    runs the attributed load while sampling the port's accept queues, then
    (with ``baseline``) the same load unobserved.  See the module's docstring
    for how attribution works and what each table holds.

    Args:
        pid: any process of the server: its master, its only process, or a
            worker (the inspection finds the whole server from it, and says so
            in ``meta["inspection"]["found_from"]`` and the log).
        load: the load (:class:`~acceptlab.specs.LoadSpec`; ``http`` by default),
            from one client process without retries.
        port: the port to load; found from the inspection if the server
            listens on exactly one.
        host: the loopback address the server listens on (127.0.0.1, ::1 or
            localhost).
        baseline: also fire the same load without attribution, to record
            switches and latency unobserved in ``meta["baseline"]``.
        queue_interval: seconds between accept-queue samples.
        label: the run's name (default: the server's matched strategy).
        server: facts about the server to keep in ``meta`` (a
            :meth:`acceptlab.real.servers.RealServer.meta`).
        attribution: ``after-reply``, ``before-request``, ``first-byte`` (see
            the module's docstring) or ``auto``: one trial connection first, not
            recorded, tells whether the server keeps a connection open after
            answering, and the listener's ``TCP_DEFER_ACCEPT`` whether a
            worker can hold one before its data.
        **shortcuts: fields of ``LoadSpec`` replacing those of ``load``.

    Raises:
        CannotAttribute: none of the first few connections could be attributed
            (:mod:`acceptlab.real.attribution`; the message says why).
    """
    _, load, _ = build_specs(None, load or LoadSpec(protocol="http"), caller="observe",
                             only=(LoadSpec,), **shortcuts)
    if load.connections < 1:
        raise ValueError(f"connections={load.connections}: observe needs at least 1")
    if load.processes != 1 or load.retries:
        raise ValueError(f"processes={load.processes}, retries={load.retries}: observe fires "
                         f"from one client process without retries")
    protocol, timeout = load.protocol, load.timeout
    chosen = get_protocol(protocol)
    if attribution not in ATTRIBUTIONS:
        raise ValueError(f"attribution is one of {', '.join(ATTRIBUTIONS)}, not {attribution!r}")
    if host not in _LOOPBACK:
        raise ValueError(f"{host} is not a loopback address: the kit only loads this machine")
    host = "127.0.0.1" if host == "localhost" else host
    found = settled_topology(pid)
    if found.found_from:
        _log.info("observing the whole server: %s", found.found_from)
    port = _pick_port(found, port)
    workers = found.workers
    hidden = [item for item in found.unreadable
              if any(item.startswith(f"/proc/{worker}/fd") for worker in workers)]
    if hidden:  # no descriptors, no attribution: say so instead of reporting 0 % coverage
        raise PermissionError(f"cannot attribute connections: {hidden[0]} (another user's "
                              "process? run observe as that user or as root)")
    address = (host, port)
    attributor = Attributor(workers, address)
    if attribution == "auto":
        try:
            attribution = _choose_attribution(
                address, chosen, attributor, timeout,
                deferred=lambda: listener_defers(found, address))
        except BaseException:
            attributor.close()
            raise
    after_reply = attribution == "after-reply"
    first_byte = attribution == FIRST_BYTE
    watch = Watch(attributor, attribution)
    started, wall = now(), time.time()
    sampler, queue_note = _start_queue_sampler(port, queue_interval)
    before = _switches(workers)
    try:
        observed = _drive(watch.wrap(lambda conn: _one_connection(
                              address, chosen, conn, attributor, timeout, after_reply,
                              first_byte)),
                          connections=load.connections, concurrency=load.concurrency,
                          rate=load.rate, duration=load.duration, gap=load.gap, seed=load.seed,
                          halt=watch.halt)
    finally:
        attributor.close()
        if sampler is not None:
            sampler.stop()
    after = _switches(workers)
    ended = now()
    observed.sort(key=lambda item: item.record.t_start_ns)
    for item in observed:  # as fire() does: every connection would fail the same way
        if item.record.mismatch is not None:
            raise ProtocolMismatch(address, protocol, *item.record.mismatch)
    watch.check()  # none of the first few attributed: one line why, not a run of nothing
    strategy = found.strategy or ""
    name = label or f"{(server or {}).get('server', strategy or 'server')}"
    events = _events(observed, workers, _per_worker_delta(before, after, workers), name,
                     strategy, ended)
    client = _client_table(observed, workers)
    queue = sampler.to_frame() if sampler is not None else pd.DataFrame(columns=QUEUE_COLUMNS)
    meta = {**machine(), "label": name, "observed": True, "strategy": strategy, "kind": "process",
            "workers": len(workers), "worker_pids": workers, "pid": pid, "port": port,
            "load": load.as_dict(), "attribution": attribution, "started": wall,
            "seconds": (ended - started) / 1e9, "defer_accept": defer_accept(found, port),
            "queue": queue_note,
            "inspection": found.to_json(), "prediction": found.prediction,
            "coverage": _coverage(observed, workers),
            "threads": [{"pid": p, "tid": t, "switches": after[(p, t)] - before.get((p, t), 0)}
                        for (p, t) in sorted(after)],
            **({"server": server} if server else {})}
    if baseline:
        meta["baseline"] = _baseline(address, workers, load)
    return Run(events, client, queue, meta)


class _ListenerSampler:
    """Every listener on ``port``: queue length and backlog every ``interval`` s, via sock_diag.

    Why not :class:`acceptlab.linux.kernel.QueueSampler`: it reads ``/proc/net/tcp``,
    which formats every TCP socket of the machine; after a few loads that is
    100,000 TIME_WAIT rows and most of a second per sample.  A ``sock_diag``
    dump of listeners only takes well under a millisecond.  Rows as
    ``QUEUE_COLUMNS``, ``socket`` named ``inode:N``.
    """

    def __init__(self, port: int, interval: float, max_rows: int = 1_000_000) -> None:
        self.port, self.interval, self.max_rows = port, interval, max_rows
        self.rows: list[tuple[int, str, int, int]] = []
        self._stopping = threading.Event()
        self._diag = procfs.SockDiag()
        self._thread = threading.Thread(target=self._run, name="acceptlab-observe-queue",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set() and len(self.rows) < self.max_rows:
            moment = now()
            self.rows += [(moment, f"inode:{entry.inode}", entry.queue, entry.backlog)
                          for entry in self._diag.listeners(port=self.port)]
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._diag.close()

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=list(QUEUE_COLUMNS))
        return frame.astype({"t_ns": "int64", "socket": "str", "queue_len": "int64",
                             "backlog": "Int64"})


def _start_queue_sampler(port: int, interval: float) -> tuple[_ListenerSampler | None, str]:
    try:
        return _ListenerSampler(port, interval), "sampled with sock_diag"
    except OSError as exc:
        return None, f"unavailable: {exc.strerror or exc}"


def _events(observed: list[_Observed], workers: list[int], switches: dict[int, int], name: str,
            strategy: str, ended: int) -> pd.DataFrame:
    """One ``accepted`` row per attributed connection, one ``waiting`` row per worker at the end."""
    index = {pid: slot for slot, pid in enumerate(workers)}
    seq = itertools.count()
    rows = []
    for item in sorted((o for o in observed if o.holder is not None), key=lambda o: o.seen_ns):
        rows.append((name, index[item.holder], 0, item.holder, item.holder, "process", strategy,
                     next(seq), item.seen_ns, item.seen_ns, item.seen_ns, item.record.t_done_ns,
                     "accepted", item.record.local_port, -1))
    for pid in workers:  # the switches over the whole run, not owed to any one connection
        rows.append((name, index[pid], 0, pid, pid, "process", strategy, next(seq), ended, -1, -1,
                     -1, "waiting", -1, switches.get(pid, 0)))
    frame = pd.DataFrame(rows, columns=list(eventlog.COLUMNS))
    frame["outcome"] = pd.Categorical(frame["outcome"], eventlog.OUTCOMES)
    return missing_as_na(frame, eventlog.NULLABLE)


def _client_table(observed: list[_Observed], workers: list[int]) -> pd.DataFrame:
    """The client rows; ``worker`` is the slot of the pid the reply named (if it named one)."""
    index = {pid: slot for slot, pid in enumerate(workers)}
    for item in observed:
        item.record.worker = index.get(item.named, -1) if item.named is not None else -1
    rows = [tuple(getattr(item.record, column) for column in CLIENT_COLUMNS) for item in observed]
    return missing_as_na(pd.DataFrame(rows, columns=list(CLIENT_COLUMNS)), CLIENT_NULLABLE)


def _coverage(observed: list[_Observed], workers: list[int]) -> dict:
    """``named`` counts every reply that named a pid; ``agree``/``disagree``: those attributed."""
    attributed = sum(item.holder is not None for item in observed)
    named = sum(item.named is not None for item in observed)
    both = [item for item in observed if item.named is not None and item.holder is not None]
    agree = sum(item.named == item.holder for item in both)
    return {"connections": len(observed), "ok": sum(item.record.ok for item in observed),
            "attributed": attributed,
            "coverage": attributed / len(observed) if observed else float("nan"),
            "named": named, "agree": agree, "disagree": len(both) - agree}


def _baseline(address: tuple[str, int], workers: list[int], load: LoadSpec) -> dict:
    """The same load with the plain client: switches per connection and latency, unobserved."""
    before = _switches(workers)
    client = fire(address, load)
    after = _switches(workers)
    per_worker = _per_worker_delta(before, after, workers)
    ok = int(client["ok"].sum())
    times = analysis.latency(client).iloc[0]
    return {"connections": len(client), "ok": ok,
            "switches": per_worker,
            "switches_per_connection": sum(per_worker.values()) / ok if ok else float("nan"),
            "p50_ms": float(times["p50_ms"]), "p99_ms": float(times["p99_ms"])}
