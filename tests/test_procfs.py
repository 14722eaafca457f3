"""procfs: the parsers on fixture text copied from a real machine, and the readers on live sockets."""

from __future__ import annotations

import os
import select
import socket
import struct
import sys

import pytest

from acceptlab.linux import procfs

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

EPOLL_FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t1038
tfd:        3 events: 10000019 data:                3  pos:0 ino:184750 sdev:9
tfd:        7 events:       19 data:                7  pos:0 ino:2a sdev:9
"""

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   3: 0100007F:9673 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 1591120 1 00000000d3ae661e 100 0 0 10 0
   4: 0100007F:9673 0100007F:C14E 01 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 20 4 30 10 -1
"""

TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42 1 0000000000000000 100 0 0 10 0
"""


def test_syscall_lines_of_the_three_kinds():
    blocked = procfs.parse_syscall("288 0x3 0x7ffd 0x7ffe 0x80800 0x0 0x0 0x7ffc 0x7f00\n")
    assert blocked == procfs.Syscall("syscall", 288, (3, 0x7ffd, 0x7ffe, 0x80800, 0, 0))
    assert procfs.parse_syscall("running\n").state == "running"
    assert procfs.parse_syscall("-1 0x7ffc 0x7f00\n").state == "user"


def test_syscall_names_on_both_machines():
    assert procfs.syscall_name(288, "x86_64") == "accept4"
    assert procfs.syscall_name(270, "x86_64") == "pselect6"
    assert procfs.syscall_name(232, "x86_64") == "epoll_wait"
    assert procfs.syscall_name(242, "aarch64") == "accept4"
    assert procfs.syscall_name(22, "aarch64") == "epoll_pwait"
    assert procfs.syscall_name(288, "riscv64") is None  # unknown machine: no guess
    assert procfs.WAIT_KINDS["pselect6"] == "select" and procfs.WAIT_KINDS["ppoll"] == "poll"


def test_epoll_fdinfo_hex_fields_and_the_exclusive_bit():
    first, second = procfs.parse_epoll_fdinfo(EPOLL_FDINFO)
    assert (first.fd, first.inode, first.exclusive) == (3, 0x184750, True)
    assert (second.fd, second.events, second.inode, second.exclusive) == (7, 0x19, 0x2A, False)


def test_socket_links():
    assert procfs.parse_socket_link("socket:[1591120]") == 1591120
    assert procfs.parse_socket_link("pipe:[12]") is None
    assert procfs.parse_socket_link("/dev/null") is None


def test_tcp_tables_ipv4_and_ipv6():
    listener, queued = procfs.parse_tcp_table(TCP)
    assert (listener.local, listener.port, listener.listening) == ("127.0.0.1", 0x9673, True)
    assert (listener.rx_queue, listener.inode) == (5, 1591120)
    assert (queued.remote_port, queued.state, queued.uid, queued.inode) == (0xC14E, 1, 1000, 0)
    (six,) = procfs.parse_tcp_table(TCP6)
    assert (six.local, six.port, six.inode) == ("::1", 8080, 42)


def test_status_and_stat():
    status = procfs.parse_status("Name:\tpython\nPPid:\t12\nvoluntary_ctxt_switches:\t7\n")
    assert status["voluntary_ctxt_switches"] == "7" and status["PPid"] == "12"
    assert procfs.parse_stat("42 (a (b) c) S 17 42 42 0") == ("a (b) c", 17)


def _diag_message(state: int, sport: int, dport: int, queue: int, backlog: int,
                  inode: int) -> bytes:
    """One SOCK_DIAG_BY_FAMILY answer as the kernel lays it out (include/uapi/linux/inet_diag.h)."""
    body = (struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + struct.pack("!HH", sport, dport)
            + socket.inet_aton("127.0.0.1").ljust(16, b"\0")
            + socket.inet_aton("127.0.0.1").ljust(16, b"\0") + struct.pack("=III", 0, 1, 2)
            + struct.pack("=IIIII", 0, queue, backlog, 1000, inode))
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def test_diag_messages_and_the_end_of_a_dump():
    data = _diag_message(10, 8080, 0, 3, 128, 77) + struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4
    sockets, done, error = procfs.parse_diag_messages(data)
    assert done and not error
    (only,) = sockets
    assert (only.port, only.queue, only.backlog, only.inode, only.uid) == (8080, 3, 128, 77, 1000)
    error_message = struct.pack("=IHHII", 20, 2, 0, 1, 0) + struct.pack("=i", -2)
    assert procfs.parse_diag_messages(error_message) == ([], True, 2)


@pytest.mark.system
@linux_only
def test_live_sockets_epoll_and_sock_diag():
    with socket.socket() as listener, select.epoll() as poller:
        listener.bind(("127.0.0.1", 0))
        listener.listen(77)
        port = listener.getsockname()[1]
        inode = os.fstat(listener.fileno()).st_ino
        poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        assert procfs.socket_inodes(os.getpid())[listener.fileno()] == inode
        (target,) = procfs.epoll_targets(os.getpid(), poller.fileno())
        assert (target.fd, target.inode, target.exclusive) == (listener.fileno(), inode, True)
        assert procfs.epoll_targets(os.getpid(), listener.fileno()) is None  # not an epoll
        with procfs.SockDiag() as diag, socket.create_connection(("127.0.0.1", port)) as client:
            (row,) = [entry for entry in diag.listeners() if entry.port == port]
            assert (row.inode, row.queue, row.backlog) == (inode, 1, 77)
            assert diag.listeners(port=port) == [row]  # only this port's, asked of the kernel
            client_port = client.getsockname()[1]
            waiting = diag.find(("127.0.0.1", port), ("127.0.0.1", client_port))
            assert waiting is not None and waiting.inode == 0  # queued: no file yet
            server_side, _ = listener.accept()
            with server_side:
                found = diag.find(("127.0.0.1", port), ("127.0.0.1", client_port))
                assert found.inode == os.fstat(server_side.fileno()).st_ino
            # a port with no connection must not find the listener the kernel falls back to
            assert diag.find(("127.0.0.1", port), ("127.0.0.1", 1)) is None
        listed = [row for row in procfs.tcp_table() if row.port == port and row.listening]
        assert [row.inode for row in listed] == [inode]


@linux_only
def test_tree_threads_switches_and_syscalls_of_this_process():
    me = os.getpid()
    assert procfs.descendants(me)[0] == me
    assert me in procfs.thread_ids(me)
    assert procfs.parent_of(me) == os.getppid()
    assert procfs.voluntary_switches(me, me) >= 0
    assert "python" in procfs.command_line(me) or "pytest" in procfs.command_line(me)
    assert procfs.thread_syscall(me, me).state in ("running", "syscall")
