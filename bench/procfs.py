"""CPU accounting from /proc (Linux): what our processes used, and what the whole machine did.

The benchmarks divide CPU seconds by connections served, so they read the
kernel's own accounting rather than timing anything themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (/proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(found))


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, sys) CPU seconds so far of ``pids``, all their threads together (/proc/<pid>/stat)."""
    user = system = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / TICK  # utime: field 14, counted from the state (field 3)
        system += int(fields[12]) / TICK  # stime: field 15
    return user, system


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / TICK, idle / TICK
