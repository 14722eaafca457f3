"""Accept strategies: the ways a worker can wait for its next connection.

Every strategy is a small class with one method, :meth:`wait`, that sleeps
until the kernel hands this worker something and reports what it got as a
:class:`Wakeup`: a connection (``accepted``), nothing because another worker
was faster (``eagain``), or nothing because a timeout expired (``timeout``).
Read them side by side; the differences are a line or two each, and each line
changes how the kernel wakes the waiting workers (docs/sources.md links the
kernel code and the projects each idea comes from):

=================  ==========================================================
``blocking``       ``accept()`` on the shared socket: the kernel queues the
                   sleepers and wakes exactly one, the longest waiter (FIFO).
``timeout``        ``settimeout()`` then ``accept()``: CPython polls first, so
                   every idle worker wakes for every connection (a herd).
``poll``           ``select.poll()`` on a non-blocking socket: a herd; losers
                   either sleep again inside the kernel or get ``EAGAIN``.
``epoll``          one ``epoll`` per worker, no flag: a herd too.
``epoll-exclusive``  ``EPOLLEXCLUSIVE``: the kernel wakes one epoll, in practice
                   the first registered idle one: one worker takes nearly all.
``shared-epoll``   threads only: one ``epoll`` object shared by all threads;
                   its sleepers wake last-in-first-out (LIFO).
``reuseport``      each worker binds its OWN socket with ``SO_REUSEPORT``: the
                   kernel picks a socket by a hash of the client's address and
                   port, so the split is random, whatever each worker's speed.
``locked``         a lock around ``accept()`` (Apache's AcceptMutex): only the
                   holder waits in the kernel.  The lock is ``flock`` on a file,
                   which the kernel releases when its holder dies, even by SIGKILL.
=================  ==========================================================

The ecosystem's fixes for the uneven split, one class each:

=========================  ==================================================
``reorder``                nginx: ``EPOLLEXCLUSIVE``, re-registering every 16
                           accepts, so the busy worker goes to the back.
``busy-sleep``             Puma: every waiter wakes; one whose process has
                           connections open sleeps 5 ms before it tries to
                           accept (for ``kind='hybrid'``).
``exact``                  Envoy's exact balance: only the process holding the
                           fewest open connections accepts (a lock decides).
``handoff``                Node's cluster: one acceptor deals each connection
                           to the next worker over a Unix socket.
``handoff-least-busy``     the same, dealt to the least busy process.
``reuseport-cpu``          SO_REUSEPORT with a classic BPF program: the socket
                           is chosen by the CPU the connection arrived on.
``reuseport-incoming-cpu`` SO_REUSEPORT sockets tagged ``SO_INCOMING_CPU``.
=========================  ==================================================

A strategy is built inside the worker (``make_waiter``) from the shared
listening socket and a :class:`Setting` made once by the pool (:func:`prepare`),
which carries what every worker must share (the lock file, the shared epoll,
the address for ``reuseport``, the shared counters, the acceptor's channels).  Resource handling: a waiter owns what it created (its
epoll, its own socket, its lock file descriptor) and releases it in
:meth:`close`; it never closes the shared listener.

Which strategies THIS machine can run, and why not, is :mod:`acceptlab.linux.support`'s
job (the same probes ``acceptlab doctor`` prints).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ..basics import address_family, now

__all__ = ["STRATEGIES", "Wakeup", "Setting", "make_waiter", "Preparation", "prepare", "Acceptor",
           "cpu_program"]


class Wakeup(NamedTuple):
    """What one return from the wait brought."""

    outcome: str  # 'accepted' | 'eagain' | 'timeout'
    t_wake_ns: int  # when the wait itself returned
    t_accept_ns: int = -1  # when accept() handed over a connection
    conn: socket.socket | None = None
    peer_port: int = -1

    @classmethod
    def accepted(cls, t_wake_ns: int, pair: tuple[socket.socket, Any]) -> "Wakeup":
        conn, address = pair
        return cls("accepted", t_wake_ns, now(), conn, address[1])


@dataclass
class Setting:
    """What the pool prepares once and every worker of one strategy shares.

    ``address`` is the listening address (``reuseport`` workers bind it
    themselves); ``lock_path`` the file ``locked`` workers ``flock``;
    ``shared_epoll`` the one epoll object of ``shared-epoll`` (threads only,
    since an epoll object cannot cross into another process by pickling).
    """

    address: tuple[str, int] = ("127.0.0.1", 0)
    backlog: int = 128
    timeout: float = 1.0
    lock_path: str | None = None
    shared_epoll: Any = None
    workers: int = 1  # worker processes (or threads, for kind='thread') sharing the port
    threads: int = 1  # threads per worker process (kind='hybrid'); 1 otherwise
    slot: int = 0  # THIS worker thread's slot, set by make_waiter
    in_flight: Any = None  # per-group open-connection counts in shared memory (see _Counted)
    reorder_every: int = 16  # ``reorder``: accepts between re-registrations (nginx's 16)
    busy_sleep: float = 0.005  # ``busy-sleep``: seconds a busy process pauses (Puma's 5 ms)

    @property
    def group(self) -> int:
        """Which worker *process* this slot's thread belongs to (``slot // threads``).

        Fairness between processes is what the process-level fixes (Puma's,
        Envoy's, Node's) are about: the counts they keep are per group.
        """
        return self.slot // self.threads


class Blocking:
    """``accept()`` and nothing else: the book's pre-forked server.

    Every strategy has this shape: ``wait()`` returns a :class:`Wakeup`,
    ``finished()`` is called by the worker when a conversation ends (only the
    strategies that count open connections care), ``close()`` releases what the
    waiter made.  Two class attributes tell the pool what to prepare:
    ``own_socket`` (each worker binds its own listener) and ``counts_in_flight``
    (the pool makes shared per-process counters).
    """

    own_socket = False
    counts_in_flight = False

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener

    def wait(self) -> Wakeup:
        pair = self.listener.accept()  # sleeps in the kernel's FIFO queue of waiters
        return Wakeup.accepted(now(), pair)

    def finished(self) -> None:
        """A conversation ended (see the class docstring)."""

    def close(self) -> None:
        pass


class Timeout(Blocking):
    """``accept()`` with a timeout, as code that calls ``settimeout()`` does without knowing."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        listener.settimeout(setting.timeout)  # CPython now polls, then accepts, retrying on EAGAIN

    def wait(self) -> Wakeup:
        try:
            pair = self.listener.accept()
        except TimeoutError:
            return Wakeup("timeout", now())
        return Wakeup.accepted(now(), pair)


class Poll(Blocking):
    """Wait with ``select.poll()``, then try a non-blocking ``accept()``."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)  # a loser of the race must not block in accept()
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)

    def wait(self) -> Wakeup:
        self.poller.poll()
        return self.try_accept(now())

    def try_accept(self, t_wake_ns: int) -> Wakeup:
        """Take the connection if no other worker was faster."""
        try:
            return Wakeup.accepted(t_wake_ns, self.listener.accept())
        except BlockingIOError:  # EAGAIN: woken for a connection another worker took
            return Wakeup("eagain", t_wake_ns)


class Epoll(Poll):
    """One epoll instance per worker, watching the shared socket."""

    flags = select.EPOLLIN if hasattr(select, "EPOLLIN") else 0

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(listener.fileno(), self.flags)

    def wait(self) -> Wakeup:
        self.epoll.poll()
        return self.try_accept(now())

    def close(self) -> None:
        self.epoll.close()


class EpollExclusive(Epoll):
    """As :class:`Epoll`, with ``EPOLLEXCLUSIVE``: the kernel wakes one epoll, not all."""

    flags = Epoll.flags | getattr(select, "EPOLLEXCLUSIVE", 0)


class SharedEpoll(Poll):
    """Every thread waits on the SAME epoll object (made once by the pool)."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.epoll = setting.shared_epoll

    def wait(self) -> Wakeup:
        self.epoll.poll()
        return self.try_accept(now())


class ReusePort(Blocking):
    """Bind a socket of this worker's own to the shared port, with ``SO_REUSEPORT``."""

    own_socket = True

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        own = socket.socket(address_family(setting.address[0]), socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(setting.address)
        own.listen(setting.backlog)  # a queue of its own: the kernel hashes clients across queues
        self.listener = own

    def close(self) -> None:
        self.listener.close()


class Locked(Blocking):
    """Only the holder of an ``flock`` on a shared file waits in ``accept()``."""

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        # Each worker opens the file itself: flock locks belong to an open file,
        # so two threads with two opens exclude each other like two processes do.
        assert setting.lock_path is not None
        self.lock_fd = os.open(setting.lock_path, os.O_RDWR | os.O_CREAT, 0o644)

    def wait(self) -> Wakeup:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            return super().wait()
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.lock_fd)


class Reorder(EpollExclusive):
    """``EPOLLEXCLUSIVE``, but every ``reorder_every`` accepts the worker re-registers.

    The idea is nginx's (``ngx_reorder_accept_events``, 1.21.x): an exclusive
    wakeup goes to the first idle epoll in the listener's wait queue, so the
    worker that registered first takes nearly everything.  Removing the
    listener from its epoll and adding it again puts this worker's entry at
    the *tail* of that queue, so the next worker in line takes over: a busy
    worker steps back every N connections (nginx uses 16).
    """

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        self.every, self.accepted = setting.reorder_every, 0

    def wait(self) -> Wakeup:
        wake = super().wait()
        if wake.conn is not None:
            self.accepted += 1
            if self.accepted % self.every == 0:  # to the back of the kernel's queue
                self.epoll.unregister(self.listener.fileno())
                self.epoll.register(self.listener.fileno(), self.flags)
        return wake


class _Counted:
    """Mixin: this process's count of open connections, in memory every worker shares.

    ``setting.in_flight`` holds one integer per worker process (a
    ``multiprocessing.Array`` the pool made, which every worker maps), with
    one lock for the whole array.  The strategy counts up when it takes a
    connection; :meth:`finished` counts down when the conversation ends.
    Put it first among the bases: ``class X(_Counted, Poll)``.
    """

    counts_in_flight = True

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)  # the waiting part: Poll, Handoff, ...
        self.counts, self.group = setting.in_flight, setting.group

    def finished(self) -> None:
        with self.counts.get_lock():
            self.counts[self.group] -= 1


class BusySleep(_Counted, Poll):
    """Puma's ``wait_for_less_busy_worker``: a busy process pauses before it tries to accept.

    With several threads per process (``kind='hybrid'``) an idle thread of a
    busy process wins the race for the next connection as easily as a thread
    of an idle process, and then two requests share one process's CPU (and,
    in Python, its GIL).  Puma's answer (PR #2079): every waiter is woken
    (``select``), and one whose process already has requests in flight sleeps
    a few milliseconds (5 ms) before its non-blocking ``accept()``, so an idle
    process usually gets there first; the sleeper then finds ``EAGAIN``.
    """

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        self.pause = setting.busy_sleep

    def wait(self) -> Wakeup:
        self.poller.poll()
        t_wake = now()
        if self.counts[self.group] > 0:  # a plain read: a stale value only shifts the odds
            time.sleep(self.pause)
        wake = self.try_accept(t_wake)
        if wake.conn is not None:
            with self.counts.get_lock():
                self.counts[self.group] += 1
        return wake


class Exact(_Counted, Poll):
    """Envoy's ``exact_balance``: only a process holding the fewest open connections accepts.

    Every idle worker polls the shared socket (a herd, on purpose); when it is
    readable, each woken worker takes the lock and accepts only if its process
    holds no more open connections than any other.  The others pause briefly
    and wait again; that return is logged as ``eagain`` (woke, took nothing).
    Deciding and counting under one lock keeps the counts within one of each
    other.  A process whose threads are all busy is never the least busy
    unless every process is, so a connection cannot wait for a worker that
    has no idle thread while another has one.
    """

    _DECLINE_PAUSE = 0.0005  # seconds: let the least busy process's worker reach the lock

    def wait(self) -> Wakeup:
        self.poller.poll()
        t_wake = now()
        with self.counts.get_lock():
            if self.counts[self.group] > min(self.counts):
                wake = None  # another process holds fewer: leave this connection to it
            else:
                wake = self.try_accept(t_wake)
                if wake.conn is not None:
                    self.counts[self.group] += 1
        if wake is None:
            time.sleep(self._DECLINE_PAUSE)
            return Wakeup("eagain", t_wake)
        return wake


class Handoff(Blocking):
    """Node's cluster (SCHED_RR): one acceptor accepts every connection and deals it out in turn.

    The workers never touch the listening socket.  An :class:`Acceptor` in
    the pool's process accepts each connection and passes its descriptor to
    the next worker process over a Unix socket (``SCM_RIGHTS``: the kernel
    installs a copy of the descriptor in the receiver).  The ``listener`` this
    waiter gets is its process's end of that Unix socket.  Turns are strict
    even for back-to-back connections, because the acceptor decides, not a
    race between sleepers; the price is one more hop per connection, and a
    connection dealt to a busy worker waits while another may be idle.
    """

    def wait(self) -> Wakeup:
        _, fds, _, _ = socket.recv_fds(self.listener, 1, 1)
        t_wake = now()
        if not fds:  # the channel was shut down: the pool is stopping
            raise OSError(errno.EBADF, "the acceptor's channel is closed")
        conn = socket.socket(fileno=fds[0])
        return Wakeup("accepted", t_wake, t_wake, conn, conn.getpeername()[1])


class HandoffLeastBusy(_Counted, Handoff):
    """As :class:`Handoff`, but the acceptor deals to the process with the fewest open connections.

    The acceptor counts up when it deals; the worker counts down in :meth:`finished`.
    """


class Acceptor:
    """The ``handoff`` strategies' dealer: one thread in the pool's process.

    Args:
        listener: the shared listening socket (blocking).
        channels: the pool's end of each worker process's Unix socket, in order.
        in_flight: shared per-process counts of open connections; with them
            the dealer picks the least busy process (ties: the next in turn),
            without them strictly the next in turn.

    :meth:`stop` shuts the listener down, which wakes the blocked ``accept()``.
    """

    def __init__(self, listener: socket.socket, channels: list[socket.socket],
                 *, in_flight: Any = None) -> None:
        self.listener, self.channels, self.counts = listener, channels, in_flight
        self.dealt = 0
        self._thread = threading.Thread(target=self._run, name="acceptlab-acceptor", daemon=True)

    def start(self) -> "Acceptor":
        self._thread.start()
        return self

    def _next(self) -> int:
        turn = self.dealt % len(self.channels)
        if self.counts is None:
            return turn
        with self.counts.get_lock():
            order = [(turn + k) % len(self.channels) for k in range(len(self.channels))]
            target = min(order, key=lambda group: self.counts[group])  # first in turn among equals
            self.counts[target] += 1
        return target

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # shut down by stop()
            with conn:
                try:
                    socket.send_fds(self.channels[self._next()], [b"c"], [conn.fileno()])
                except OSError:
                    pass  # the pool is stopping; the client sees its connection close
            self.dealt += 1

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(1.0)


SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)  # Linux >= 4.5
SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)  # Linux >= 3.19 (settable >= 4.4)


def cpu_program(modulus: int) -> bytes:
    """A classic BPF program for a SO_REUSEPORT group: ``A = this CPU; A %= modulus; return A``.

    The kernel runs it for each new connection and uses the result as an
    index into the group's sockets (in the order they joined); an index past
    the end falls back to the hash.  It is the program of the kernel selftest
    ``reuseport_bpf_cpu``, encoded here instruction by instruction: each is a
    ``struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}``.
    """
    load_cpu = (0x20, 0, 0, (-0x1000 + 36) & 0xFFFFFFFF)  # BPF_LD|BPF_W|BPF_ABS, SKF_AD_OFF+SKF_AD_CPU
    modulo = (0x94, 0, 0, modulus)  # BPF_ALU|BPF_MOD|BPF_K
    return_a = (0x16, 0, 0, 0)  # BPF_RET|BPF_A
    return b"".join(struct.pack("HBBI", *step) for step in (load_cpu, modulo, return_a))


class ReusePortCpu(ReusePort):
    """One socket per worker, and a BPF program that picks the socket by the CPU the SYN came in on.

    Plain SO_REUSEPORT hashes the client's address and port.  Attaching a
    program (``SO_ATTACH_REUSEPORT_CBPF``, Linux >= 4.5) replaces the hash:
    here, socket number ``cpu % workers``, so a connection stays on the CPU
    that received it (locality: warm caches, no wakeup across CPUs).  On
    loopback the receiving CPU is the one the client ran on.  Every worker
    attaches the same program; the group keeps the last.  With more workers
    than CPUs, the workers past the last CPU get nothing.
    """

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        code = cpu_program(setting.workers * setting.threads)
        buffer = ctypes.create_string_buffer(code, len(code))
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment
        program = struct.pack("@HP", len(code) // 8, ctypes.addressof(buffer))
        self.listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)


class ReusePortIncomingCpu(ReusePort):
    """One socket per worker, each tagged with a CPU (``SO_INCOMING_CPU``): the group prefers a match.

    Worker ``slot`` tags its socket with CPU ``slot % cpus``; a SO_REUSEPORT
    group then gives a connection to a socket tagged with the CPU its SYN
    arrived on (Linux 6.2 made the group honour the tag), hashing among the
    sockets with that tag.
    """

    def __init__(self, listener: socket.socket, setting: Setting) -> None:
        super().__init__(listener, setting)
        self.listener.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU,
                                 setting.slot % (os.cpu_count() or 1))


STRATEGIES: dict[str, type] = {
    "blocking": Blocking,
    "timeout": Timeout,
    "poll": Poll,
    "epoll": Epoll,
    "epoll-exclusive": EpollExclusive,
    "shared-epoll": SharedEpoll,
    "reuseport": ReusePort,
    "locked": Locked,
    "reorder": Reorder,
    "busy-sleep": BusySleep,
    "exact": Exact,
    "handoff": Handoff,
    "handoff-least-busy": HandoffLeastBusy,
    "reuseport-cpu": ReusePortCpu,
    "reuseport-incoming-cpu": ReusePortIncomingCpu,
}


def make_waiter(name: str, listener: socket.socket, setting: Setting, *, slot: int = 0) -> Any:
    """Build strategy ``name`` inside worker ``slot`` (its epoll, socket or lock are its own)."""
    return STRATEGIES[name](listener, replace(setting, slot=slot))


@dataclass
class Preparation:
    """What the pool sets up once, before any worker starts, for one strategy.

    ``setting`` is what every worker gets; ``channels`` (``handoff`` only)
    holds, per worker process, the pool's end and the worker's end of a Unix
    socket; ``acceptor`` is the dealer the pool starts once its workers are
    ready.  :meth:`close` undoes it all after the workers have gone.
    """

    setting: Setting
    channels: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    acceptor: Acceptor | None = None

    def listener_for(self, group: int, shared: socket.socket) -> socket.socket:
        """The socket worker process ``group`` waits on: its channel, or the shared listener."""
        return self.channels[group][1] if self.channels else shared

    def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.stop()
        for pool_end, worker_end in self.channels:
            for sock in (pool_end, worker_end):
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread worker in recv_fds()
                except OSError:
                    pass
                sock.close()
        if self.setting.shared_epoll is not None:
            self.setting.shared_epoll.close()


def prepare(name: str, listener: socket.socket, setting: Setting, *, lock_dir: str,
            context: Any) -> Preparation:
    """Make what every worker of strategy ``name`` must share, once, in the pool's process.

    Args:
        name: the strategy.
        listener: the pool's listening socket (bound; listening unless the
            strategy binds its own).
        setting: the pool's :class:`Setting` (address, workers, threads, ...).
        lock_dir: where ``locked`` puts its lock file.
        context: the ``multiprocessing`` context, for shared counters.
    """
    cls = STRATEGIES[name]
    extra: dict[str, Any] = {"lock_path": os.path.join(lock_dir, "accept.lock")}
    if cls.counts_in_flight:
        extra["in_flight"] = context.Array("i", setting.workers)
    if cls is SharedEpoll:
        extra["shared_epoll"] = select.epoll()
        extra["shared_epoll"].register(listener.fileno(), select.EPOLLIN)
    prepared = Preparation(replace(setting, **extra))
    if issubclass(cls, Handoff):
        prepared.channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                             for _ in range(setting.workers)]
        prepared.acceptor = Acceptor(listener, [pool_end for pool_end, _ in prepared.channels],
                                     in_flight=prepared.setting.in_flight)
    return prepared
