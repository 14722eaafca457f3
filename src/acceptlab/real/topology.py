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

The names of the prediction come from each strategy's record in
:mod:`acceptlab.registry` ("taking turns", "fair die", "racy", "one worker
takes most", "uneven, recent waiters win").
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from ..linux import procfs
from ..registry import STRATEGY_RECORDS

__all__ = ["ThreadWait", "ProcessView", "ListenerView", "Topology", "topology", "settled_topology",
           "match_strategy", "format_topology", "PREDICTIONS"]


@dataclass
class ThreadWait:
    """How one thread waits right now.

    ``waits_in``: ``accept``, ``epoll``, ``poll``, ``select``, ``other`` or
    ``running``.  ``on_fd``: the descriptor it waits on (the listener for
    accept, the epoll descriptor for epoll; None for poll and select, whose
    descriptor sets live in the process's memory).  ``listener_inode``: the
    listening socket it waits for, if any (for poll and select, the only
    listener the process holds: an inference, since the set is unreadable).
    ``exclusive``: for an epoll wait on a listener, whether the registration
    has ``EPOLLEXCLUSIVE``.  ``syscall`` names the call (kept out of the JSON).
    """

    tid: int
    waits_in: str
    on_fd: int | None = None
    listener_inode: int | None = None
    exclusive: bool | None = None
    syscall: str | None = None
    timed: bool = False  # a poll() with a finite timeout (not in the JSON)
    inferred: bool = False  # listener_inode guessed (poll/select: the set is unreadable)

    def to_json(self) -> dict:
        return {"tid": self.tid, "waits_in": self.waits_in, "on_fd": self.on_fd,
                "listener_inode": self.listener_inode, "exclusive": self.exclusive}


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

    def to_json(self) -> dict:
        return {"inode": self.inode, "address": self.address, "port": self.port,
                "held_by": self.held_by, "queue": self.queue, "backlog": self.backlog}


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

    def to_json(self) -> dict:
        """The object ``acceptlab inspect --json`` prints (schema in the README; kept stable)."""
        return {"pid": self.pid,
                "processes": [process.to_json() for process in self.processes],
                "listeners": [listener.to_json() for listener in self.listeners],
                "tcp_migrate_req": self.tcp_migrate_req, "strategy": self.strategy,
                "prediction": self.prediction, "unreadable": list(self.unreadable)}

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
        # A locked pool of threads has one waiter on the listener and the rest in flock.
        queued = [thread for thread in root.threads if thread.syscall == "flock"]
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


def _analysis_group(strategy: str) -> str:
    """The kind of prediction the strategy's record makes, in its own words."""
    record = STRATEGY_RECORDS.get(strategy)
    return record.prediction.words if record is not None else "decided by the hand-out"


def _read_thread(process: ProcessView, tid: int, listeners: set[int],
                 epolls: dict[int, list[procfs.EpollTarget] | None],
                 unreadable: list[str]) -> ThreadWait:
    """Classify one thread's wait from ``/proc/PID/task/TID/syscall`` (and epoll fdinfo)."""
    pid = process.pid
    try:
        call = procfs.thread_syscall(pid, tid)
    except FileNotFoundError:
        return ThreadWait(tid, "other")  # ended while we looked
    except OSError as exc:
        unreadable.append(f"/proc/{pid}/task/{tid}/syscall: {exc.strerror or exc}")
        return ThreadWait(tid, "other")
    if call.state == "running":
        return ThreadWait(tid, "running")
    name = procfs.syscall_name(call.number)
    kind = procfs.WAIT_KINDS.get(name or "", "other")
    if call.state == "user":
        name = "user space"
    wait = ThreadWait(tid, kind, syscall=name or f"syscall {call.number}")
    if kind == "accept":
        wait.on_fd = call.args[0]
        inode = process.listener_fds.get(wait.on_fd)
        wait.listener_inode = inode
    elif kind == "epoll":
        wait.on_fd = call.args[0]
        if wait.on_fd not in epolls:
            try:
                epolls[wait.on_fd] = procfs.epoll_targets(pid, wait.on_fd)
            except OSError as exc:
                unreadable.append(f"/proc/{pid}/fdinfo/{wait.on_fd}: {exc.strerror or exc}")
                epolls[wait.on_fd] = None
        registered = [target for target in epolls[wait.on_fd] or () if target.inode in listeners]
        if registered:
            wait.listener_inode, wait.exclusive = registered[0].inode, registered[0].exclusive
    elif kind in ("poll", "select"):
        # The descriptor set is in the process's memory: guess only when there is one choice.
        limit = call.args[0] if kind == "select" else None  # select's first argument: nfds
        held = {inode for fd, inode in process.listener_fds.items()
                if limit is None or fd < limit}
        if len(held) == 1:
            wait.listener_inode, wait.inferred = held.pop(), True
        if name == "poll":  # poll(fds, nfds, timeout_ms): -1 waits for ever
            wait.timed = call.args[2] & 0xFFFFFFFF != 0xFFFFFFFF
    return wait


def topology(pid: int) -> Topology:
    """Inspect process ``pid`` (a master or any worker) and everything below it.

    Reads the process tree and threads, the listening sockets the tree holds
    (with queue length and backlog now), how every thread waits, and
    ``net.ipv4.tcp_migrate_req``; then matches the layout to a strategy with
    :func:`match_strategy`.  Raises ``ProcessLookupError`` if ``pid`` does
    not exist; anything else it cannot read is listed in ``unreadable``.

    Args:
        pid: the process to start from.  Inspect the master to see all its
            workers; a worker alone shows only itself (and its children).
    """
    try:
        tree = procfs.descendants(pid)
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
        epolls: dict[int, list[procfs.EpollTarget] | None] = {}
        view.threads = [_read_thread(view, tid, set(listening), epolls, unreadable)
                        for tid in tids]
        processes.append(view)
    holders: dict[int, list[int]] = collections.defaultdict(list)
    for view in processes:
        for inode in sorted(set(view.listener_fds.values())):
            holders[inode].append(view.pid)
    listeners = []
    for inode, pids in holders.items():
        entry = listening[inode]
        if isinstance(entry, procfs.DiagSocket):
            queue, backlog = entry.queue, entry.backlog
        else:  # /proc/net/tcp: the queue, but no backlog
            queue, backlog = entry.rx_queue, None
        listeners.append(ListenerView(inode, entry.local, entry.port, sorted(pids), queue,
                                      backlog))
    listeners.sort(key=lambda listener: (listener.port, listener.address, listener.inode))
    found = Topology(pid, processes, listeners, procfs.tcp_migrate_req(), unreadable=unreadable)
    if found.tcp_migrate_req is None:
        unreadable.append("net.ipv4.tcp_migrate_req: absent (Linux < 5.14)")
    found.strategy, found.prediction = match_strategy(found)
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

    The acceptors are the worker threads waiting for a listener.  Several
    listeners on one port among them: ``reuseport``.  Otherwise by how they
    wait: ``accept`` is ``blocking`` (``locked`` if other workers sleep in
    ``flock``); ``select``/``poll`` is ``poll`` (``timeout`` when every
    ``poll()`` has a finite timeout, as CPython's ``accept()`` after
    ``settimeout()`` does); ``epoll`` is
    ``epoll-exclusive`` when every registration has the flag,
    ``shared-epoll`` when threads of one process share one epoll descriptor,
    ``locked`` when just one worker has the listener registered and the
    others wait without it (nginx's ``accept_mutex``), else ``epoll``.  No
    worker waiting but the inspected process: ``handoff``.  A layout caught
    mid-change (workers busy) matches by its most common wait.
    """
    workers = [found.process(pid) for pid in found.workers]
    acceptors = [thread for process in workers for thread in process.threads
                 if thread.listener_inode is not None]
    if not acceptors:
        root = found.process(found.pid) if found.pid not in found.workers else None
        if root is not None and any(t.listener_inode is not None and not t.inferred
                                    for t in root.threads):
            return "handoff", f"{PREDICTIONS['handoff']} ({_analysis_group('handoff')})"
        return None, _NO_WAITER
    ports = collections.defaultdict(set)
    listeners = {listener.inode: listener for listener in found.listeners}
    for thread in acceptors:
        listener = listeners.get(thread.listener_inode)
        ports[listener.port if listener else None].add(thread.listener_inode)
    if any(len(inodes) > 1 for inodes in ports.values()):
        strategy = "reuseport"
    else:
        kind = collections.Counter(thread.waits_in for thread in acceptors).most_common(1)[0][0]
        mine = [thread for thread in acceptors if thread.waits_in == kind]
        if kind == "accept":
            locked = any(thread.syscall == "flock" for process in workers
                         for thread in process.threads)
            strategy = "locked" if locked else "blocking"
        elif kind == "epoll":
            strategy = _epoll_strategy(workers, mine)
        elif kind == "poll" and all(thread.timed for thread in mine):
            strategy = "timeout"  # CPython's accept() after settimeout(): poll(fd, ms), then accept
        else:
            strategy = "poll"
    sentence = PREDICTIONS[strategy]
    if strategy == "locked" and all(thread.waits_in == "epoll" for thread in acceptors):
        sentence = _MUTEX_IN_EPOLL
    return strategy, f"{sentence} ({_analysis_group(strategy)})"


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


def format_topology(found: Topology) -> str:
    """The inspection as text for a terminal: listeners, then each process and its waits."""
    lines = [f"process {found.pid}: {len(found.processes)} process(es), "
             f"workers {' '.join(map(str, found.workers))}"]
    lines.append("listening sockets:")
    for listener in found.listeners or ():
        backlog = "?" if listener.backlog is None else listener.backlog
        lines.append(f"  {listener.address}:{listener.port}  inode {listener.inode}  "
                     f"queue {listener.queue}/{backlog}  held by "
                     f"{' '.join(map(str, listener.held_by))}")
    if not found.listeners:
        lines.append("  (none found)")
    lines.append("processes (thread: how it waits):")
    for process in found.processes:
        lines.append(f"  {process.pid} (parent {process.ppid})  {process.cmd[:70]}")
        for thread in process.threads:
            where = []
            if thread.syscall and thread.waits_in != "other":
                where.append(thread.syscall)
            elif thread.syscall:
                where.append(f"in {thread.syscall}")
            if thread.on_fd is not None:
                where.append(f"fd {thread.on_fd}")
            if thread.listener_inode is not None:
                where.append(f"listener {thread.listener_inode}")
            if thread.exclusive is not None:
                where.append("EPOLLEXCLUSIVE" if thread.exclusive else "not exclusive")
            lines.append(f"    {thread.tid:>7} {thread.waits_in:<8} {' '.join(where)}")
    lines.append(f"net.ipv4.tcp_migrate_req: {found.tcp_migrate_req}")
    lines.append(f"strategy: {found.strategy or '(none matched)'}")
    lines.append(f"prediction: {found.prediction}")
    for item in found.unreadable:
        lines.append(f"could not read: {item}")
    return "\n".join(lines)
