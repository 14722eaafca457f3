"""Run a function inside a private network namespace, with its own sysctls.

Some of the kernel's accept behaviour is switched by a sysctl, and the one
that matters most for restarts, ``net.ipv4.tcp_migrate_req`` (Linux >= 5.14),
belongs to a *network namespace*: every namespace has its own loopback device,
its own ports and its own copy of that setting.  So the kit never changes the
machine's setting.  It forks a child, moves the child into a brand-new
namespace (``unshare(CLONE_NEWNET)``), brings that namespace's loopback up, sets
the sysctls there, and runs the experiment in it.  When the child exits, the
namespace, its loopback and its sysctls disappear with it: there is nothing to
undo, on any exit, even SIGKILL.

Creating a namespace needs ``CAP_SYS_ADMIN`` (root, in practice).  Without it
:func:`run_isolated` raises :class:`NoPrivilege` with a one-line reason, and
callers fall back to a recorded run.

Resource handling: the child is a forked process that this module starts,
waits for, and kills (by its pid) if the caller's deadline passes.  Worker
processes that the function starts inside the namespace are the child's own
(the function must stop them; :class:`acceptlab.server.pool.WorkerPool` does).  Use
``start_method='fork'`` (or ``'spawn'``) for pools inside: a forkserver started
earlier in the parent lives in the parent's namespace, and workers it forks
would land there.
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["NoPrivilege", "run_isolated", "sysctl_path", "read_sysctl"]

_CLONE_NEWNET = 0x40000000  # from <sched.h>
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1  # from <linux/sockios.h>, <net/if.h>
_IFREQ = "16sh14x"  # struct ifreq, as far as the flags: a 16-byte name, a short, padding


class NoPrivilege(RuntimeError):
    """A private network namespace cannot be made here (not root, or not Linux)."""


def sysctl_path(name: str) -> Path:
    """``'net.ipv4.tcp_migrate_req'`` -> ``/proc/sys/net/ipv4/tcp_migrate_req``."""
    return Path("/proc/sys", *name.split("."))


def read_sysctl(name: str) -> str | None:
    """The value of sysctl ``name`` in this process's namespace, or None if it does not exist."""
    try:
        return sysctl_path(name).read_text().strip()
    except OSError:
        return None


def run_isolated(function: Callable[..., Any], *args: Any,
                 sysctls: Mapping[str, object] | None = None,
                 timeout: float = 120.0, **kwargs: Any) -> Any:
    """Call ``function(*args, **kwargs)`` in a fresh network namespace and return its result.

    The namespace has only a loopback device (brought up here) and the
    kernel's default sysctls, changed by ``sysctls`` (e.g.
    ``{"net.ipv4.tcp_migrate_req": 1}``).  The host's network and settings
    are never touched.

    Args:
        function: what to run; module-level, and its result must pickle
            (a :class:`acceptlab.lab.experiment.Run` does).
        sysctls: per-namespace settings to write before ``function`` runs.
        timeout: seconds before the child is killed and ``TimeoutError`` raised.

    Raises:
        NoPrivilege: this process may not create a network namespace.
        RuntimeError: ``function`` raised inside; the message is that
            exception's last line.
    """
    if not sys.platform.startswith("linux"):
        raise NoPrivilege(f"network namespaces are a Linux feature (this is {sys.platform})")
    context = multiprocessing.get_context("fork")  # the child must share our loaded code
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, name="acceptlab-netns",
                            args=(sender, function, args, kwargs, dict(sysctls or {})))
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise TimeoutError(f"the experiment in the private namespace took over {timeout} s")
        status, value = receiver.recv()
    except EOFError:
        status, value = "error", f"the namespace's process died ({_exit_of(child)})"
    finally:
        if child.is_alive():
            child.kill()  # our own child, by its pid
        child.join()
        receiver.close()
    if status == "ok":
        return value
    if status == "no-privilege":
        raise NoPrivilege(value)
    raise RuntimeError(value)


def _exit_of(child: multiprocessing.process.BaseProcess) -> str:
    child.join(1.0)
    return f"exit code {child.exitcode}"


def _child(sender: Any, function: Callable[..., Any], args: tuple, kwargs: dict,
           sysctls: dict[str, object]) -> None:
    """In the forked child: enter a new namespace, set it up, run, send back the result."""
    try:
        _enter_new_namespace()
        for name, value in sysctls.items():
            try:
                sysctl_path(name).write_text(f"{value}\n")
            except FileNotFoundError:
                raise NoPrivilege(f"{name} does not exist on this kernel "
                                  f"({os.uname().release})") from None
    except NoPrivilege as exc:
        sender.send(("no-privilege", str(exc)))
        return
    try:
        sender.send(("ok", function(*args, **kwargs)))
    except BaseException as exc:  # report it to the parent, which raises it there
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        sender.send(("error", f"{last} (inside the private network namespace)"))


def _enter_new_namespace() -> None:
    """unshare(CLONE_NEWNET), then bring the new namespace's loopback device up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NoPrivilege(f"cannot create a network namespace: {os.strerror(code)} "
                          f"(it needs root / CAP_SYS_ADMIN)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # A new namespace's lo is down: read its flags and set IFF_UP (what `ip link set lo up` does).
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS,
                                                  struct.pack(_IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
