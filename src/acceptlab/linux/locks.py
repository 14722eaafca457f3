"""The locks a server's workers can queue on, and how Linux shows each one.

A lock around the wait for a connection (Apache's ``AcceptMutex``, uWSGI's
``--thunder-lock``, the kit's ``locked`` strategy) turns a herd into a queue:
one worker waits for the listener, the others wait for the lock.  Which lock
decides the order, and each kind is visible from outside in its own way:

* ``flock()`` and ``fcntl(F_SETLKW)`` locks: the waiter sleeps in that system
  call on a descriptor; ``/proc/locks`` lists every lock with the pid that holds
  it, and the blocked requests behind it (``->`` lines), by the file's inode;
* System V semaphores (``semop``/``semtimedop``; Apache's ``sysvsem``): the
  waiter's arguments name the semaphore set, ``/proc/sysvipc/sem`` lists the sets;
* futexes (a ``pthread_mutex_t`` or ``sem_t`` in memory shared by the workers):
  the waiter sleeps in ``futex()``; the operation (its second argument) says
  whether the futex is process-private (``FUTEX_PRIVATE_FLAG``: then it cannot
  be a lock between processes) and whether it is a priority-inheritance lock
  (``FUTEX_LOCK_PI``), whose 32-bit word holds the owner's thread id.

Pure parsing here, on text and numbers; reading memory is :mod:`acceptlab.linux.peek`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FileLock", "parse_proc_locks", "file_locks", "FutexOp", "futex_op", "pi_owner",
           "FUTEX_TID_MASK", "F_SETLKW", "F_OFD_SETLKW", "LOCK_KINDS", "parse_sysv_semaphores",
           "sysv_semaphores"]

# include/uapi/linux/futex.h
_FUTEX_COMMANDS = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
                   4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
                   7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
                   10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
                   12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
_FUTEX_PRIVATE_FLAG, _FUTEX_CLOCK_REALTIME = 128, 256
_PI_COMMANDS = {"FUTEX_LOCK_PI", "FUTEX_LOCK_PI2", "FUTEX_WAIT_REQUEUE_PI"}
_WAITING_COMMANDS = {"FUTEX_WAIT", "FUTEX_WAIT_BITSET", *_PI_COMMANDS}
FUTEX_TID_MASK = 0x3FFFFFFF  # the owner's thread id in a PI futex word (the rest: flag bits)

# include/uapi/asm-generic/fcntl.h
F_SETLKW, F_OFD_SETLKW = 7, 38

# The names an inspection gives each kind of lock (``lock.kind`` in its JSON).
LOCK_KINDS = {
    "flock": "flock() on a shared file",
    "fcntl": "fcntl() record lock",
    "sysv-sem": "System V semaphore",
    "pi-futex": "process-shared priority-inheritance futex (a PTHREAD_PRIO_INHERIT pthread lock)",
    "futex": "process-shared futex (a pthread lock or semaphore in shared memory)",
    "private-futex": "process-private futex (a lock or condition of one process's threads)",
    "shared-memory": "a lock in shared memory that is tried, never waited for "
                     "(nginx's accept_mutex)",
}


@dataclass(frozen=True)
class FileLock:
    """One line of ``/proc/locks``.

    ``kind`` is ``FLOCK``, ``POSIX`` (``fcntl``), ``OFDLCK`` (open-file-description
    ``fcntl``) or ``LEASE``; ``blocked`` marks a request waiting behind the lock
    above it (the ``->`` lines); ``pid`` is the process that took (or waits
    for) it, -1 for an OFD lock; ``inode`` and ``device`` name the locked file.
    """

    number: int
    blocked: bool
    kind: str
    access: str
    mode: str
    pid: int
    device: str
    inode: int


def parse_proc_locks(text: str) -> list[FileLock]:
    """Parse ``/proc/locks``: ``1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`` per line.

    A blocked request reads ``1: -> FLOCK  ADVISORY  WRITE 1235 00:1a:5678 0 EOF``
    (fs/locks.c, ``lock_get_status``).  The file's device and inode are
    ``major:minor:inode`` (the inode in decimal).
    """
    found = []
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        fields = rest.split()
        blocked = bool(fields) and fields[0] == "->"
        if blocked:
            fields = fields[1:]
        if len(fields) < 5 or not number.strip().isdigit():
            continue
        kind, access, mode, pid, where = fields[:5]
        major, minor, inode = (where.split(":") + ["", "", ""])[:3]
        try:
            found.append(FileLock(int(number), blocked, kind, access, mode, int(pid),
                                  f"{major}:{minor}", int(inode)))
        except ValueError:
            continue
    return found


def file_locks(inode: int) -> list[FileLock]:
    """Every lock and blocked request on the file with ``inode`` (from ``/proc/locks``)."""
    with open("/proc/locks", encoding="utf-8", errors="replace") as file:
        return [lock for lock in parse_proc_locks(file.read()) if lock.inode == inode]


@dataclass(frozen=True)
class FutexOp:
    """A ``futex()`` operation word, decoded: its command, and whether it is private or PI."""

    command: str
    private: bool
    pi: bool

    @property
    def waits(self) -> bool:
        """A command that sleeps until the futex changes (or, for PI, until it is handed over)."""
        return self.command in _WAITING_COMMANDS


def futex_op(op: int) -> FutexOp:
    """Decode ``futex()``'s second argument: ``0x86`` is ``FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG``."""
    command = _FUTEX_COMMANDS.get(op & ~(_FUTEX_PRIVATE_FLAG | _FUTEX_CLOCK_REALTIME) & 0xFFFFFFFF,
                                  f"futex op {op & 0x7F}")
    return FutexOp(command, bool(op & _FUTEX_PRIVATE_FLAG), command in _PI_COMMANDS)


def pi_owner(word: int) -> int | None:
    """The owner's thread id in a PI futex word (bit 31: waiters, 30: owner died); None if free."""
    owner = word & FUTEX_TID_MASK
    return owner or None


def parse_sysv_semaphores(text: str) -> dict[int, int]:
    """``/proc/sysvipc/sem`` as ``{semid: key}`` (header line skipped)."""
    found = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1].lstrip("-").isdigit():
            found[int(fields[1])] = int(fields[0])
    return found


def sysv_semaphores() -> dict[int, int]:
    """Every System V semaphore set of our IPC namespace, ``{semid: key}``."""
    with open("/proc/sysvipc/sem", encoding="utf-8", errors="replace") as file:
        return parse_sysv_semaphores(file.read())
