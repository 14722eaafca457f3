"""Looking into another process without stopping it: its memory, and its sockets' options.

Why this module exists: ``/proc/TID/syscall`` tells which system call a thread
sleeps in and gives its six arguments as numbers, but for some calls the
arguments are addresses.  ``poll(fds, nfds, timeout)`` names the array of
descriptors it waits for by its address; ``select()`` passes bitmaps; a futex
is a 32-bit word in memory.  What a thread waits *for* is in the process's
memory at those addresses, and Linux lets anyone who may ptrace-read a process
(the same user, or root) read that memory through ``/proc/PID/mem``, without
attaching to it and without stopping it.  Nothing here writes, and nothing
attaches: a file is opened read-only and read at an offset.

Reading a moving target: the thread may return from its call between the read
of ``/proc/TID/syscall`` and the read of its memory, and reuse the buffer.
:func:`read_while_waiting` reads the call again afterwards and trusts the
memory only if the thread still sleeps in the same call with the same
arguments (then the kernel still holds the copy it made from that memory).

A socket's options are another thing ``/proc`` does not show (``TCP_DEFER_ACCEPT``
on a listener, for instance): :func:`socket_option` asks the kernel for a
duplicate of the process's descriptor (``pidfd_getfd``, Linux 5.6, with the
same permission as ptrace-attaching, but no tracing), reads the option with
``getsockopt`` and closes the duplicate at once.

Linux only.  Readers raise ``OSError`` (``PermissionError`` for a process we
may not read); the pure ``parse_*`` functions take bytes and are tested on
fixtures.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from .procfs import Syscall, thread_syscall

__all__ = ["POLLFD", "PollFd", "Mapping", "read_memory", "read_while_waiting", "Moved",
           "parse_pollfds", "parse_fd_set", "parse_timespec", "parse_timeval", "parse_sembufs",
           "parse_maps", "mapping_of", "socket_option", "PIDFD_GETFD"]

POLLFD = struct.Struct("=ihh")  # struct pollfd: int fd; short events; short revents
_TIMESPEC = struct.Struct("=qq")  # struct timespec (64-bit): seconds, nanoseconds
_TIMEVAL = struct.Struct("=qq")  # struct timeval (64-bit): seconds, microseconds
_SEMBUF = struct.Struct("=Hhh")  # struct sembuf: unsigned short sem_num; short sem_op, sem_flg
_LONG_BITS = 64

# include/uapi/asm-generic/unistd.h: the same number on x86-64 and aarch64.
PIDFD_OPEN, PIDFD_GETFD = 434, 438
_LIMIT = 1 << 16  # never read more than this many entries of a caller's array


class Moved(OSError):
    """The thread left (or changed) its system call while its memory was read."""


@dataclass(frozen=True)
class PollFd:
    """One ``struct pollfd``: the descriptor and the events asked for (``POLLIN`` is 1)."""

    fd: int
    events: int


def parse_pollfds(data: bytes) -> list[PollFd]:
    """The entries of a ``pollfd`` array (a negative descriptor, which poll ignores, left out)."""
    found = []
    for offset in range(0, len(data) - POLLFD.size + 1, POLLFD.size):
        fd, events, _ = POLLFD.unpack_from(data, offset)
        if fd >= 0:
            found.append(PollFd(fd, events & 0xFFFF))
    return found


def parse_fd_set(data: bytes, nfds: int) -> list[int]:
    """The descriptors set in a ``select()`` bitmap of ``nfds`` bits (an array of longs)."""
    words = len(data) // 8
    found = []
    for index, word in enumerate(struct.unpack(f"={words}Q", data[:words * 8])):
        while word:
            low = word & -word
            fd = index * _LONG_BITS + low.bit_length() - 1
            if fd < nfds:
                found.append(fd)
            word ^= low
    return found


def parse_timespec(data: bytes) -> float:
    """A ``struct timespec`` as milliseconds."""
    seconds, nanoseconds = _TIMESPEC.unpack_from(data)
    return seconds * 1e3 + nanoseconds / 1e6


def parse_timeval(data: bytes) -> float:
    """A ``struct timeval`` as milliseconds."""
    seconds, microseconds = _TIMEVAL.unpack_from(data)
    return seconds * 1e3 + microseconds / 1e3


def parse_sembufs(data: bytes) -> list[tuple[int, int, int]]:
    """``semop()``'s operations, ``(sem_num, sem_op, sem_flg)`` each (``sem_op < 0``: take)."""
    return [_SEMBUF.unpack_from(data, offset)
            for offset in range(0, len(data) - _SEMBUF.size + 1, _SEMBUF.size)]


@dataclass(frozen=True)
class Mapping:
    """One line of ``/proc/PID/maps``: an address range and what backs it."""

    start: int
    end: int
    perms: str
    offset: int
    device: str
    inode: int
    path: str

    @property
    def shared(self) -> bool:
        """Mapped ``MAP_SHARED`` (the ``s`` in ``rw-s``): other processes may map the same pages."""
        return self.perms.endswith("s")


def parse_maps(text: str) -> list[Mapping]:
    """Parse ``/proc/PID/maps``: ``start-end perms offset dev inode [path]`` per line."""
    found = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, _, end = fields[0].partition("-")
        path = fields[5].strip() if len(fields) > 5 else ""
        found.append(Mapping(int(start, 16), int(end, 16), fields[1], int(fields[2], 16),
                             fields[3], int(fields[4]), path))
    return found


def mapping_of(pid: int, address: int) -> Mapping | None:
    """The mapping of ``pid`` that holds ``address`` (None if none does)."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as file:
        for mapping in parse_maps(file.read()):
            if mapping.start <= address < mapping.end:
                return mapping
    return None


def read_memory(pid: int, address: int, size: int) -> bytes:
    """``size`` bytes of process ``pid``'s memory at ``address``, read through ``/proc/PID/mem``.

    Needs ptrace-read permission (same user, or root).  Raises ``OSError``:
    ``PermissionError``, or ``EIO`` for an address the process has not mapped.
    """
    if size <= 0:
        return b""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, size, address)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(errno.EIO, f"read {len(data)} of {size} bytes at {address:#x}")
    return data


def read_while_waiting(pid: int, tid: int, call: Syscall,
                       read: Callable[[], object]) -> object:
    """Run ``read()`` (which reads ``pid``'s memory) and check that ``tid`` still waits in ``call``.

    Raises :class:`Moved` if the thread's system call or its arguments changed
    meanwhile: what was read may then belong to another call.
    """
    result = read()
    again = thread_syscall(pid, tid)
    if again != call:
        raise Moved(errno.EAGAIN, "the thread left its system call while it was read")
    return result


def bounded(count: int) -> int:
    """An array length read from another process, capped so a wrong guess cannot read gigabytes."""
    if count < 0 or count > _LIMIT:
        raise OSError(errno.EINVAL, f"implausible length {count}")
    return count


# --------------------------------------------------------------------------- socket options

_libc = None


def _syscall() -> Callable[..., int]:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    function = _libc.syscall
    function.restype = ctypes.c_long
    return function


def socket_option(pid: int, fd: int, level: int, option: int) -> int:
    """``getsockopt(level, option)`` of descriptor ``fd`` of process ``pid``, as an int.

    Asks the kernel for a duplicate of the descriptor (``pidfd_open`` then
    ``pidfd_getfd``: Linux 5.6, and the right to ptrace-attach to ``pid``:
    root, or the same user where ``kernel.yama.ptrace_scope`` allows it), reads
    the option on the duplicate, and closes it.  Nothing is attached, nothing
    changes for ``pid``: the socket is the same, and one more descriptor on it
    lives for a few microseconds in this process.

    Raises ``OSError`` (``EPERM``, ``ENOSYS`` on an older kernel, ``EBADF``...).
    """
    if platform.system() != "Linux":
        raise OSError(errno.ENOSYS, "pidfd_getfd is Linux's")
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else _raw_pidfd_open(pid)
    try:
        call = _syscall()
        copy = call(ctypes.c_long(PIDFD_GETFD), ctypes.c_long(pidfd), ctypes.c_long(fd),
                    ctypes.c_long(0))
        if copy < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"pidfd_getfd: {os.strerror(code)}")
    finally:
        os.close(pidfd)
    try:
        sock = socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        raise
    try:
        return sock.getsockopt(level, option)
    finally:
        sock.close()


def _raw_pidfd_open(pid: int) -> int:
    fd = _syscall()(ctypes.c_long(PIDFD_OPEN), ctypes.c_long(pid), ctypes.c_long(0))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"pidfd_open: {os.strerror(code)}")
    return fd
