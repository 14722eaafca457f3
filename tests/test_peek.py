"""peek and locks: the parsers on bytes and text laid out as the kernel lays them out, and the
readers on this very process (its own memory, its own socket), so no other process is needed."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys

import pytest

from acceptlab.linux import locks, peek, procfs

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

PROC_LOCKS = """1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146595 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4243 fe:00:2146595 0 EOF
2: POSIX  ADVISORY  WRITE 4300 00:1a:77 0 EOF
3: OFDLCK ADVISORY  READ  -1 08:01:99 0 99
"""

SYSVIPC_SEM = """       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
         0          5   600          1     0     0     0     0 1765000000 1765000000
"""

MAPS = """55d0c0000000-55d0c0001000 r--p 00000000 fe:00 123 /usr/bin/python3
7f8a28056000-7f8a28057000 rw-s 00000000 00:01 39070                      /dev/zero (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
"""


def test_pollfd_arrays_skip_negative_descriptors():
    data = struct.pack("=ihh", 15, 1, 0) + struct.pack("=ihh", -1, 1, 0) + \
        struct.pack("=ihh", 3, 4, 0)
    assert peek.parse_pollfds(data) == [peek.PollFd(15, 1), peek.PollFd(3, 4)]


def test_fd_set_bitmaps_respect_nfds():
    data = struct.pack("=2Q", (1 << 3) | (1 << 14), 1 << (70 - 64))  # two longs, native order
    assert peek.parse_fd_set(data, 71) == [3, 14, 70]
    assert peek.parse_fd_set(data, 15) == [3, 14]  # bits at or past nfds are not in the set


def test_time_structures_and_semaphore_operations():
    assert peek.parse_timespec(struct.pack("=qq", 1, 500_000_000)) == 1500.0
    assert peek.parse_timeval(struct.pack("=qq", 0, 250_000)) == 250.0
    assert peek.parse_sembufs(struct.pack("=Hhh", 0, -1, 0x1000)) == [(0, -1, 0x1000)]


def test_maps_and_the_shared_flag():
    binary, shared, stack = peek.parse_maps(MAPS)
    assert not binary.shared and shared.shared and not stack.shared
    assert (shared.start, shared.inode, shared.path) == (0x7F8A28056000, 39070, "/dev/zero (deleted)")


def test_futex_operations_decoded():
    pi = locks.futex_op(6)  # what uWSGI's waiting workers show: FUTEX_LOCK_PI, not private
    assert (pi.command, pi.private, pi.pi, pi.waits) == ("FUTEX_LOCK_PI", False, True, True)
    gil = locks.futex_op(9 | 128)  # FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG
    assert (gil.command, gil.private, gil.pi) == ("FUTEX_WAIT_BITSET", True, False)
    assert not locks.futex_op(1).waits  # FUTEX_WAKE
    assert locks.pi_owner(0x80002000) == 0x2000 and locks.pi_owner(0) is None


def test_proc_locks_holders_and_blocked_requests():
    held, blocked, posix, ofd = locks.parse_proc_locks(PROC_LOCKS)
    assert (held.kind, held.blocked, held.pid, held.inode) == ("FLOCK", False, 4242, 2146595)
    assert blocked.blocked and blocked.pid == 4243 and blocked.number == 1
    assert (posix.kind, posix.device, posix.inode) == ("POSIX", "00:1a", 77)
    assert ofd.pid == -1 and ofd.kind == "OFDLCK"


def test_sysv_semaphore_sets():
    assert locks.parse_sysv_semaphores(SYSVIPC_SEM) == {5: 0}


def test_new_system_call_numbers():
    assert procfs.syscall_name(72, "x86_64") == "fcntl"
    assert procfs.syscall_name(65, "x86_64") == "semop"
    assert procfs.syscall_name(193, "aarch64") == "semop"


@linux_only
def test_reading_this_process_memory_and_mappings():
    buffer = ctypes.create_string_buffer(b"acceptlab", 16)
    address = ctypes.addressof(buffer)
    assert peek.read_memory(os.getpid(), address, 9) == b"acceptlab"
    mapping = peek.mapping_of(os.getpid(), address)
    assert mapping is not None and mapping.start <= address < mapping.end
    with pytest.raises(OSError):
        peek.read_memory(os.getpid(), 8, 8)  # nothing is mapped at address 8


@pytest.mark.system
@linux_only
def test_a_socket_option_read_through_pidfd_getfd():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        listener.listen()
        try:
            value = peek.socket_option(os.getpid(), listener.fileno(), socket.IPPROTO_TCP,
                                       socket.TCP_DEFER_ACCEPT)
        except OSError as exc:  # a kernel before 5.6, or a seccomp filter: say so
            pytest.skip(f"pidfd_getfd unavailable here: {exc}")
        assert value == listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) >= 5
        before = len(os.listdir("/proc/self/fd"))
        peek.socket_option(os.getpid(), listener.fileno(), socket.SOL_SOCKET,
                           socket.SO_ACCEPTCONN)
        assert len(os.listdir("/proc/self/fd")) == before  # the duplicate is closed again
