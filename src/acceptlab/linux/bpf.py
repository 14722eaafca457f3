"""Steering a SO_REUSEPORT group by CPU: a classic BPF program, and the socket options it needs.

A ``SO_REUSEPORT`` group normally picks a socket by a hash of the
connection's addresses.  A classic BPF program attached to the group with
``SO_ATTACH_REUSEPORT_CBPF`` (Linux >= 4.5) replaces the hash: the kernel runs
it for each new connection and uses its result as an index into the group's
sockets, in the order they joined (an index past the end falls back to the
hash).

The kernel's own selftest, ``tools/testing/selftests/net/reuseport_bpf_cpu.c``,
opens one socket per CPU and attaches a two-instruction program: load the
number of the CPU handling the packet, return it (``A = cpu; return A``).
:func:`cpu_program` adds a third, ``A %= N``, so that N sockets can serve any
number of CPUs: that modulo is the kit's generalisation, not the selftest's
(docs/sources.md, "reuseport-bpf-cpu").

:mod:`acceptlab.server.strategies` (``reuseport-cpu``) and
:mod:`acceptlab.linux.support` (the doctor's probe) both attach it with
:func:`attach_cpu_program`.
"""

from __future__ import annotations

import ctypes
import socket
import struct

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "SO_INCOMING_CPU", "cpu_program", "attach_cpu_program"]

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)  # Linux >= 4.5
SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)  # Linux >= 3.19 (settable >= 4.4)

_LOAD_CPU = (0x20, 0, 0, (-0x1000 + 36) & 0xFFFFFFFF)  # BPF_LD|BPF_W|BPF_ABS, SKF_AD_OFF+SKF_AD_CPU
_RETURN_A = (0x16, 0, 0, 0)  # BPF_RET|BPF_A


def cpu_program(modulus: int) -> bytes:
    """``A = this CPU; A %= modulus; return A``, encoded for ``SO_ATTACH_REUSEPORT_CBPF``.

    The first and last instructions are the selftest's whole program; the
    modulo between them is the kit's, so ``modulus`` sockets share the CPUs
    (with more sockets than CPUs, those past the last CPU get nothing).  Each
    instruction is a ``struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}``.
    """
    modulo = (0x94, 0, 0, modulus)  # BPF_ALU|BPF_MOD|BPF_K
    return b"".join(struct.pack("HBBI", *step) for step in (_LOAD_CPU, modulo, _RETURN_A))


def attach_cpu_program(sock: socket.socket, modulus: int) -> None:
    """Attach :func:`cpu_program` to ``sock``'s SO_REUSEPORT group (the group keeps the last one).

    Raises ``OSError`` where the kernel refuses (before Linux 4.5, or without
    BPF).
    """
    code = cpu_program(modulus)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment
    program = struct.pack("@HP", len(code) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)
