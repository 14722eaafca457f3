"""A lock around the wait for connections: found from outside, named, and what it predicts.

The layout of a lock around accept is one thread waiting for the listener (in
``accept``, ``epoll_wait`` or ``poll``) while the other workers wait for the
lock.  Seen at one instant, that is: exactly one acceptor, and beside it
threads queued on one lock that the workers share.  :func:`accept_lock` finds
it in an inspection and says which lock it is (the kinds of
:data:`acceptlab.linux.locks.LOCK_KINDS`), who holds it and who queues.

Two kinds of "one waiter at a time" are told apart here because they predict
opposite things:

* a lock that is *waited for* (``flock``, ``fcntl``, a System V semaphore, a
  futex in shared memory) queues the others in the kernel, which hands the
  lock on in order: the workers take turns;
* a lock that is only *tried* (nginx's ``accept_mutex`` in shared memory: the
  workers without it sleep in ``epoll_wait`` with a timeout and without the
  listener registered) is kept by its holder as long as the holder is idle:
  one worker takes most.

A process-private futex (``FUTEX_PRIVATE_FLAG``) is never a lock between
processes; within one process, threads idle in such futexes beside one
acceptor are a thread pool fed by that acceptor (:func:`fed_pool`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..linux.locks import LOCK_KINDS

if TYPE_CHECKING:  # topology imports this module; its classes are only annotations here
    from .topology import ProcessView
    from .waits import ThreadWait

__all__ = ["AcceptLock", "accept_lock", "tried_lock", "fed_pool", "LOCK_PREDICTIONS",
           "POOL_PREDICTION"]

_WAITED_FOR = ("flock", "fcntl", "sysv-sem", "pi-futex", "futex")
_ACROSS_PROCESSES_ONLY = ("pi-futex", "futex")  # threads of one process have other futexes

# What each kind of lock predicts under light load (sources: docs/sources.md, kernel-notes.md).
LOCK_PREDICTIONS = {
    "flock": "one waiter at a time behind an flock() lock: since Linux 5.0 an unlock wakes only "
             "the next request in the lock's queue (fs/locks.c, the tree of blocked requests), "
             "so the workers take turns, with about two wakeups per connection (the waiter on "
             "the listener, then the next in the lock's queue)",
    "fcntl": "one waiter at a time behind an fcntl() record lock: fs/locks.c queues it as it "
             "queues flock() (since Linux 5.0 an unlock wakes only the next request), so the "
             "workers take turns, with about two wakeups per connection",
    "sysv-sem": "one waiter at a time behind a System V semaphore (Apache's sysvsem): the "
                "kernel completes waiting semop() calls in FIFO order and gives the semaphore "
                "to the one it wakes (ipc/sem.c), so the workers take turns, with about two "
                "wakeups per connection",
    "pi-futex": "one waiter at a time behind a process-shared priority-inheritance lock (a PI "
                "futex: uWSGI's --thunder-lock, Apache's pthread AcceptMutex): on unlock the "
                "kernel hands it to its top waiter, by priority and first come, first served "
                "among equal priorities (Documentation/locking/rt-mutex.rst; every task that is "
                "not real-time counts as one priority, kernel/locking/rtmutex.c), so the "
                "workers take turns, with about two wakeups per connection",
    "futex": "one waiter at a time behind a process-shared futex lock: a wake takes the "
             "longest waiter of equal priority (kernel/futex), but the woken one must take the "
             "lock again and a worker coming back can take it first, so turns are likely, not "
             "certain, with about two wakeups per connection",
}
POOL_PREDICTION = ("one thread accepts every connection, beside threads idle on the process's "
                   "own queues (a pool it hands connections to, or an event loop's helpers): the "
                   "kernel's wake order plays no part; which thread serves is the process's "
                   "choice")


@dataclass
class AcceptLock:
    """The lock around a server's wait for connections.

    ``holder``: ``(pid, tid)`` of the one thread waiting for the listener;
    ``waiters``: ``(pid, tid)`` of the threads queued on the lock; ``key``: the
    lock's identity (one file, one semaphore set, one futex word in shared
    memory); ``owner``: the holder the lock itself names, where it does (a PI
    futex's word, ``/proc/locks``); ``evidence``: how it was found.
    """

    kind: str
    holder: tuple[int, int]
    waiters: list[tuple[int, int]] = field(default_factory=list)
    key: str | None = None
    owner: int | None = None
    evidence: str = ""

    @property
    def description(self) -> str:
        return LOCK_KINDS.get(self.kind, self.kind)

    def to_json(self) -> dict:
        return {"kind": self.kind, "holder": {"pid": self.holder[0], "tid": self.holder[1]},
                "waiters": [{"pid": pid, "tid": tid} for pid, tid in self.waiters],
                "key": self.key, "owner": self.owner, "evidence": self.evidence}


def _acceptors(workers: list[ProcessView]) -> list[tuple[ProcessView, ThreadWait]]:
    return [(process, thread) for process in workers for thread in process.threads
            if thread.listener_inode is not None]


def accept_lock(workers: list[ProcessView]) -> AcceptLock | None:
    """A lock that is waited for around the one acceptor among ``workers``, or None.

    The rule: exactly one thread of the workers waits for a listener, and
    threads of the workers queue on one shared lock (a futex counts only if
    its waiters are in other processes than the acceptor: threads of one
    process share futexes for many other reasons).
    """
    acceptors = _acceptors(workers)
    if len(acceptors) != 1:
        return None
    (holder_process, holder), = acceptors
    queued: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for process in workers:
        for thread in process.threads:
            lock = thread.lock
            if lock is None or lock.kind not in _WAITED_FOR or thread is holder:
                continue
            if lock.kind in _ACROSS_PROCESSES_ONLY and process.pid == holder_process.pid:
                continue
            queued.setdefault((lock.kind, lock.key), []).append((process.pid, thread.tid))
    if not queued:
        return None
    (kind, key), waiters = max(queued.items(), key=lambda item: len(item[1]))
    owners = {thread.lock.owner for process in workers for thread in process.threads
              if thread.lock is not None and thread.lock.key == key and thread.lock.owner}
    owner = owners.pop() if len(owners) == 1 else None
    said = (f"{len(waiters)} thread(s) of {len({pid for pid, _ in waiters})} process(es) queue on "
            f"it ({key}) while thread {holder.tid} of process "
            f"{holder_process.pid} alone waits for the listener ({holder.syscall})")
    if owner is not None:
        named = holder.tid if kind == "pi-futex" else holder_process.pid
        said += ("; the lock names it as its owner" if owner == named
                 else f"; the lock names {owner} as its owner")
    return AcceptLock(kind, (holder_process.pid, holder.tid), sorted(waiters), key, owner, said)


def tried_lock(workers: list[ProcessView]) -> AcceptLock | None:
    """nginx's accept_mutex: one worker's epoll has the listener, the others wait without it.

    The lock lives in shared memory and is only tried (``ngx_shmtx_trylock``),
    so nobody sleeps on it; a worker that did not get it removes the listener
    from its epoll and sleeps in ``epoll_wait`` with a timeout
    (``accept_mutex_delay``, 500 ms by default) before trying again.
    """
    with_listener = {process.pid for process, _ in _acceptors(workers)}
    if len(with_listener) != 1:
        return None
    holder_process, holder = _acceptors(workers)[0]
    if holder.waits_in != "epoll":
        return None
    without = [(process.pid, thread) for process in workers if process.pid not in with_listener
               for thread in process.threads if thread.waits_in == "epoll"]
    if not without:
        return None
    timeouts = sorted({thread.timeout_ms for _, thread in without
                       if thread.timeout_ms is not None})
    said = (f"only process {holder_process.pid}'s epoll registers the listener; "
            f"{len(without)} other worker thread(s) wait in epoll_wait without it"
            + (f", with a timeout of {', '.join(f'{t:g}' for t in timeouts)} ms (their epoll "
               "fdinfo and /proc/TID/syscall)" if timeouts else " (their epoll fdinfo)"))
    return AcceptLock("shared-memory", (holder_process.pid, holder.tid),
                      sorted((pid, thread.tid) for pid, thread in without), None, None, said)


def fed_pool(workers: list[ProcessView]) -> bool:
    """One process, one acceptor thread, and at least two other threads idle in private futexes.

    A thread pool behind one acceptor: its threads wait for work on a queue
    (a condition or a lock of that process), not for the listener.  From
    outside it looks the same as one event loop with idle helper threads
    (Node's libuv pool): either way the kernel has one waiter to choose.
    """
    if len(workers) != 1:
        return False
    acceptors = _acceptors(workers)
    if len(acceptors) != 1:
        return False
    idle = [thread for thread in workers[0].threads if thread.lock is not None
            and thread.lock.kind == "private-futex"]
    return len(idle) >= 2
