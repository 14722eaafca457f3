"""What this machine supports: one set of probes for ``acceptlab doctor`` and for every pool.

Why one module?  A strategy can be missing for several reasons at once: the
Python build lacks the constant (``select.EPOLLEXCLUSIVE``), the kernel is too
old to honour it (Linux < 4.5 silently ignores the flag), or the platform has
the call but not the behaviour (SO_REUSEPORT exists on macOS but does not
balance).  If the doctor probed one way and :func:`check_strategy` another,
the doctor could promise a strategy the pool then refuses, or the reverse.
So both read the same probes, here:

* :func:`feature_report` / :func:`features`: each feature, tried for real where
  that is cheap (a throwaway listener on 127.0.0.1, a throwaway epoll);
* :func:`strategy_support` / :func:`check_strategy`: per strategy and kind of
  worker, None if it runs here, else a one-line reason: each strategy's
  record in :mod:`acceptlab.registry` declares what it needs
  (:class:`~acceptlab.registry.Requires`), and :func:`unmet` checks that
  against the same probes;
* :func:`format_report`: the doctor's text, both tables.

:mod:`acceptlab.linux.kernel` measures (queue depth, context switches); this module
only asks whether a measurement or a strategy is possible.
"""

from __future__ import annotations

import fcntl
import functools
import multiprocessing
import os
import platform
import re
import select
import socket
import sys
from dataclasses import dataclass

from ..registry import STRATEGY_RECORDS, Requires
from ..specs import KINDS
from .bpf import SO_INCOMING_CPU, attach_cpu_program
from .kernel import Unsupported, accept_queue, listen_queues, voluntary_switches

__all__ = ["Unavailable", "Feature", "feature_report", "features", "strategy_support",
           "check_strategy", "format_report", "unmet", "KINDS"]


class Unavailable(RuntimeError):
    """This strategy cannot run here; the message says why in one line."""


@dataclass(frozen=True)
class Feature:
    """One line of the doctor's report: a name, whether it works here, and why."""

    name: str
    available: bool
    detail: str


# -- the probes ------------------------------------------------------------------------------

def _linux() -> bool:
    return sys.platform.startswith("linux")


def _kernel_version() -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(match[1]), int(match[2])) if match else None


def _throwaway_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def _check_epoll() -> tuple[bool, str]:
    if not hasattr(select, "epoll"):
        return False, f"epoll is Linux-only (this is {sys.platform}; BSD and macOS have kqueue)"
    return True, "select.epoll is here"


@functools.lru_cache(maxsize=None)  # a real registration: once per process is enough
def _check_epoll_exclusive() -> tuple[bool, str]:
    if not hasattr(select, "epoll") or not hasattr(select, "EPOLLEXCLUSIVE"):
        return False, "this Python has no select.EPOLLEXCLUSIVE (needs Linux >= 4.5)"
    version = _kernel_version()
    # Kernels before 4.5 silently ignore the unknown flag, so a successful
    # registration alone would not prove anything there.
    if version is None or version < (4, 5):
        return False, f"needs Linux >= 4.5; kernel is {platform.release()}"
    try:
        with _throwaway_listener() as sock, select.epoll() as poller:
            poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    except OSError as exc:
        return False, f"the kernel refused it: {exc.strerror}"
    return True, "only one waiting epoll is woken per connection"


def _check_reuseport() -> tuple[bool, str]:
    if not hasattr(socket, "SO_REUSEPORT"):
        return False, "socket.SO_REUSEPORT does not exist on this platform"
    if not _linux():
        return False, (f"exists on {sys.platform} but does not balance: "
                       f"one socket gets the traffic (Linux >= 3.9 balances)")
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError as exc:
        return False, f"the kernel refused it (needs Linux >= 3.9): {exc.strerror}"
    return True, "one socket per worker; a hash of the client's address picks one"


@functools.lru_cache(maxsize=None)
def _check_reuseport_cbpf() -> tuple[bool, str]:
    """Attach the CPU program to a throwaway SO_REUSEPORT listener: the kernel says yes or no."""
    available, detail = _check_reuseport()
    if not available:
        return False, detail
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
            attach_cpu_program(sock, 2)
    except OSError as exc:
        return False, f"the kernel refused a reuseport BPF program (needs Linux >= 4.5): {exc.strerror}"
    return True, "a classic BPF program can choose the socket of a SO_REUSEPORT group"


def _check_incoming_cpu() -> tuple[bool, str]:
    available, detail = _check_reuseport()
    if not available:
        return False, detail
    version = _kernel_version()
    if version is None or version < (6, 2):
        return False, (f"SO_REUSEPORT groups honour SO_INCOMING_CPU from Linux 6.2; "
                       f"kernel is {platform.release()}")
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, 0)
    except OSError as exc:
        return False, f"the kernel refused SO_INCOMING_CPU: {exc.strerror}"
    return True, "a SO_REUSEPORT group prefers the socket tagged with the arriving CPU"


def _check_tcp_info() -> tuple[bool, str]:
    try:
        with _throwaway_listener() as sock:
            accept_queue(sock)
    except Unsupported as exc:
        return False, str(exc)
    except (OSError, ValueError) as exc:
        return False, f"reading it failed: {exc}"
    return True, "accept-queue depth and backlog of a listener are readable"


def _check_rusage_thread() -> tuple[bool, str]:
    if voluntary_switches() is None:
        return False, "no per-thread context-switch count; wakeups cannot be counted"
    return True, "per-thread voluntary context switches count real wakeups"


def _check_proc_net_tcp() -> tuple[bool, str]:
    try:
        with _throwaway_listener() as sock:
            port = sock.getsockname()[1]
            inode = os.fstat(sock.fileno()).st_ino
            rows = listen_queues(port)
    except Unsupported as exc:
        return False, str(exc)
    except OSError as exc:
        return False, f"reading it failed: {exc}"
    if not any(row.inode == inode for row in rows):
        return False, "readable, but a test listener was missing from it"
    return True, "queues of listeners in other processes are visible"


_CAPABILITIES = {
    "epoll": _check_epoll,
    "EPOLLEXCLUSIVE": _check_epoll_exclusive,
    "SO_REUSEPORT": _check_reuseport,
    "SO_ATTACH_REUSEPORT_CBPF": _check_reuseport_cbpf,
    "SO_INCOMING_CPU": _check_incoming_cpu,
    "TCP_INFO": _check_tcp_info,
    "RUSAGE_THREAD": _check_rusage_thread,
    "/proc/net/tcp": _check_proc_net_tcp,
}


def _probe() -> list[tuple[Feature, object]]:
    """Each feature with its plain value (for features()) and its report line."""
    # get_start_method() without allow_none would *fix* the default for the
    # whole program, so a later set_start_method() would fail; unset means
    # the platform default, which get_all_start_methods() lists first.
    methods = multiprocessing.get_all_start_methods()
    chosen = multiprocessing.get_start_method(allow_none=True)
    start_method = chosen or methods[0]
    how = "set by this program" if chosen else "the default here"
    cpus = os.cpu_count()
    facts: list[tuple[Feature, object]] = [
        (Feature("python", True, f"{platform.python_implementation()} {platform.python_version()}"),
         platform.python_version()),
        (Feature("platform", True, f"{sys.platform}: {platform.platform()}"), sys.platform),
        (Feature("kernel", True, f"release {platform.release()}"), platform.release()),
        (Feature("cpu_count", cpus is not None, f"{cpus} logical CPUs"), cpus),
        (Feature("start_method", True, f"workers start with {start_method!r} ({how})"),
         start_method),
        (Feature("start_methods", True, ", ".join(methods)), methods),
    ]
    for name, check in _CAPABILITIES.items():
        available, detail = check()
        facts.append((Feature(name, available, detail), available))
    return facts


def feature_report() -> list[Feature]:
    """What this machine supports, one :class:`Feature` per line of ``acceptlab doctor``.

    Why: a learner sees which lessons will work here and which measurements
    will be "unavailable" before running anything.  The informational lines
    (python, platform, kernel, cpu_count, start_method, start_methods) are
    always available; the capability lines are tested for real where that is
    cheap: EPOLLEXCLUSIVE is registered in a throwaway epoll, TCP_INFO and
    /proc/net/tcp are read for a throwaway listener on 127.0.0.1, so a sandbox
    that hides them says so.  It does not fail: a check that errors becomes
    ``available=False`` with the error as its detail.
    """
    return [feature for feature, _ in _probe()]


def features() -> dict[str, object]:
    """The same checks as :func:`feature_report`, as plain values for a run's metadata.

    Informational entries map to their value (``"python": "3.11.7"``,
    ``"cpu_count": 2``, ``"start_methods": ["fork", "spawn", "forkserver"]``);
    capability entries map to True or False.
    """
    return {feature.name: value for feature, value in _probe()}


# -- what the probes mean for each strategy ----------------------------------------------------

_MODULES = {"select": select, "socket": socket, "fcntl": fcntl}  # where Requires' constants live


def _has_constant(dotted: str) -> bool:
    """Does this Python have ``dotted`` (``'select.EPOLLEXCLUSIVE'``)?"""
    module, _, name = dotted.partition(".")
    return hasattr(_MODULES[module], name)


def unmet(requires: Requires) -> str | None:
    """Why this machine does not meet ``requires`` (one line), or None if it does.

    The order gives the most useful reason first: a missing constant, then
    the feature tried for real (its reason names the platform or the kernel),
    then the declared platform, kernel and root.
    """
    for constant in requires.constants:
        if not _has_constant(constant):
            return f"this Python has no {constant}"
    if requires.probe is not None:
        available, detail = _CAPABILITIES[requires.probe]()
        if not available:
            return detail
    if requires.platform is not None and not sys.platform.startswith(requires.platform):
        return f"needs {requires.platform.capitalize()}; this is {sys.platform}"
    version = _kernel_version()
    if requires.kernel is not None and (version is None or version < requires.kernel):
        return (f"needs Linux >= {requires.kernel[0]}.{requires.kernel[1]}; "
                f"kernel is {platform.release()}")
    if requires.root and os.geteuid() != 0:
        return "needs root"
    return None


def _missing(name: str, kind: str) -> str | None:
    """Why ``name`` cannot run for workers of ``kind`` on this machine, or None if it can."""
    record = STRATEGY_RECORDS.get(name)
    if record is None:
        return f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_RECORDS)}"
    if kind not in KINDS:
        return f"unknown kind {kind!r}; choose 'thread', 'process' or 'hybrid'"
    reason = unmet(record.requires)
    if reason is None and kind not in record.kinds:
        only = " or ".join(f"kind={k!r}" for k in record.kinds)
        reason = f"{record.kinds_why}; use {only}"
    return f"{name}: {reason}" if reason else None


def check_strategy(name: str, kind: str) -> None:
    """Raise :class:`Unavailable` with a one-line reason if ``name`` cannot run here.

    Why before anything starts: a pool that discovered the gap inside its
    workers would fail once per worker, with a traceback each.

    Args:
        name: a strategy (see :data:`acceptlab.registry.STRATEGY_RECORDS`).
        kind: ``'thread'``, ``'process'`` or ``'hybrid'``.
    """
    reason = _missing(name, kind)
    if reason:
        raise Unavailable(reason)


def strategy_support() -> dict[str, dict[str, str | None]]:
    """Per strategy and kind: None if it runs here, else the one-line reason why not."""
    return {name: {kind: _missing(name, kind) for kind in KINDS} for name in STRATEGY_RECORDS}


def format_report() -> str:
    """The doctor's text: every feature marked ✓ or ✗ with its detail, then every strategy."""
    report = feature_report()
    width = max(len(f.name) for f in report)
    lines = [f"{'✓' if f.available else '✗'} {f.name:<{width}}  {f.detail}" for f in report]
    lines += ["", "strategies:"]
    for name, kinds in strategy_support().items():
        verdicts = ", ".join(f"{kind} {'✓' if why is None else '✗'}" for kind, why in kinds.items())
        reasons = dict.fromkeys(why for why in kinds.values() if why)  # once each, in order
        lines.append(f"  {name:<22} {verdicts}" + (f"   ({'; '.join(reasons)})" if reasons else ""))
    return "\n".join(lines)
