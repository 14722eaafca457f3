"""wrk, the reference load generator: one bounded run, and one measured run against a server.

Every run is bounded by wrk's ``-d`` and goes to a loopback URL.  With
``Connection: close`` every request is a new connection, which is what the
kit is about.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from .procfs import cpu_times


def wrk_binary() -> str | None:
    """Path of wrk, or None."""
    return shutil.which("wrk")


@dataclass
class WrkResult:
    """What one wrk run reported, and the CPU wrk itself used."""

    requests: int
    seconds: float
    errors: int  # socket errors + non-2xx
    cpu_user: float  # wrk's own CPU (from wait4)
    cpu_sys: float
    text: str = ""

    @property
    def rate(self) -> float:
        """Completed requests (= new connections, with Connection: close) per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, duration: int = 2, connections: int = 32, threads: int = 2,
            close: bool = True) -> WrkResult:
    """Run wrk against ``url`` for ``duration`` whole seconds (wrk takes no fractions).

    ``close`` adds ``Connection: close``: every request is then a new connection.
    """
    threads = min(threads, connections)
    seconds = max(1, round(duration))
    cmd = [wrk_binary() or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
           "--timeout", "2s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(url)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = process.stdout.read().decode(errors="replace")
        # wait4, not wait(): it also returns the child's CPU usage
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        process.stdout.close()
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text.strip()}")
    seconds = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(int(match.group(1)), seconds, errors, usage.ru_utime, usage.ru_stime, text)


@dataclass
class Sample:
    """One wrk run against one server, with the server's CPU over the run."""

    label: str
    rate: float
    requests: int
    errors: int
    seconds: float  # how long wrk ran
    server_cpu_us: float  # (user + sys of the server's workers) per connection, microseconds
    server_user_us: float
    server_sys_us: float
    wrk_cpu_us: float  # wrk's own CPU per connection
    ours_cpu_s: float = 0.0  # CPU seconds the server's workers and wrk used in all
    others_cores: float = 0.0  # CPU other processes used meanwhile (cores; set by alternate())

    def merge(self, other: "Sample") -> "Sample":
        """Two runs of the same server as one: rates over the total time, costs per connection.

        A run that served nothing (rate 0) adds its time and no connections; two such runs
        merge into rate 0, never a division by zero.
        """
        n = self.requests + other.requests
        seconds = self.seconds + other.seconds

        def mean(field: str) -> float:
            if not n:
                return 0.0
            return (getattr(self, field) * self.requests
                    + getattr(other, field) * other.requests) / n

        others = ((self.others_cores * self.seconds + other.others_cores * other.seconds)
                  / seconds if seconds else 0.0)
        return Sample(self.label, n / seconds if seconds else 0.0, n,
                      self.errors + other.errors, seconds,
                      mean("server_cpu_us"), mean("server_user_us"), mean("server_sys_us"),
                      mean("wrk_cpu_us"), self.ours_cpu_s + other.ours_cpu_s, others)


def measure(server, duration: int, connections: int, threads: int = 2) -> Sample:
    """wrk against ``server`` (anything with ``url``, ``label``, ``worker_pids()``)."""
    pids = server.worker_pids()
    user0, sys0 = cpu_times(pids)
    result = run_wrk(server.url, duration, connections, threads)
    user1, sys1 = cpu_times(pids)
    n = max(result.requests, 1)
    user, system = user1 - user0, sys1 - sys0
    ours = user + system + result.cpu_user + result.cpu_sys
    return Sample(server.label, result.rate, result.requests, result.errors, result.seconds,
                  (user + system) / n * 1e6, user / n * 1e6, system / n * 1e6,
                  (result.cpu_user + result.cpu_sys) / n * 1e6, ours)


def wrk_rounds(servers: dict, *, seconds: int, connections: int, threads: int,
               min_rounds: int, max_rounds: int, budget: float, show=None):
    """The servers side by side under wrk: a warm-up each, then mirrored alternating rounds.

    ``servers`` maps a name to a running server (``url``, ``label``, ``worker_pids()``).
    Returns the :class:`bench.rounds.Rounds`; the warm-up runs are not in it.
    """
    from .rounds import alternate

    for server in servers.values():  # warm-up: first connections, page cache, CPU frequency
        measure(server, 1, connections, threads)
    contestants = {name: (lambda server=server: measure(server, seconds, connections, threads))
                   for name, server in servers.items()}
    return alternate(contestants, min_rounds, max_rounds, budget, show=show, mirrored=True)
