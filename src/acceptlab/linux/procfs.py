"""Reading any server's accept topology from ``/proc`` and the kernel's socket tables.

Why this module exists: a pre-forked server written by someone else (gunicorn,
uvicorn, nginx, Node's cluster) keeps no event log for us, yet Linux shows a
great deal about it to anyone allowed to read its ``/proc`` entries, without
ptrace and without root for one's own processes:

* ``/proc/PID/task/TID/syscall``: the system call a thread sleeps in right now
  and its arguments (``accept4(3, ...)``, ``epoll_wait(5, ...)``);
* ``/proc/PID/fd/N``: ``socket:[INODE]`` names the socket behind a descriptor;
* ``/proc/PID/fdinfo/EPFD``: each registration of an epoll instance, with the
  registered socket's inode and its event mask (bit ``0x10000000`` is
  ``EPOLLEXCLUSIVE``);
* ``/proc/PID/net/tcp`` and ``tcp6``: every TCP socket of the process's network
  namespace; on a LISTEN row ``rx_queue`` is the accept-queue length;
* ``/proc/PID/task/TID/status``: ``voluntary_ctxt_switches``, the times the
  thread slept and was woken;
* the ``sock_diag`` netlink family (what ``ss`` uses): a listener's queue *and*
  backlog, and a one-socket lookup by address and port, fast enough to find the
  server side of each connection while a client holds it open.

The pure ``parse_*`` functions take the text (or bytes) such a file holds and
are tested on fixtures; the thin readers below them open the files.  A reader
raises ``OSError`` (``PermissionError``, ``FileNotFoundError`` for a process
that just exited): callers that inspect other people's processes catch it and
say what they could not read.

Linux only; the system call numbers are those of x86-64 and aarch64 (any other
machine reports every wait as ``other``).
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import re
import socket
import struct
from dataclasses import dataclass
from typing import Iterable

from .kernel import _decode_address

__all__ = [
    "SYSCALL_NAMES", "WAIT_KINDS", "Syscall", "EpollTarget", "TcpRow", "DiagSocket",
    "EPOLLEXCLUSIVE", "TCP_STATES",
    "parse_syscall", "syscall_name", "parse_epoll_fdinfo", "parse_socket_link",
    "parse_tcp_table", "parse_status", "parse_stat", "parse_diag_messages",
    "process_ids", "process_state", "parent_of", "descendants", "thread_ids", "command_line", "socket_inodes",
    "epoll_targets", "thread_syscall", "voluntary_switches", "tcp_table", "tcp_migrate_req",
    "SockDiag",
]

EPOLLEXCLUSIVE = 1 << 28  # include/uapi/linux/eventpoll.h

# System call numbers of the ways a server waits (arch/x86/entry/syscalls/syscall_64.tbl;
# aarch64 uses the generic table, include/uapi/asm-generic/unistd.h, which has no plain
# epoll_wait, poll or select: libc calls epoll_pwait, ppoll and pselect6 there).
SYSCALL_NAMES: dict[str, dict[int, str]] = {
    "x86_64": {43: "accept", 288: "accept4", 232: "epoll_wait", 281: "epoll_pwait",
               441: "epoll_pwait2", 7: "poll", 271: "ppoll", 23: "select", 270: "pselect6",
               73: "flock", 202: "futex", 0: "read", 45: "recvfrom", 61: "wait4",
               35: "nanosleep", 230: "clock_nanosleep", 130: "rt_sigsuspend", 34: "pause",
               247: "waitid", 72: "fcntl", 65: "semop", 220: "semtimedop", 449: "futex_waitv"},
    "aarch64": {202: "accept", 242: "accept4", 22: "epoll_pwait", 441: "epoll_pwait2",
                73: "ppoll", 72: "pselect6", 32: "flock", 98: "futex", 63: "read",
                207: "recvfrom", 260: "wait4", 101: "nanosleep", 115: "clock_nanosleep",
                133: "rt_sigsuspend", 95: "waitid", 25: "fcntl", 193: "semop",
                192: "semtimedop", 449: "futex_waitv"},
}

# How each waiting system call is named in an inspection (the JSON schema's ``waits_in``).
WAIT_KINDS = {"accept": "accept", "accept4": "accept", "epoll_wait": "epoll",
              "epoll_pwait": "epoll", "epoll_pwait2": "epoll", "poll": "poll", "ppoll": "poll",
              "select": "select", "pselect6": "select"}

# include/net/tcp_states.h
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}
TCP_LISTEN = 10


# --------------------------------------------------------------------------- pure parsing


@dataclass(frozen=True)
class Syscall:
    """What ``/proc/TID/syscall`` said about one thread.

    ``state`` is ``'running'`` (on a CPU, or runnable), ``'user'`` (blocked but
    not in a system call: ``-1`` in the file) or ``'syscall'``; then ``number``
    and the six ``args`` are set.
    """

    state: str
    number: int | None = None
    args: tuple[int, ...] = ()


def parse_syscall(text: str) -> Syscall:
    """Parse ``/proc/TID/syscall``: ``'288 0x3 0x7ff... ...'``, ``'-1 sp pc'`` or ``'running'``.

    The number is decimal and the arguments hexadecimal (fs/proc/base.c,
    ``proc_pid_syscall``).
    """
    fields = text.split()
    if not fields or fields[0] == "running":
        return Syscall("running")
    number = int(fields[0])
    if number < 0:
        return Syscall("user")
    return Syscall("syscall", number, tuple(int(arg, 16) for arg in fields[1:7]))


def syscall_name(number: int | None, machine: str | None = None) -> str | None:
    """The name of system call ``number`` on ``machine`` (default: this one), if the kit knows it."""
    if number is None:
        return None
    return SYSCALL_NAMES.get(machine or platform.machine(), {}).get(number)


@dataclass(frozen=True)
class EpollTarget:
    """One registration in an epoll instance: the watched descriptor, its event mask, its inode."""

    fd: int
    events: int
    inode: int

    @property
    def exclusive(self) -> bool:
        """Registered with ``EPOLLEXCLUSIVE`` (wake one waiter, not all)."""
        return bool(self.events & EPOLLEXCLUSIVE)


_TFD_LINE = re.compile(r"^tfd:\s*(?P<fd>\d+)\s+events:\s*(?P<events>[0-9a-fA-F]+)"
                       r"(?:.*?\bino:(?P<inode>[0-9a-fA-F]+))?", re.MULTILINE)


def parse_epoll_fdinfo(text: str) -> list[EpollTarget]:
    """Parse the ``tfd:`` lines of ``/proc/PID/fdinfo/EPFD``.

    A line reads ``tfd:        3 events: 10000019 data: 3  pos:0 ino:184750 sdev:9``:
    the descriptor is decimal, ``events`` and ``ino`` are hexadecimal
    (fs/eventpoll.c, ``ep_show_fdinfo``).  Lines of other kinds are skipped.
    """
    targets = []
    for match in _TFD_LINE.finditer(text):
        targets.append(EpollTarget(int(match["fd"]), int(match["events"], 16),
                                   int(match["inode"] or "0", 16)))
    return targets


def parse_socket_link(target: str) -> int | None:
    """``'socket:[1591120]'`` (what ``readlink /proc/PID/fd/N`` gives) -> 1591120; else None."""
    if target.startswith("socket:[") and target.endswith("]"):
        return int(target[8:-1])
    return None


@dataclass(frozen=True)
class TcpRow:
    """One row of ``/proc/net/tcp`` or ``tcp6``.

    For a LISTEN row (``state == 10``) ``rx_queue`` is the accept-queue length;
    ``tx_queue`` is 0 there (the backlog is not printed: :class:`SockDiag` has it).
    ``inode`` is 0 for a connection still in an accept queue (no process has a
    file for it yet) and for one whose owner has closed it.
    """

    local: str
    port: int
    remote: str
    remote_port: int
    state: int
    tx_queue: int
    rx_queue: int
    uid: int
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == TCP_LISTEN


def _address_and_port(field_: str) -> tuple[str, int]:
    address, _, port = field_.partition(":")
    return _decode_address(address).strip("[]"), int(port, 16)


def parse_tcp_table(text: str) -> list[TcpRow]:
    """Parse ``/proc/net/tcp`` or ``/proc/net/tcp6`` (the header line is skipped).

    Fields: ``sl local remote st tx_queue:rx_queue tr:when retrnsmt uid timeout
    inode ...``, addresses as the kernel's 32-bit words in hex, ports in hex.
    Addresses come back without brackets (``'::1'``).
    """
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, port = _address_and_port(fields[1])
        remote, remote_port = _address_and_port(fields[2])
        tx_queue, _, rx_queue = fields[4].partition(":")
        rows.append(TcpRow(local, port, remote, remote_port, int(fields[3], 16),
                           int(tx_queue, 16), int(rx_queue, 16), int(fields[7]), int(fields[9])))
    return rows


def parse_status(text: str) -> dict[str, str]:
    """``/proc/PID/status`` as a dict of its ``Key:\\tvalue`` lines (values stripped)."""
    pairs = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, sep, value in pairs if sep}


def parse_stat(text: str) -> tuple[str, int]:
    """``(comm, ppid)`` from ``/proc/PID/stat``; the command may hold spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], int(rest.split()[1])


# --------------------------------------------------------------------------- thin readers


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


def process_ids() -> list[int]:
    """Every process id in ``/proc``, ascending."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def parent_of(pid: int) -> int:
    """The parent process id of ``pid`` (raises ``OSError`` if it has gone)."""
    return parse_stat(_read(f"/proc/{pid}/stat"))[1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents before children, each level by pid.

    A pre-fork server is a tree (master, workers, sometimes helpers); one pass
    over ``/proc/*/stat`` finds it without ``/proc/PID/task/*/children``, which
    not every kernel has.  Processes that exit meanwhile are skipped.

    Args:
        pid: the root of the tree.
    """
    children: dict[int, list[int]] = {}
    for other in process_ids():
        try:
            children.setdefault(parent_of(other), []).append(other)
        except (OSError, ValueError, IndexError):
            continue
    tree, level = [pid], [pid]
    while level:
        level = sorted(child for parent in level for child in children.get(parent, ()))
        tree.extend(level)
    return tree


def process_state(pid: int) -> str:
    """The state letter of ``pid`` from ``/proc/PID/stat``: ``R``, ``S``, ``D``, ``Z`` (zombie)..."""
    return _read(f"/proc/{pid}/stat").rpartition(")")[2].split()[0]


def thread_ids(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (the first is usually ``pid`` itself)."""
    return sorted(int(name) for name in os.listdir(f"/proc/{pid}/task") if name.isdigit())


def command_line(pid: int) -> str:
    """The command line of ``pid`` as one string (its ``comm`` in brackets for a kernel thread)."""
    words = _read(f"/proc/{pid}/cmdline").split("\0")
    line = " ".join(word for word in words if word)
    return line or f"[{parse_stat(_read(f'/proc/{pid}/stat'))[0]}]"


def socket_inodes(pid: int) -> dict[int, int]:
    """Every descriptor of ``pid`` that is a socket, mapped to the socket's inode.

    Needs the right to read ``/proc/PID/fd`` (your own processes, or root);
    raises ``PermissionError`` otherwise.  A descriptor closed while we look is
    skipped.
    """
    found = {}
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            inode = parse_socket_link(os.readlink(f"{directory}/{name}"))
        except OSError:
            continue
        if inode is not None:
            found[int(name)] = inode
    return found


def epoll_targets(pid: int, fd: int) -> list[EpollTarget] | None:
    """The registrations of epoll descriptor ``fd`` of ``pid``; None if ``fd`` is not an epoll."""
    try:
        if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
            return None
    except FileNotFoundError:
        return None
    return parse_epoll_fdinfo(_read(f"/proc/{pid}/fdinfo/{fd}"))


def thread_syscall(pid: int, tid: int) -> Syscall:
    """How thread ``tid`` of ``pid`` waits right now (``/proc/PID/task/TID/syscall``).

    The file needs ptrace-read access (your own process, or root); it raises
    ``PermissionError`` otherwise.
    """
    return parse_syscall(_read(f"/proc/{pid}/task/{tid}/syscall"))


def voluntary_switches(pid: int, tid: int | None = None) -> int:
    """Voluntary context switches of thread ``tid`` of ``pid`` (default: all its threads, summed).

    Each is a time the thread slept and was woken: the herd, counted from outside.

    Args:
        pid: the process.
        tid: one of its threads; None sums them all.
    """
    tids = [tid] if tid is not None else thread_ids(pid)
    total = 0
    for one in tids:
        try:
            total += int(parse_status(_read(f"/proc/{pid}/task/{one}/status"))
                         ["voluntary_ctxt_switches"])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total


def tcp_table(pid: int | None = None) -> list[TcpRow]:
    """Every TCP socket in the network namespace of ``pid`` (default: ours), IPv4 then IPv6."""
    base = f"/proc/{pid}/net" if pid is not None else "/proc/net"
    rows = parse_tcp_table(_read(f"{base}/tcp"))
    try:
        rows += parse_tcp_table(_read(f"{base}/tcp6"))
    except FileNotFoundError:  # IPv6 disabled
        pass
    return rows


def tcp_migrate_req() -> int | None:
    """``net.ipv4.tcp_migrate_req`` of our network namespace (None before Linux 5.14)."""
    try:
        return int(_read("/proc/sys/net/ipv4/tcp_migrate_req"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- sock_diag netlink

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states  (then a sockid)
_SOCKID_PORTS = struct.Struct("!HH")  # sport, dport: network byte order
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie[2]
_MESSAGE_HEAD = struct.Struct("=BBBB")  # family, state, timer, retrans (then a sockid)
_MESSAGE_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
_SOCKID_SIZE = 4 + 16 + 16 + _SOCKID_TAIL.size
_NO_COOKIE = 0xFFFFFFFF
_ANY_SOCKET = _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)  # any interface, no cookie


@dataclass(frozen=True)
class DiagSocket:
    """One TCP socket as ``sock_diag`` reports it.

    For a listener ``queue`` is the accept-queue length and ``backlog`` its limit
    (``ss -ltn``'s Recv-Q and Send-Q); for a connection they are the bytes
    waiting to be read and sent.  ``inode`` is 0 while no process has a file for
    the socket (still in the accept queue, or closed by its owner).
    """

    family: int
    state: int
    local: str
    port: int
    remote: str
    remote_port: int
    queue: int
    backlog: int
    uid: int
    inode: int


# Cached: an observer looks up thousands of connections between the same two addresses.
@functools.lru_cache(maxsize=1024)
def _pack_address(family: int, host: str) -> bytes:
    return socket.inet_pton(family, host).ljust(16, b"\0")


@functools.lru_cache(maxsize=1024)
def _unpack_address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw)


def parse_diag_messages(data: bytes) -> tuple[list[DiagSocket], bool, int]:
    """Parse one netlink read of ``SOCK_DIAG_BY_FAMILY`` answers.

    Returns ``(sockets, done, error)``: ``done`` once ``NLMSG_DONE`` or an error
    arrived, ``error`` the (positive) errno of an ``NLMSG_ERROR``, else 0.
    """
    sockets: list[DiagSocket] = []
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(data):
        length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data, offset)
        if length < _NLMSG_HEADER.size:
            break
        body = offset + _NLMSG_HEADER.size
        if kind == _NLMSG_DONE:
            return sockets, True, 0
        if kind == _NLMSG_ERROR:
            code = struct.unpack_from("=i", data, body)[0]
            return sockets, True, -code
        if kind == _SOCK_DIAG_BY_FAMILY:
            family, state, _, _ = _MESSAGE_HEAD.unpack_from(data, body)
            at = body + _MESSAGE_HEAD.size
            sport, dport = _SOCKID_PORTS.unpack_from(data, at)
            source, destination = data[at + 4:at + 20], data[at + 20:at + 36]
            _, queue, backlog, uid, inode = _MESSAGE_TAIL.unpack_from(data, at + _SOCKID_SIZE)
            sockets.append(DiagSocket(family, state, _unpack_address(family, source), sport,
                                      _unpack_address(family, destination), dport, queue,
                                      backlog, uid, inode))
        offset += (length + 3) & ~3
    return sockets, False, 0


class SockDiag:
    """A ``NETLINK_SOCK_DIAG`` socket: the kernel's TCP tables, asked directly.

    Why not ``/proc/net/tcp``: that file formats every socket of the machine on
    each read (thousands of TIME_WAIT rows after a load), and it hides a
    listener's backlog.  Here a listener dump returns only listeners, and
    :meth:`find` looks one connection up by its four addresses in the kernel's
    hash table, in tens of microseconds.

    Use as a context manager (or call :meth:`close`).  Unprivileged users may
    ask; only our network namespace is visible.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
        self._sequence = 0

    def __enter__(self) -> "SockDiag":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the netlink socket (safe to repeat)."""
        self._sock.close()

    def _ask(self, family: int, states: int, sockid: bytes, flags: int) -> list[DiagSocket]:
        self._sequence += 1
        body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, states) + sockid
        header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                    _NLM_F_REQUEST | flags, self._sequence, 0)
        self._sock.send(header + body)
        found: list[DiagSocket] = []
        while True:
            sockets, done, error = parse_diag_messages(self._sock.recv(1 << 16))
            found.extend(sockets)
            if error and error != errno.ENOENT:
                raise OSError(error, os.strerror(error))
            if done or not flags & _NLM_F_DUMP:
                return found

    def listeners(self, *, families: Iterable[int] = (socket.AF_INET, socket.AF_INET6),
                  port: int = 0) -> list[DiagSocket]:
        """Every listening TCP socket, with queue length and backlog.

        Args:
            families: the address families to dump (IPv4 and IPv6 by default).
            port: only the listeners on this port (0: all).  The kernel skips
                the others itself (``inet_diag`` compares a dump's source
                port), so a sampler that asks often pays only for its own.
        """
        sockid = (_SOCKID_PORTS.pack(port, 0) + bytes(_SOCKID_SIZE - _SOCKID_TAIL.size - 4)
                  + _ANY_SOCKET)
        found = []
        for family in families:
            found += self._ask(family, 1 << TCP_LISTEN, sockid, _NLM_F_DUMP)
        return [entry for entry in found if not port or entry.port == port]

    def find(self, local: tuple[str, int], remote: tuple[str, int]) -> DiagSocket | None:
        """The socket whose own address is ``local`` and whose peer is ``remote``, or None.

        To find the server's side of a client's connection, pass the server's
        address as ``local`` and the client's as ``remote``.

        Args:
            local: ``(host, port)`` of the socket wanted.
            remote: ``(host, port)`` of its peer.
        """
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        sockid = (_SOCKID_PORTS.pack(local[1], remote[1]) + _pack_address(family, local[0])
                  + _pack_address(family, remote[0]) + _ANY_SOCKET)
        for found in self._ask(family, 0xFFF, sockid, 0):
            # No such connection: the kernel's lookup falls back to the listener; not ours.
            if found.state != TCP_LISTEN and found.remote_port == remote[1]:
                return found
        return None
