"""The kit's tracefs instances: where tracefs is, which instances are ours, removing them.

Every instance the kit makes is named ``acceptlab-<owner pid>-<random hex>`` under
tracefs's ``instances/`` folder (:data:`PREFIX`), so that a test or a learner can find any
left behind, and a later run can remove those whose process was killed before it could.
:mod:`acceptlab.linux.tracing` makes and reads them.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

__all__ = ["PREFIX", "TracingUnavailable", "tracefs_root", "find_instances", "sweep_abandoned",
           "remove_instance"]

PREFIX = "acceptlab-"  # + owner pid + "-" + random hex: the name of every instance we make
_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class TracingUnavailable(RuntimeError):
    """This machine or user cannot trace (the message says why, in one line)."""


def tracefs_root() -> Path:
    """Where tracefs is mounted, writable by us; raise :class:`TracingUnavailable` if nowhere.

    Why each check: tracefs is Linux's; it must be mounted (systemd mounts it,
    a container may not); only root may create instances in it.  The kit
    does not mount it itself: a mount is a change to the whole machine.
    """
    if not sys.platform.startswith("linux"):
        raise TracingUnavailable(f"kernel tracing needs Linux's tracefs; this is {sys.platform}")
    for candidate in map(Path, _ROOTS):
        try:
            if (candidate / "instances").is_dir():
                if not os.access(candidate / "instances", os.W_OK):
                    raise TracingUnavailable(f"tracing needs root: {candidate} is not writable "
                                             f"by uid {os.getuid()}")
                return candidate
        except PermissionError:
            raise TracingUnavailable(f"tracing needs root: {candidate} cannot be read by uid "
                                     f"{os.getuid()}") from None
    raise TracingUnavailable("tracefs is not mounted (as root: "
                             "mount -t tracefs nodev /sys/kernel/tracing)")


def find_instances(root: str | os.PathLike | None = None) -> list[Path]:
    """Every tracefs instance this kit made and has not removed yet (live or abandoned).

    Why: a test, or a curious learner, can check that nothing was left behind.

    Args:
        root: where tracefs is mounted (found by itself when None).
    """
    directory = Path(root or tracefs_root()) / "instances"
    return sorted(directory.glob(f"{PREFIX}*-*"))


def _owner_alive(instance: Path) -> bool:
    """Is the process named in ``acceptlab-<pid>-<random>`` still there?  (Linux: /proc.)"""
    owner = instance.name[len(PREFIX):].split("-", 1)[0]
    return not owner.isdigit() or Path(f"/proc/{owner}").exists()


def sweep_abandoned(root: Path) -> None:
    """Remove instances whose process was killed before it could remove them."""
    for instance in find_instances(root):
        if not _owner_alive(instance):
            try:
                instance.rmdir()  # tracefs frees the instance's buffer and events with it
            except OSError:
                pass  # removed by someone else meanwhile


_BUSY_GRACE = 2.0  # seconds to keep trying while another process has a file of the instance open


def remove_instance(path: Path) -> None:
    """``rmdir`` the instance; while another process reads one of its files (tracefs then
    answers EBUSY: a monitor looking at the filters, a ``cat`` of ``trace``), try again for a
    moment.  Still busy after that: the error says so, with the path."""
    deadline = time.monotonic() + _BUSY_GRACE
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(error.errno, f"cannot remove the trace instance {path}: "
                                           f"{error.strerror} (a process still has one of its "
                                           f"files open; `rmdir` it once that is done)") from None
            time.sleep(0.02)
