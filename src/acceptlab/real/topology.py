"""Inspect any pre-fork server's accept topology from outside, and say what it predicts.

Why: the kit's own workers log every wakeup, but the servers people run
(gunicorn, uvicorn, nginx, Node's cluster) do not.  Their *layout* is visible
all the same (see :mod:`acceptlab.linux.procfs`): which processes hold which
listening socket, and how each thread waits for it right now.  That layout is
one of the kit's strategies in disguise (gunicorn's sync workers sitting in
``select()`` on one shared socket are the ``poll`` strategy; nginx's
``EPOLLEXCLUSIVE`` registration is ``epoll-exclusive``), and the strategy
predicts how the kernel will share connections out.

:func:`topology` returns a :class:`Topology`; :meth:`Topology.to_json` gives
the stable JSON object that ``acceptlab inspect --json`` prints (its schema is
in the README).  Nothing here needs root for your own processes; what could not
be read (another user's process) is listed in ``unreadable`` and the rest is
still reported.

Every classification carries its evidence: how each thread waits comes from
:mod:`acceptlab.real.waits` (which reads a ``poll()``'s descriptors from the
process's memory instead of guessing them), a lock around the wait from
:mod:`acceptlab.real.locking`.  Given any process of a server (a worker, say),
:func:`topology` finds the whole server first: every process that holds the
same listener, and their common parent (:func:`server_root`).

The names of the prediction come from each strategy's record in
:mod:`acceptlab.registry` ("taking turns", "fair die", "racy", "one worker
takes most", "uneven, recent waiters win").
"""

from __future__ import annotations

import collections
import socket
import textwrap
import time
from dataclasses import dataclass, field

from ..linux import peek, procfs
from ..registry import STRATEGY_RECORDS
from . import locking
from .locking import AcceptLock
from .waits import ProcessReader, ThreadWait

__all__ = ["ThreadWait", "ProcessView", "ListenerView", "Topology", "topology", "settled_topology",
           "match_strategy", "format_topology", "server_root", "PREDICTIONS"]


@dataclass
class ProcessView:
    """One process of the tree: its parent, command line, threads, and listening descriptors."""

    pid: int
    ppid: int
    cmd: str
    threads: list[ThreadWait] = field(default_factory=list)
    listener_fds: dict[int, int] = field(default_factory=dict)  # fd -> inode (not in the JSON)

    def to_json(self) -> dict:
        return {"pid": self.pid, "ppid": self.ppid, "cmd": self.cmd,
                "threads": [thread.to_json() for thread in self.threads]}


@dataclass
class ListenerView:
    """A listening socket held by the tree: where, who holds it, its queue and backlog now."""

    inode: int
    address: str
    port: int
    held_by: list[int]
    queue: int
    backlog: int | None
    defer_accept: int | None = None  # TCP_DEFER_ACCEPT's seconds (0: off), None: not known

    def to_json(self) -> dict:
        return {"inode": self.inode, "address": self.address, "port": self.port,
                "held_by": self.held_by, "queue": self.queue, "backlog": self.backlog,
                "defer_accept": self.defer_accept}


@dataclass
class Topology:
    """A server's accept topology at one moment, and what it predicts."""

    pid: int
    processes: list[ProcessView]
    listeners: list[ListenerView]
    tcp_migrate_req: int | None
    strategy: str | None = None
    prediction: str = ""
    unreadable: list[str] = field(default_factory=list)
    asked_pid: int | None = None  # the pid given, when the whole server was found from it
    found_from: str | None = None  # how the server's root was found from asked_pid, in words
    lock: AcceptLock | None = None  # the lock around the wait, if the layout is one

    def to_json(self) -> dict:
        """The object ``acceptlab inspect --json`` prints (schema in the README; kept stable)."""
        return {"pid": self.pid, "asked_pid": self.asked_pid, "found_from": self.found_from,
                "processes": [process.to_json() for process in self.processes],
                "listeners": [listener.to_json() for listener in self.listeners],
                "tcp_migrate_req": self.tcp_migrate_req, "strategy": self.strategy,
                "prediction": self.prediction, "lock": self.lock.to_json() if self.lock else None,
                "unreadable": list(self.unreadable)}

    @property
    def workers(self) -> list[int]:
        """The pids of the worker processes, ascending.

        The processes below the inspected one that hold a listener.  If none
        does: the inspected process itself when it has no children or several
        of its threads wait for the listener (a pool of threads; for a locked
        pool, one waits on it and the others in ``flock``), else every
        process below it (Node's round robin: only the master holds the
        listener and hands connections down).
        """
        below = [process for process in self.processes if process.pid != self.pid]
        holders = [process.pid for process in below if process.listener_fds]
        if holders:
            return sorted(holders)
        root = self.process(self.pid)
        waiting = [thread for thread in root.threads if thread.listener_inode is not None]
        # A locked pool of threads has one waiter on the listener and the rest on a lock.
        queued = [thread for thread in root.threads
                  if thread.lock is not None and thread.lock.kind != "private-futex"]
        if not below or len(waiting) > 1 or (waiting and queued):  # a pool of threads (a
            return [self.pid]                                       # helper child is no worker)
        return sorted(process.pid for process in below)

    def process(self, pid: int) -> ProcessView:
        """The view of process ``pid`` (KeyError if it is not in the tree)."""
        for process in self.processes:
            if process.pid == pid:
                return process
        raise KeyError(pid)


# One sentence per strategy: the layout seen, then what it predicts (kernel-notes.md).
PREDICTIONS = {
    "blocking": "one shared socket, every worker blocked in accept(): the kernel queues the "
                "waiters FIFO and wakes one, so the workers take turns under light load",
    "locked": "one shared socket and one waiter at a time (a lock around accept): taking "
              "turns if the lock hands over in order, no herd",
    "timeout": "one shared socket, every worker in accept() with a timeout, which polls "
               "first: non-exclusive wakeups, a thundering herd and a racy, uneven split",
    "poll": "one shared socket, every worker in select()/poll(): non-exclusive wakeups, a "
            "thundering herd (about one wakeup per idle worker per connection) and a racy, "
            "uneven split",
    "epoll": "one shared socket, every worker in epoll_wait() without EPOLLEXCLUSIVE: a "
             "thundering herd and a racy, uneven split",
    "epoll-exclusive": "one shared socket, EPOLLEXCLUSIVE: the kernel wakes one waiter, the "
                       "first registered that is idle, so one worker takes most under light "
                       "load",
    "shared-epoll": "threads share one epoll instance: the last thread to wait is woken "
                    "first, and the level-triggered re-queue wakes another: uneven, recent "
                    "waiters win",
    "reuseport": "one listener per worker (SO_REUSEPORT): a hash of each connection's "
                 "addresses decides, a fair die with even shares on average; a slow worker's "
                 "own queue grows",
    "handoff": "one process accepts and hands each connection to a worker: the split is "
               "whatever the hand-out does (Node's SCHED_RR takes strict turns)",
}
# A lock that decides whose epoll holds the listener (nginx's accept_mutex) is no FIFO of
# waiters: the holder keeps it for as long as it is not busy.
_MUTEX_IN_EPOLL = ("one worker at a time has the listener in its epoll (a mutex, like nginx's "
                   "accept_mutex): the holder keeps it while it is idle, so one worker takes "
                   "most under light load, and none is woken in vain")
_NO_WAITER = ("no thread waits for a connection right now (all busy, not a server, or the "
              "waits could not be read): no prediction")
_UNKNOWN_SETS = ("no thread is seen waiting for a connection, and the descriptor sets of some "
                 "poll()/select() waits could not be read (see unreadable): no prediction")


def _analysis_group(strategy: str) -> str:
    """The kind of prediction the strategy's record makes, in its own words."""
    record = STRATEGY_RECORDS.get(strategy)
    return record.prediction.words if record is not None else "decided by the hand-out"


def server_root(pid: int, listening: dict) -> tuple[int, str | None]:
    """The process to inspect for the whole server that ``pid`` belongs to, and why.

    A worker alone shows only itself.  If ``pid`` holds a listening socket,
    every process that holds a listener on the same port is found (one pass
    over every readable ``/proc/PID/fd``: what ``ss -ltp`` does), and the
    nearest process above ``pid`` that is an ancestor of them all is the
    server's root.  A process that holds no listener while its parent does (a
    worker that is handed its connections) is inspected from its parent.
    Returns ``(pid, None)`` when ``pid`` is already the root or neither it
    nor its parent holds a listener.  Should that ancestor be init (unrelated servers
    sharing a port), it climbs from ``pid`` only while the parent holds the
    listener too.

    Args:
        pid: any process of the server.
        listening: the listening sockets by inode (sock_diag or ``/proc/net/tcp`` rows).
    """
    mine = _listeners_of(pid, listening)
    if not mine:  # a worker that is handed its connections (Node's SCHED_RR): its parent's?
        parent = _ancestors(pid)[1:2]
        if parent and parent[0] > 1 and _listeners_of(parent[0], listening):
            root, said = server_root(parent[0], listening)
            return root, (f"{pid} holds no listener, its parent {parent[0]} does"
                          + (f"; {said}" if said else f": inspected from {root}"))
        return pid, None
    ports = {listening[inode].port for inode in mine}
    group = {inode for inode, entry in listening.items() if entry.port in ports}
    holders = _holders(group)
    chains = {member: _ancestors(member) for member in holders | {pid}}
    common = [member for member in chains[pid] if all(member in chain for chain in chains.values())]
    root = common[0] if common else pid
    if root <= 1 and 1 not in holders:  # unrelated servers share the port: stay near pid
        root = pid
        for parent in chains[pid][1:]:
            if parent <= 1 or parent not in holders:
                break
            root = parent
    if root == pid:
        return pid, None
    port = ", ".join(map(str, sorted(ports)))
    return root, (f"{pid} is one of {len(holders)} processes holding the listener on port {port} "
                  f"({' '.join(map(str, sorted(holders)))}, from every /proc/PID/fd); inspected "
                  f"from their common parent {root}")


def _listeners_of(pid: int, listening: dict) -> set[int]:
    """The listening sockets ``pid`` holds (none if we may not read its descriptors)."""
    try:
        return {inode for inode in procfs.socket_inodes(pid).values() if inode in listening}
    except OSError:
        return set()


def _holders(inodes: set[int]) -> set[int]:
    """Every process (that we may read) with a descriptor on one of ``inodes``."""
    found = set()
    for other in procfs.process_ids():
        try:
            if inodes & set(procfs.socket_inodes(other).values()):
                found.add(other)
        except OSError:
            continue
    return found


def _ancestors(pid: int) -> list[int]:
    """``pid``, its parent, and so on up to init (at most 64 steps)."""
    chain = [pid]
    for _ in range(64):
        try:
            parent = procfs.parent_of(chain[-1])
        except (OSError, ValueError, IndexError):
            break
        if parent <= 0 or parent in chain:
            break
        chain.append(parent)
    return chain


def _defer_accept(view_fds: list[tuple[int, int]], unreadable: list[str],
                  where: str) -> int | None:
    """``TCP_DEFER_ACCEPT`` of a listener, asked through one of its holders' descriptors.

    Neither ``sock_diag`` nor ``tcp_info`` carries it (the listener's
    ``rskq_defer_accept`` is in neither ``struct inet_diag_msg`` nor ``struct
    tcp_info``), so the option is read with ``getsockopt`` on a duplicate of
    the holder's descriptor (:func:`acceptlab.linux.peek.socket_option`).
    """
    reason = "no holder we may read"
    for pid, fd in view_fds:
        try:
            return peek.socket_option(pid, fd, socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)
        except OSError as exc:
            reason = exc.strerror or str(exc)
    unreadable.append(f"TCP_DEFER_ACCEPT of {where}: {reason} (pidfd_getfd needs Linux >= 5.6 "
                      "and the right to ptrace the server)")
    return None


def topology(pid: int) -> Topology:
    """Inspect the server that process ``pid`` belongs to, and everything below its root.

    Reads the process tree and threads, the listening sockets the tree holds
    (with queue length, backlog and ``TCP_DEFER_ACCEPT`` now), how every
    thread waits and why (:class:`acceptlab.real.waits.ThreadWait`'s
    ``evidence``), and ``net.ipv4.tcp_migrate_req``; then matches the layout
    to a strategy with :func:`match_strategy`.  Raises ``ProcessLookupError``
    if ``pid`` does not exist; anything else it cannot read is listed in
    ``unreadable``.

    Args:
        pid: any process of the server.  A worker is enough: the processes
            holding its listener and their common parent are found
            (:func:`server_root`; ``found_from`` says so).
    """
    try:
        procfs.parent_of(pid)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process {pid}") from None
    unreadable: list[str] = []
    try:
        with procfs.SockDiag() as diag:
            listening = {entry.inode: entry for entry in diag.listeners() if entry.inode}
    except OSError as exc:
        unreadable.append(f"sock_diag (listener backlogs): {exc.strerror or exc}")
        listening = {row.inode: row for row in procfs.tcp_table(pid) if row.listening}
    root, found_from = server_root(pid, listening)
    try:
        tree = procfs.descendants(root)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process {root}") from None
    processes = []
    for member in tree:
        try:
            view = ProcessView(member, procfs.parent_of(member), procfs.command_line(member))
            tids = procfs.thread_ids(member)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        try:
            view.listener_fds = {fd: inode for fd, inode in procfs.socket_inodes(member).items()
                                 if inode in listening}
        except OSError as exc:
            unreadable.append(f"/proc/{member}/fd: {exc.strerror or exc}")
        reader = ProcessReader(member, view.listener_fds, set(listening), unreadable)
        view.threads = [reader.thread(tid) for tid in tids]
        processes.append(view)
    listeners = []
    for inode in sorted({inode for view in processes for inode in view.listener_fds.values()}):
        holders = [(view.pid, fd) for view in processes
                   for fd, held in sorted(view.listener_fds.items()) if held == inode]
        entry = listening[inode]
        if isinstance(entry, procfs.DiagSocket):
            queue, backlog = entry.queue, entry.backlog
        else:  # /proc/net/tcp: the queue, but no backlog
            queue, backlog = entry.rx_queue, None
        defer = _defer_accept(holders, unreadable, f"{entry.local}:{entry.port}")
        listeners.append(ListenerView(inode, entry.local, entry.port,
                                      sorted({pid for pid, _ in holders}), queue, backlog, defer))
    listeners.sort(key=lambda listener: (listener.port, listener.address, listener.inode))
    found = Topology(root, processes, listeners, procfs.tcp_migrate_req(), unreadable=unreadable,
                     asked_pid=pid if found_from else None, found_from=found_from)
    if found.tcp_migrate_req is None:
        unreadable.append("net.ipv4.tcp_migrate_req: absent (Linux < 5.14)")
    found.strategy, found.prediction, found.lock = _match(found)
    return found


def settled_topology(pid: int, *, tries: int = 20, pause: float = 0.05) -> Topology:
    """:func:`topology`, read again until two reads in a row match the same strategy.

    One read is one instant: a worker caught serving a request, or a master
    answering its own signal, can hide the layout.  Returns the last read
    (whose ``strategy`` may still be None after ``tries`` reads).

    Args:
        pid: as for :func:`topology`.
        tries: reads at most.
        pause: seconds between reads.
    """
    previous = None
    for _ in range(tries):
        found = topology(pid)
        if found.strategy is not None and previous is not None \
                and previous.strategy == found.strategy:
            return found
        previous = found
        time.sleep(pause)
    return found


def match_strategy(found: Topology) -> tuple[str | None, str]:
    """The kit's strategy this layout matches, and the one-sentence prediction that follows.

    The acceptors are the worker threads waiting for a listener (by the
    evidence: a poll whose set could not be read is no acceptor).  Several
    listeners on one port among them: ``reuseport``.  One acceptor and the
    other workers queued on one lock they share (``flock``, ``fcntl``, a
    System V semaphore, a futex in shared memory): ``locked``, and the
    prediction is the lock's (:mod:`acceptlab.real.locking`).  One process
    whose single acceptor feeds a pool of idle threads: ``handoff``.
    Otherwise by how they wait: ``accept`` is ``blocking``;
    ``select``/``poll`` is ``poll`` (``timeout`` when every ``poll()`` has a
    finite timeout, as CPython's ``accept()`` after ``settimeout()`` does);
    ``epoll`` is ``epoll-exclusive`` when every registration has the flag,
    ``shared-epoll`` when threads of one process share one epoll descriptor,
    ``locked`` when just one worker has the listener registered and the
    others wait without it (nginx's ``accept_mutex``), else ``epoll``.  No
    worker waiting but the inspected process: ``handoff``.  A layout caught
    mid-change (workers busy) matches by its most common wait.
    """
    strategy, sentence, _ = _match(found)
    return strategy, sentence


def _match(found: Topology) -> tuple[str | None, str, AcceptLock | None]:
    """:func:`match_strategy`, with the lock it found (if the layout is a lock's)."""
    workers = [found.process(pid) for pid in found.workers]
    acceptors = [thread for process in workers for thread in process.threads
                 if thread.listener_inode is not None]
    if not acceptors:
        root = found.process(found.pid) if found.pid not in found.workers else None
        if root is not None and any(t.listener_inode is not None for t in root.threads):
            return "handoff", f"{PREDICTIONS['handoff']} ({_analysis_group('handoff')})", None
        unknown = any(t.waits_in in ("poll", "select") and t.fds is None
                      for process in found.processes for t in process.threads)
        return None, _UNKNOWN_SETS if unknown else _NO_WAITER, None
    ports = collections.defaultdict(set)
    listeners = {listener.inode: listener for listener in found.listeners}
    for thread in acceptors:
        listener = listeners.get(thread.listener_inode)
        ports[listener.port if listener else None].add(thread.listener_inode)
    lock = None
    if any(len(inodes) > 1 for inodes in ports.values()):
        strategy = "reuseport"
    elif (lock := locking.accept_lock(workers)) is not None:
        strategy = "locked"
        return strategy, f"{locking.LOCK_PREDICTIONS[lock.kind]} (taking turns)", lock
    elif locking.fed_pool(workers):
        return "handoff", f"{locking.POOL_PREDICTION} ({_analysis_group('handoff')})", None
    else:
        kind = collections.Counter(thread.waits_in for thread in acceptors).most_common(1)[0][0]
        mine = [thread for thread in acceptors if thread.waits_in == kind]
        if kind == "accept":
            strategy = "blocking"
        elif kind == "epoll":
            strategy = _epoll_strategy(workers, mine)
        elif kind == "poll" and all(thread.timed for thread in mine):
            strategy = "timeout"  # CPython's accept() after settimeout(): poll(fd, ms), then accept
        else:
            strategy = "poll"
    if strategy == "locked":  # only the epoll rule gets here: nginx's tried lock
        lock = locking.tried_lock(workers)
        return strategy, f"{_MUTEX_IN_EPOLL} (one worker takes most)", lock
    return strategy, f"{PREDICTIONS[strategy]} ({_analysis_group(strategy)})", lock


def _epoll_strategy(workers: list[ProcessView], acceptors: list[ThreadWait]) -> str:
    """Tell the four epoll layouts apart (see :func:`match_strategy`)."""
    if all(thread.exclusive for thread in acceptors):
        return "epoll-exclusive"
    shared = collections.Counter((process.pid, thread.on_fd) for process in workers
                                 for thread in process.threads
                                 if thread in acceptors)
    if any(count > 1 for count in shared.values()):
        return "shared-epoll"
    with_listener = {process.pid for process in workers for thread in process.threads
                     if thread in acceptors}
    without = {process.pid for process in workers
               if process.pid not in with_listener
               and any(thread.waits_in == "epoll" for thread in process.threads)}
    if len(with_listener) == 1 and without:
        return "locked"
    return "epoll"


def _thread_line(thread: ThreadWait) -> str:
    """One thread's wait, short: the call, its descriptors, the listener, the lock."""
    where = []
    if thread.syscall and thread.waits_in != "other":
        where.append(thread.syscall)
    elif thread.syscall:
        where.append(f"in {thread.syscall}")
    if thread.on_fd is not None:
        where.append(f"fd {thread.on_fd}")
    if thread.waits_in in ("poll", "select"):
        where.append("set unknown" if thread.fds is None
                     else f"fds {' '.join(map(str, thread.fds)) or 'none'}")
    if thread.listener_inode is not None:
        where.append(f"listener {thread.listener_inode}")
    if thread.exclusive is not None:
        where.append("EPOLLEXCLUSIVE" if thread.exclusive else "not exclusive")
    if thread.lock is not None and thread.lock.kind == "private-futex":
        where.append("(process-private)")
    elif thread.lock is not None:
        owner = f", owner {thread.lock.owner}" if thread.lock.owner else ""
        where.append(f"queued on {thread.lock.kind} {thread.lock.key}{owner}")
    return f"    {thread.tid:>7} {thread.waits_in:<8} {' '.join(where)}"


def format_topology(found: Topology, *, evidence: bool = True) -> str:
    """The inspection as text for a terminal: listeners, then each process and its waits.

    Args:
        found: the inspection.
        evidence: under each thread, where its classification was read.
    """
    lines = []
    if found.found_from:
        lines.append(textwrap.fill(f"process {found.asked_pid}: {found.found_from}", width=100,
                                   subsequent_indent="  "))
    lines.append(f"process {found.pid}: {len(found.processes)} process(es), "
                 f"workers {' '.join(map(str, found.workers))}")
    lines.append("listening sockets:")
    for listener in found.listeners or ():
        backlog = "?" if listener.backlog is None else listener.backlog
        defer = ("" if listener.defer_accept == 0 else "  TCP_DEFER_ACCEPT unknown"
                 if listener.defer_accept is None else
                 f"  TCP_DEFER_ACCEPT {listener.defer_accept} s (accept() gets it with its data)")
        lines.append(f"  {listener.address}:{listener.port}  inode {listener.inode}  "
                     f"queue {listener.queue}/{backlog}  held by "
                     f"{' '.join(map(str, listener.held_by))}{defer}")
    if not found.listeners:
        lines.append("  (none found)")
    lines.append("processes (thread: how it waits" + ("; why we say so)" if evidence else ")"))
    for process in found.processes:
        lines.append(f"  {process.pid} (parent {process.ppid})  {process.cmd[:70]}")
        for thread in process.threads:
            lines.append(_thread_line(thread))
            if evidence and thread.evidence and thread.waits_in != "running":
                lines.append(textwrap.fill(thread.evidence, width=100, initial_indent=" " * 12,
                                           subsequent_indent=" " * 14,
                                           break_on_hyphens=False))
    lines.append(f"net.ipv4.tcp_migrate_req: {found.tcp_migrate_req}")
    if found.lock is not None:
        lines.append(textwrap.fill(f"lock around the wait: {found.lock.description}: "
                                   f"{found.lock.evidence}", width=100, subsequent_indent="  "))
    lines.append(f"strategy: {found.strategy or '(none matched)'}")
    lines.append(f"prediction: {found.prediction}")
    for item in found.unreadable:
        lines.append(f"could not read: {item}")
    return "\n".join(lines)
