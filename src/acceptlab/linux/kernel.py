"""What Linux lets us see: accept-queue depth, context switches, feature detection.

Theory of operation
-------------------
A listening socket owns an *accept queue*: connections whose three-way
handshake the kernel has already completed, waiting for some worker to call
``accept()``.  The workers never see this queue, but Linux shows it two ways:

* ``getsockopt(IPPROTO_TCP, TCP_INFO)`` on a socket we hold
  (:func:`accept_queue`), which also gives the backlog limit;
* ``/proc/net/tcp`` and ``/proc/net/tcp6``, which list every socket in this
  network namespace, including the ``SO_REUSEPORT`` sockets that live in
  other processes (:func:`listen_queues`).  ``ss -lnt`` reads the same numbers
  (its Recv-Q and Send-Q columns).

:class:`QueueSampler` reads either one every few milliseconds in a background
thread, so a run can plot how the queue grew and drained.

Whether a worker was really *woken* is a different question: the per-thread
count of voluntary context switches answers it (:func:`voluntary_switches`),
including the wakeups whose ``accept()`` then failed with EAGAIN.

Which of these this machine offers is :mod:`acceptlab.linux.support`'s question
(``acceptlab doctor``); this module only measures.

Nothing here is portable: off Linux the functions raise :class:`Unsupported`
with a reason a learner can read, so a caller can report "unavailable" instead
of plotting zeros.  This module imports nothing from the rest of acceptlab.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Unsupported",
    "QueueDepth",
    "accept_queue",
    "ListenQueue",
    "listen_queues",
    "QUEUE_COLUMNS",
    "QueueSampler",
    "voluntary_switches",
]


class Unsupported(RuntimeError):
    """This platform cannot show what was asked; the message says why, in one line."""


def _is_linux() -> bool:
    return sys.platform.startswith("linux")


def _require_linux(what: str) -> None:
    if not _is_linux():
        raise Unsupported(f"{what} is Linux-only; this is {sys.platform}")


# --------------------------------------------------------------------------
# Accept-queue depth of a socket we hold: TCP_INFO
# --------------------------------------------------------------------------

# struct tcp_info (include/uapi/linux/tcp.h) starts with eight one-byte fields
# (tcpi_state at offset 0, then ca_state, retransmits, probes, backoff,
# options and two bytes of bit-fields), followed by u32 fields: rto (8),
# ato (12), snd_mss (16), rcv_mss (20), unacked (24), sacked (28).
# A listener has no data in flight, so tcp_get_info() in net/ipv4/tcp.c
# reuses two of them: tcpi_unacked = sk_ack_backlog (connections waiting for
# accept) and tcpi_sacked = sk_max_ack_backlog (the backlog given to listen(),
# capped by net.core.somaxconn).  The kernel writes them in host byte order.
_TCP_INFO = getattr(socket, "TCP_INFO", 11)  # 11 is Linux's number for it
_TCP_INFO_LEN = 104  # the kernel copies min(asked, what it has); we need 32
_TCPI_STATE = 0
_TCPI_UNACKED = 24  # tcpi_sacked follows at 28
_TCP_LISTEN = 10  # enum in include/net/tcp_states.h; 0A in /proc/net/tcp


@dataclass(frozen=True)
class QueueDepth:
    """One reading of a listener's accept queue.

    ``queue_len``: handshakes completed, not yet accepted.  ``backlog``: the
    limit.  Linux treats the queue as full only when ``queue_len`` *exceeds*
    ``backlog``, so a listener can hold ``backlog + 1`` connections; the next
    client's SYN is dropped and its connect() retries after a second or more.
    """

    queue_len: int
    backlog: int


def accept_queue(sock: socket.socket) -> QueueDepth:
    """How many connections wait in ``sock``'s accept queue, and the limit.

    What it shows a learner: connections exist before any worker accepts
    them.  Connect three clients to a listener nobody accepts on and this says
    3, because the kernel finished their handshakes on its own.

    Where the number comes from: ``getsockopt(IPPROTO_TCP, TCP_INFO)``;
    for a *listening* socket Linux puts the queue length in ``tcpi_unacked``
    and the backlog in ``tcpi_sacked`` (see the comment above this function
    in the source).  ``ss -lnt`` shows the same pair as Recv-Q / Send-Q.

    When it fails: :class:`Unsupported` off Linux (macOS has no such view of
    a listener); ``ValueError`` if ``sock`` is not listening, since those two
    fields then mean something else; ``OSError`` if the socket is closed.

    Args:
        sock: a listening TCP socket this process holds.
    """
    _require_linux("TCP_INFO on a listening socket")
    if sock.fileno() < 0:
        raise OSError(errno.EBADF, "the socket is closed")
    info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LEN)
    if len(info) < _TCPI_UNACKED + 8:
        raise Unsupported(f"TCP_INFO returned only {len(info)} bytes; this kernel is too old")
    if info[_TCPI_STATE] != _TCP_LISTEN:
        raise ValueError(
            f"socket is not listening (TCP state {info[_TCPI_STATE]}, LISTEN is {_TCP_LISTEN}); "
            "call listen() first"
        )
    queue_len, backlog = struct.unpack_from("=II", info, _TCPI_UNACKED)
    return QueueDepth(queue_len=queue_len, backlog=backlog)


# --------------------------------------------------------------------------
# Accept queues of every listener on a port, whoever holds it: /proc/net/tcp
# --------------------------------------------------------------------------

_PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


@dataclass(frozen=True)
class ListenQueue:
    """One listening socket as ``/proc/net/tcp`` shows it.

    ``inode`` names the socket machine-wide (``os.fstat(sock.fileno()).st_ino``
    of the owner's socket is the same number); ``local`` is "address:port";
    ``backlog`` is None because /proc does not publish it.
    """

    inode: int
    local: str
    queue_len: int
    backlog: int | None


def _decode_address(hex_addr: str) -> str:
    # /proc prints the address as 32-bit words in the kernel's byte order,
    # so on a little-endian machine 127.0.0.1 reads "0100007F".
    words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    raw = struct.pack(f"={len(words)}I", *words)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]"


def listen_queues(port: int) -> list[ListenQueue]:
    """Every socket listening on local ``port``, with its accept-queue length.

    What it shows a learner: with ``SO_REUSEPORT`` each worker binds its own
    socket, so there is one queue per worker, and a supervisor in another
    process can still watch them all.  With one shared socket there is one row.

    Where the number comes from: ``/proc/net/tcp`` and ``/proc/net/tcp6``,
    one line per socket; state ``0A`` is LISTEN, and for a listener the
    ``rx_queue`` column is ``sk_ack_backlog``, the same count TCP_INFO gives
    (get_tcp4_sock in net/ipv4/tcp_ipv4.c).  ``backlog`` is always None here:
    /proc does not print the limit (``tx_queue`` is 0 for a listener); use
    :func:`accept_queue` on a socket you hold, or ``ss -lnt``, for that.
    Connections waiting in a queue appear in the same file as ESTABLISHED
    lines with inode 0: no process has a file for them until accept().

    Rows come in file order (IPv4 first).  Only this network namespace is
    visible, so workers in another container do not appear.

    When it fails: :class:`Unsupported` off Linux, or when ``/proc/net/tcp``
    cannot be read (a sandbox without /proc).  A missing ``tcp6`` (IPv6
    disabled) is simply skipped.

    Args:
        port: the local port to look for.
    """
    _require_linux("/proc/net/tcp")
    wanted = f"{port:04X}"
    found: list[ListenQueue] = []
    for path in _PROC_TABLES:
        try:
            with open(path) as table:
                lines = table.readlines()[1:]  # the first line is the header
        except OSError as exc:
            if path.endswith("6"):
                continue
            raise Unsupported(f"cannot read {path}: {exc.strerror}") from exc
        for line in lines:
            fields = line.split()
            # fields: sl, local, remote, st, tx_queue:rx_queue, tr:tm->when,
            # retrnsmt, uid, timeout, inode, ...
            if len(fields) < 10 or fields[3] != "0A":
                continue
            address, _, hex_port = fields[1].partition(":")
            if hex_port != wanted:
                continue
            rx_queue = int(fields[4].partition(":")[2], 16)
            found.append(
                ListenQueue(
                    inode=int(fields[9]),
                    local=f"{_decode_address(address)}:{port}",
                    queue_len=rx_queue,
                    backlog=None,
                )
            )
    return found


# --------------------------------------------------------------------------
# Watching the queues over time
# --------------------------------------------------------------------------

QUEUE_COLUMNS = ("t_ns", "socket", "queue_len", "backlog")


class QueueSampler:
    """Record accept-queue depth every ``interval`` seconds in a daemon thread.

    Give it the sockets you hold (read with :func:`accept_queue`, so the
    backlog is known), a ``port`` (read from /proc with :func:`listen_queues`,
    so sockets in worker processes are seen too), or both.  Each sample
    writes one row per listening socket: ``t_ns`` (``time.monotonic_ns()``,
    one value for all rows of a sample), ``socket`` ("shared" for the one
    socket handed in, "shared:0", "shared:1", ... if several, "inode:N" for a
    socket found in /proc), ``queue_len`` and ``backlog``.  A socket that is
    both handed in and found in /proc is recorded once, as "shared".

    Use::

        with QueueSampler(sockets=[listener]) as sampler:
            ...  # drive load
        frame = sampler.to_frame()

    Resource handling: the thread is a daemon and the sampler is bounded.
    It stops on :meth:`stop`, after ``max_seconds``, after ``max_rows`` rows
    (then ``truncated`` is True), or, quietly, as soon as a socket handed in
    is closed.  ``stop_reason`` says which.  The sampler never closes a socket.

    Error handling: :meth:`start` raises :class:`Unsupported` off Linux, and
    ``ValueError``/``OSError`` if a socket handed in is not a listener;
    after that nothing is raised in the thread.

    Cost: a TCP_INFO read is one system call; a /proc read formats every TCP
    socket of the machine, so on a busy host prefer a longer interval.

    Args:
        sockets: listening sockets this process holds.
        port: a port whose listeners, in any process, are read from /proc.
        interval: seconds between samples.
        max_seconds: stop sampling after this long.
        max_rows: stop after this many rows (``truncated`` then says so).
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket] = (),
        port: int | None = None,
        *,
        interval: float = 0.005,
        max_seconds: float = 600.0,
        max_rows: int = 1_000_000,
    ) -> None:
        if not sockets and port is None:
            raise ValueError("give QueueSampler some sockets, a port, or both")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.sockets = list(sockets)
        self.port = port
        self.interval = interval
        self.max_seconds = max_seconds
        self.max_rows = max_rows
        self.truncated = False
        self.stop_reason: str | None = None
        if len(self.sockets) == 1:
            self._names = ["shared"]
        else:
            self._names = [f"shared:{i}" for i in range(len(self.sockets))]
        self._rows: list[tuple[int, str, int, int | None]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_inodes: set[int] = set()

    def start(self) -> QueueSampler:
        """Check every socket once, then start sampling; returns self."""
        if self._thread is not None:
            raise RuntimeError("this QueueSampler was already started")
        if self.port is not None:
            listen_queues(self.port)  # raises Unsupported here, not in the thread
        for sock in self.sockets:
            accept_queue(sock)
            self._own_inodes.add(os.fstat(sock.fileno()).st_ino)
        self._thread = threading.Thread(
            target=self._run, name="acceptlab-queue-sampler", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and wait for the thread (about one interval); safe to repeat."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.stop_reason is None:
            self.stop_reason = "stopped"

    def __enter__(self) -> QueueSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _sample(self, t_ns: int) -> list[tuple[int, str, int, int | None]] | None:
        """One row per socket, or None when a socket handed in has gone away."""
        rows: list[tuple[int, str, int, int | None]] = []
        for name, sock in zip(self._names, self.sockets):
            try:
                depth = accept_queue(sock)
            except (OSError, ValueError):
                # Closed, or no longer a listener: the run is over for us.
                return None
            rows.append((t_ns, name, depth.queue_len, depth.backlog))
        if self.port is not None:
            try:
                listeners = listen_queues(self.port)
            except Unsupported:
                return None
            for entry in listeners:
                if entry.inode not in self._own_inodes:
                    rows.append((t_ns, f"inode:{entry.inode}", entry.queue_len, None))
        return rows

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stopping.is_set():
            if time.monotonic() >= deadline:
                self.stop_reason = "max_seconds"
                return
            rows = self._sample(time.monotonic_ns())
            if rows is None:
                self.stop_reason = "socket closed"
                return
            with self._lock:
                room = self.max_rows - len(self._rows)
                self._rows.extend(rows[:room])
                if len(rows) > room or len(self._rows) >= self.max_rows:
                    self.truncated = True
                    self.stop_reason = "max_rows"
                    return
            self._stopping.wait(self.interval)

    def to_frame(self) -> pd.DataFrame:
        """The samples so far as a DataFrame: t_ns, socket, queue_len, backlog.

        ``t_ns`` and ``queue_len`` are int64; ``backlog`` is the nullable
        Int64, missing (``<NA>``) for rows read from /proc.  Safe to call
        while the sampler is still running.
        """
        import pandas as pd  # here, so worker processes importing kernel don't pay for pandas

        with self._lock:
            rows = list(self._rows)
        frame = pd.DataFrame(rows, columns=list(QUEUE_COLUMNS))
        return frame.astype(
            {"t_ns": "int64", "socket": "str", "queue_len": "int64", "backlog": "Int64"}
        )


# --------------------------------------------------------------------------
# Real wakeups: voluntary context switches
# --------------------------------------------------------------------------

def voluntary_switches() -> int | None:
    """The calling thread's count of voluntary context switches so far.

    What it shows a learner: how often this thread really went to sleep and
    was woken.  A worker that sleeps in ``accept()``, ``poll()`` or
    ``epoll_wait()`` and is woken counts one, *even if its accept() then
    fails with EAGAIN* because another worker won the race.  That is how the
    thundering herd becomes visible: count switches per accepted connection,
    not EAGAIN errors (which undercount the herd badly).

    It counts every blocking wait of the thread, not only the accept: a
    ``time.sleep()``, a ``recv()`` or a ``send()`` that waits, a lock or GIL
    wait that sleeps.  Read it just before and just after the wait you care
    about, or subtract what the handler itself causes (its sleeps and I/O).

    Where the number comes from: ``getrusage(RUSAGE_THREAD).ru_nvcsw``, the
    kernel's per-task ``nvcsw`` counter (also in
    ``/proc/<pid>/task/<tid>/status`` as ``voluntary_ctxt_switches``).

    When it fails: returns None where there is no per-thread count
    (RUSAGE_THREAD is Linux-only; the per-process count would mix threads).
    """
    who = getattr(resource, "RUSAGE_THREAD", None)  # Linux only; macOS has none
    if who is None:
        return None
    return resource.getrusage(who).ru_nvcsw
