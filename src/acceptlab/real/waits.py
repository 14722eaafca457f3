"""How one thread of a server waits right now, and the evidence for it.

``/proc/TID/syscall`` names the system call a thread sleeps in and its six
arguments.  That is enough for ``accept(fd)`` (the descriptor is the first
argument) and, with the epoll descriptor's ``/proc/PID/fdinfo``, for
``epoll_wait``.  For the others the arguments point into the process's memory,
and :mod:`acceptlab.linux.peek` reads what they point to:

=================  ==========================================================
``poll``/``ppoll``  the ``pollfd`` array: the descriptors it waits for
``select``          the read bitmap: likewise
``futex``           the futex word (a PI lock's owner), and the mapping that
                    holds it (shared between processes, or private)
``semop``           the semaphore operations (a ``-1`` waits to take)
``flock``/``fcntl`` nothing in memory: ``/proc/locks`` has the holder
=================  ==========================================================

Each :class:`ThreadWait` says what was found and, in ``evidence``, where it was
read.  Where the memory could not be read, the descriptor set is *unknown*
(``fds`` is None, and no listener is claimed): a guess would mislead (a
master's ``poll()`` on a pipe to its workers is not a wait for connections).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

from ..linux import locks, peek, procfs

__all__ = ["ThreadWait", "LockWait", "ProcessReader"]

_POLLIN, _POLLRDNORM = 0x1, 0x40


@dataclass
class LockWait:
    """A lock a thread queues on: its kind (a :data:`acceptlab.linux.locks.LOCK_KINDS` key),
    an identity that is the same in every process that shares the lock, and its holder if known
    (a thread id for a PI futex, a process id for a file lock)."""

    kind: str
    key: str
    owner: int | None = None
    shared: bool = True  # may be shared between processes (not a process-private futex)

    def to_json(self) -> dict:
        return {"kind": self.kind, "key": self.key, "owner": self.owner}


@dataclass
class ThreadWait:
    """How one thread waits right now.

    ``waits_in``: ``accept``, ``epoll``, ``poll``, ``select``, ``other`` or
    ``running``.  ``on_fd``: the listener for accept, the epoll descriptor for
    epoll (None for poll and select).  ``fds``: the descriptors the wait covers
    (accept: its one; epoll: every registration; poll/select: the set read from
    memory), None where they could not be read.  ``listener_fd`` and
    ``listener_inode``: the listening socket among them, if any.  ``exclusive``:
    for an epoll wait on a listener, whether it has ``EPOLLEXCLUSIVE``.
    ``timeout_ms``: the wait's timeout, None for none (or unknown).  ``lock``:
    the lock it queues on (``flock``, ``fcntl``, ``semop``, ``futex``).
    ``evidence``: where each of these was read, in words.
    """

    tid: int
    waits_in: str
    on_fd: int | None = None
    listener_inode: int | None = None
    exclusive: bool | None = None
    syscall: str | None = None
    timed: bool = False  # a poll() with a finite timeout (CPython's socket timeout)
    fds: list[int] | None = None
    listener_fd: int | None = None
    timeout_ms: float | None = None
    lock: LockWait | None = None
    evidence: str = ""

    def to_json(self) -> dict:
        return {"tid": self.tid, "waits_in": self.waits_in, "on_fd": self.on_fd,
                "listener_inode": self.listener_inode, "exclusive": self.exclusive,
                "syscall": self.syscall, "fds": self.fds, "listener_fd": self.listener_fd,
                "timeout_ms": self.timeout_ms,
                "lock": self.lock.to_json() if self.lock else None, "evidence": self.evidence}


def _int32(value: int) -> int:
    """A C ``int`` argument as ``/proc/TID/syscall`` prints it (a register, maybe sign-extended)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _milliseconds(value: int) -> float | None:
    """An ``int`` timeout in ms (negative: none)."""
    value = _int32(value)
    return None if value < 0 else float(value)


@dataclass
class ProcessReader:
    """Reads the waits of one process's threads, with the caches they share.

    Args:
        pid: the process.
        listener_fds: its descriptors that are listening sockets, ``{fd: inode}``.
        listening: every listening socket's inode (to recognise one in an epoll).
        unreadable: where to note what could not be read.
    """

    pid: int
    listener_fds: dict[int, int]
    listening: set[int]
    unreadable: list[str]
    _epolls: dict = field(default_factory=dict)

    def thread(self, tid: int) -> ThreadWait:
        """How thread ``tid`` waits, with the evidence."""
        path = f"/proc/{self.pid}/task/{tid}/syscall"
        try:
            call = procfs.thread_syscall(self.pid, tid)
        except FileNotFoundError:
            return ThreadWait(tid, "other", evidence="ended while it was read")
        except OSError as exc:
            self.unreadable.append(f"{path}: {exc.strerror or exc}")
            return ThreadWait(tid, "other", evidence=f"unknown: {path}: {exc.strerror or exc}")
        if call.state == "running":
            return ThreadWait(tid, "running",
                              evidence=f"{path} says running (on a CPU or runnable)")
        if call.state == "user":
            return ThreadWait(tid, "other", syscall="user space",
                              evidence=f"{path}: blocked outside a system call")
        name = procfs.syscall_name(call.number)
        kind = procfs.WAIT_KINDS.get(name or "", "other")
        wait = ThreadWait(tid, kind, syscall=name or f"syscall {call.number}",
                          evidence=f"{path}: {name or call.number}")
        reader = {"accept": self._accept, "epoll": self._epoll, "poll": self._poll,
                  "select": self._select}.get(kind) or {
            "flock": self._file_lock, "fcntl": self._file_lock, "semop": self._semaphore,
            "semtimedop": self._semaphore, "futex": self._futex}.get(name or "")
        if reader is None:
            return wait
        try:
            reader(wait, call)
        except peek.Moved:
            wait.fds, wait.listener_fd, wait.listener_inode = None, None, None
            wait.evidence += "; it left the call while its arguments were read: unknown"
        except OSError as exc:
            wait.fds, wait.listener_fd, wait.listener_inode = None, None, None
            where = exc.filename or f"/proc/{self.pid}/mem"
            self.unreadable.append(f"{where}: {exc.strerror or exc}")
            wait.evidence += f"; unknown: {where}: {exc.strerror or exc}"
        return wait

    # ------------------------------------------------------------------ descriptors

    def _claim(self, wait: ThreadWait, fds: list[int]) -> str:
        """Set ``fds`` and the listener among them; return the words that say so."""
        wait.fds = sorted(fds)
        mine = [fd for fd in wait.fds if fd in self.listener_fds]
        if mine:
            wait.listener_fd, wait.listener_inode = mine[0], self.listener_fds[mine[0]]
            return f"the listener is fd {mine[0]}"
        held = sorted(self.listener_fds)
        return ("no listener among them" + (f" (the process's listener is fd "
                                            f"{' '.join(map(str, held))})" if held else ""))

    def _accept(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        wait.on_fd = call.args[0]
        said = self._claim(wait, [wait.on_fd])
        wait.evidence += f" on fd {wait.on_fd}: {said}"

    def _epoll(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        wait.on_fd = epfd = call.args[0]
        if wait.syscall == "epoll_pwait2":  # its timeout is a struct timespec pointer
            wait.timeout_ms = (None if not call.args[3] else peek.read_while_waiting(
                self.pid, wait.tid, call, lambda: peek.parse_timespec(
                    peek.read_memory(self.pid, call.args[3], 16))))
        else:
            wait.timeout_ms = _milliseconds(call.args[3])
        if epfd not in self._epolls:
            self._epolls[epfd] = procfs.epoll_targets(self.pid, epfd)
        targets = self._epolls[epfd]
        if targets is None:
            wait.evidence += f" on fd {epfd}, which is not an epoll: unknown"
            return
        said = self._claim(wait, [target.fd for target in targets])
        on_listener = [t for t in targets if t.fd == wait.listener_fd]
        if on_listener:
            wait.exclusive = on_listener[0].exclusive
            said += ", EPOLLEXCLUSIVE" if wait.exclusive else ", not exclusive"
        wait.evidence += (f" on epoll fd {epfd}, which watches fds "
                          f"{' '.join(map(str, wait.fds)) or 'none'} (/proc/{self.pid}/fdinfo/"
                          f"{epfd}): {said}; timeout {_show_timeout(wait.timeout_ms)}")

    def _poll(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        address, count = call.args[0], peek.bounded(call.args[1])

        def read() -> tuple[list[peek.PollFd], float | None]:
            entries = peek.parse_pollfds(peek.read_memory(self.pid, address,
                                                          count * peek.POLLFD.size))
            if wait.syscall == "poll":
                timeout = _milliseconds(call.args[2])
            else:  # ppoll: a struct timespec pointer, NULL for none
                timeout = (None if not call.args[2] else
                           peek.parse_timespec(peek.read_memory(self.pid, call.args[2], 16)))
            return entries, timeout

        entries, wait.timeout_ms = peek.read_while_waiting(self.pid, wait.tid, call, read)
        wait.timed = wait.timeout_ms is not None
        readable = [entry.fd for entry in entries if entry.events & (_POLLIN | _POLLRDNORM)]
        said = self._claim(wait, readable)
        wait.evidence += (f": pollfd array of {count} read from /proc/{self.pid}/mem, "
                          f"fds {' '.join(map(str, wait.fds)) or 'none'} for reading: {said}; "
                          f"timeout {_show_timeout(wait.timeout_ms)}")

    def _select(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        nfds, address = peek.bounded(call.args[0]), call.args[1]
        size = math.ceil(nfds / 64) * 8

        def read() -> tuple[list[int], float | None]:
            fds = peek.parse_fd_set(peek.read_memory(self.pid, address, size), nfds) \
                if address else []
            pointer = call.args[4]
            if not pointer:
                timeout = None
            elif wait.syscall == "select":
                timeout = peek.parse_timeval(peek.read_memory(self.pid, pointer, 16))
            else:  # pselect6
                timeout = peek.parse_timespec(peek.read_memory(self.pid, pointer, 16))
            return fds, timeout

        fds, wait.timeout_ms = peek.read_while_waiting(self.pid, wait.tid, call, read)
        said = self._claim(wait, fds)
        wait.evidence += (f": read set of nfds {nfds} read from /proc/{self.pid}/mem, fds "
                          f"{' '.join(map(str, wait.fds)) or 'none'}: {said}; "
                          f"timeout {_show_timeout(wait.timeout_ms)}")

    # ------------------------------------------------------------------ locks

    def _file_lock(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        fd = call.args[0]
        if wait.syscall == "fcntl" and call.args[1] not in (locks.F_SETLKW, locks.F_OFD_SETLKW):
            wait.evidence += f" on fd {fd}, command {call.args[1]}: not a lock wait"
            return
        info = os.stat(f"/proc/{self.pid}/fd/{fd}")
        device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
        kinds = ("FLOCK",) if wait.syscall == "flock" else ("POSIX", "OFDLCK")
        holders = [lock.pid for lock in locks.file_locks(info.st_ino)
                   if not lock.blocked and lock.kind in kinds]
        kind = "flock" if wait.syscall == "flock" else "fcntl"
        wait.lock = LockWait(kind, f"file {device}:{info.st_ino}",
                             holders[0] if holders and holders[0] > 0 else None)
        held = (f"held by pid {holders[0]}" if wait.lock.owner else
                "an open-file-description lock (no pid)" if holders else "holder not listed")
        wait.evidence += f" on fd {fd}, file inode {info.st_ino}: {held} (/proc/locks)"

    def _semaphore(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        semid, address, count = call.args[0], call.args[1], peek.bounded(call.args[2])
        operations = peek.read_while_waiting(self.pid, wait.tid, call, lambda: peek.parse_sembufs(
            peek.read_memory(self.pid, address, count * 6)))
        if not any(op <= 0 for _, op, _ in operations):
            wait.evidence += f" on set {semid}: no operation that waits"
            return
        wait.lock = LockWait("sysv-sem", f"semid {semid}")
        shown = ", ".join(f"sem {number} {op:+d}" for number, op, _ in operations)
        wait.evidence += (f" on semaphore set {semid} ({shown}; the operations read from "
                          f"/proc/{self.pid}/mem)")

    def _futex(self, wait: ThreadWait, call: procfs.Syscall) -> None:
        address, op = call.args[0], locks.futex_op(call.args[1])
        wait.evidence += f"({op.command}{' | FUTEX_PRIVATE_FLAG' if op.private else ''})"
        if not op.waits:
            return
        if op.private:
            wait.lock = LockWait("private-futex", f"private {self.pid}:{address:#x}", shared=False)
            wait.evidence += " on a process-private futex: not a lock between processes"
            return
        mapping = peek.mapping_of(self.pid, address)
        if mapping is None or not mapping.shared:
            wait.lock = LockWait("private-futex", f"private {self.pid}:{address:#x}", shared=False)
            wait.evidence += f" on {address:#x}, in memory this process does not share"
            return
        offset = mapping.offset + address - mapping.start
        key = f"shared {mapping.device}:{mapping.inode}+{offset:#x}"
        wait.lock = LockWait("pi-futex" if op.pi else "futex", key)
        wait.evidence += (f" on {address:#x}, in a shared mapping ({mapping.path or 'anonymous'},"
                          f" inode {mapping.inode}, offset {offset:#x}; /proc/{self.pid}/maps)")
        if op.pi:
            word = peek.read_while_waiting(self.pid, wait.tid, call, lambda: int.from_bytes(
                peek.read_memory(self.pid, address, 4), sys.byteorder))
            wait.lock.owner = locks.pi_owner(word)
            wait.evidence += (f"; its word {word:#010x} names owner tid {wait.lock.owner}"
                              if wait.lock.owner else "; its word names no owner")


def _show_timeout(milliseconds: float | None) -> str:
    return "none" if milliseconds is None else f"{milliseconds:g} ms"
