"""Shared helpers for bench/: ports, processes, CPU accounting, wrk, the kit's server, statistics.

Everything here keeps to the benchmark rules: loopback only, every load
bounded in time (wrk's ``-d``) or count, and only processes we started are
ever signalled, always by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these


# -- processes and ports -----------------------------------------------------------
def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 5.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening: {err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
            time.sleep(0.02)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux: /proc/<pid>/task/*/children)."""
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


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM,
                 timeout: float = 5.0) -> None:
    """Signal OUR child by its PID, wait, SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


# -- wrk ---------------------------------------------------------------------------------
def wrk_binary() -> str | None:
    return shutil.which("wrk")


@dataclass
class WrkResult:
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


# -- the kit's server, as a child process -------------------------------------------------
class ServerProcess:
    """What every server under test shares: started and stopped by a ``with`` block, one URL."""

    port: int

    def start(self) -> "ServerProcess":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class KitServer(ServerProcess):
    """``bench/kit_server.py`` (a WorkerPool, as ``acceptlab serve`` runs it) in a child process.

    The child prints one JSON line with its port and worker PIDs; SIGTERM stops it.
    """

    def __init__(self, workers: int = 2, kind: str = "process", strategy: str = "blocking",
                 protocol: str = "http", record: bool = True, log_dir: str | None = None,
                 src: str | None = None, label: str | None = None) -> None:
        self.workers, self.kind, self.record = workers, kind, record
        self.src, self._label = src, label  # src: a (patched) copy of src/ to run instead
        self.own_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="acceptlab-bench-")
        self.cmd = [PYTHON, str(BENCH / "kit_server.py"), "--workers", str(workers),
                    "--kind", kind, "--strategy", strategy, "--protocol", protocol,
                    "--log-dir", self.log_dir] + ([] if record else ["--no-record"])
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.pids: list[int] = []

    def start(self) -> "KitServer":
        env = dict(os.environ, ACCEPTLAB_SRC=self.src) if self.src else None
        self.process = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, cwd=ROOT, env=env)
        line = self.process.stdout.readline()
        if not line:
            err = self.process.stderr.read().decode(errors="replace")
            self.stop()
            raise RuntimeError(f"kit server did not start: {err}")
        info = json.loads(line)
        self.port, self.pids = info["port"], info["pids"]
        return self

    def worker_pids(self) -> list[int]:
        """Worker processes (process kind), or the one server process (thread kind)."""
        return self.pids if self.kind == "process" else [self.process.pid]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            for stream in (self.process.stdout, self.process.stderr):
                if stream:
                    stream.close()
        if self.own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    @property
    def label(self) -> str:
        if self._label:
            return self._label
        log = "log on" if self.record else "log off"
        return f"kit ({self.workers} {self.kind}es, {log})"


class MinimalServer(KitServer):
    """``bench/minimal_server.py``: the floor for a Python blocking-accept server."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers=workers, label=f"minimal Python ({workers} processes)")
        self.cmd = [PYTHON, str(BENCH / "minimal_server.py"), str(workers)]

    def worker_pids(self) -> list[int]:
        return self.pids


# -- measuring one server under wrk --------------------------------------------------------
@dataclass
class Sample:
    """One wrk run against one server, with the server's CPU over the run."""

    label: str
    rate: float
    requests: int
    errors: int
    server_cpu_us: float  # (user + sys of the server's workers) per connection, microseconds
    server_user_us: float
    server_sys_us: float
    wrk_cpu_us: float  # wrk's own CPU per connection
    ours_cpu_s: float = 0.0  # CPU seconds the server's workers and wrk used in all
    others_cores: float = 0.0  # CPU other processes used meanwhile (cores; set by alternate())

    def merge(self, other: "Sample") -> "Sample":
        """Two runs of the same server as one: rates and per-connection costs weighted."""
        n = self.requests + other.requests
        seconds = self.requests / self.rate + other.requests / other.rate

        def mean(field: str) -> float:
            return (getattr(self, field) * self.requests
                    + getattr(other, field) * other.requests) / n

        return Sample(self.label, n / seconds, n, self.errors + other.errors,
                      mean("server_cpu_us"), mean("server_user_us"), mean("server_sys_us"),
                      mean("wrk_cpu_us"), self.ours_cpu_s + other.ours_cpu_s,
                      (self.others_cores * self.requests / self.rate
                       + other.others_cores * other.requests / other.rate) / seconds)


def measure(server, duration: int, connections: int, threads: int = 2) -> Sample:
    """wrk against ``server`` (anything with ``url``, ``label``, ``worker_pids()``)."""
    pids = server.worker_pids()
    user0, sys0 = cpu_times(pids)
    result = run_wrk(server.url, duration, connections, threads)
    user1, sys1 = cpu_times(pids)
    n = max(result.requests, 1)
    ours = user1 - user0 + sys1 - sys0 + result.cpu_user + result.cpu_sys
    return Sample(server.label, result.rate, result.requests, result.errors,
                  (user1 - user0 + sys1 - sys0) / n * 1e6, (user1 - user0) / n * 1e6,
                  (sys1 - sys0) / n * 1e6, (result.cpu_user + result.cpu_sys) / n * 1e6, ours)


# -- statistics ------------------------------------------------------------------------------
@dataclass
class Spread:
    """Median and spread of repeated measurements (never a lone figure)."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def iqr(self) -> tuple[float, float]:
        if len(self.values) < 4:
            return self.low, self.high
        q = statistics.quantiles(self.values, n=4, method="inclusive")
        return q[0], q[2]

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        if not self.values:
            return "n/a"
        f = f"{{:.{digits}f}}"
        return (f"{f.format(self.median * scale)} ({f.format(self.low * scale)}–"
                f"{f.format(self.high * scale)}, n={len(self.values)})")


def ratios(a: list[float], b: list[float]) -> Spread:
    """Per-pair ratios a[i]/b[i] (pairs measured back to back in the same round)."""
    return Spread([x / y for x, y in zip(a, b) if y])


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 72 - len(text)), flush=True)


SKIPPED: dict[str, str] = {}  # every loud_skip of this run, for the summary's "Skipped" line


def loud_skip(what: str, why: str) -> None:
    """Say loudly that ``what`` was not measured, and remember it for the summary."""
    SKIPPED[what] = why
    print(f"\n!!! SKIPPED {what}: {why}", flush=True)


# -- results ---------------------------------------------------------------------------------
@dataclass
class Figure:
    """One line of the summary table: a measured figure with its spread and its target."""

    step: str
    name: str
    spread: Spread
    unit: str = ""
    target: str = ""  # e.g. ">= 0.95"
    met: bool | None = None  # None: no target, or not measured
    note: str = ""
    digits: int = 2

    def row(self) -> dict:
        s = self.spread
        return {"step": self.step, "figure": self.name,
                "median": round(s.median, 4) if s.values else "",
                "min": round(s.low, 4) if s.values else "",
                "max": round(s.high, 4) if s.values else "",
                "n": len(s.values), "unit": self.unit, "target": self.target,
                "met": "" if self.met is None else ("yes" if self.met else "NO"),
                "note": self.note}


def check(spread: Spread, target: str) -> bool | None:
    """Is the median on the right side of ``target`` ('>= 0.95', '<= 120')?"""
    if not spread.values:
        return None
    op, value = target.split()
    return spread.median >= float(value) if op == ">=" else spread.median <= float(value)


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        if rows:
            out = csv.DictWriter(file, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows(rows)
    return path


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def rotate(items: list, k: int) -> list:
    """``items`` starting at position k: each round puts a different contestant first."""
    k %= len(items)
    return items[k:] + items[:k]


# -- alternating rounds on a shared machine ------------------------------------------------
# Other people's jobs come and go on this machine (a notebook run takes a whole core for
# seconds).  So before each round we wait a little for the machine to be quiet, and after
# it we look at how much CPU other processes took while it ran: a round during which they
# took more than NOISY cores is kept in the CSV but left out of the medians, as long as
# enough quiet rounds remain.  Rounds continue until MIN_CLEAN quiet ones, or the budget.
QUIET = 0.25  # cores used by others: quiet enough to start a round
NOISY = 0.40  # cores used by others during a run: the round is noisy
MIN_CLEAN = 5


def others_now(window: float = 0.4) -> float:
    """Cores the machine keeps busy right now, while our servers sit idle."""
    busy0, _ = machine_cpu()
    time.sleep(window)
    busy1, _ = machine_cpu()
    return (busy1 - busy0) / window


def wait_for_quiet(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until others use < QUIET cores; return the last load."""
    deadline = time.monotonic() + max_wait
    load = others_now()
    while load >= QUIET and time.monotonic() < deadline:
        load = others_now()
    return load


@dataclass
class Rounds:
    """The runs of an alternating comparison, ``runs[round][contestant]``; which were quiet."""

    runs: list[dict] = field(default_factory=list)
    quiet: list[bool] = field(default_factory=list)

    def kept(self) -> list[dict]:
        """The rounds the medians use: the quiet ones if at least MIN_CLEAN - 2, else all."""
        quiet = [r for r, ok in zip(self.runs, self.quiet) if ok]
        return quiet if len(quiet) >= MIN_CLEAN - 2 else self.runs

    def note(self) -> str:
        used = self.kept()
        if len(used) == len(self.runs):
            noisy = self.quiet.count(False)
            return f"all {len(self.runs)} rounds" + (f" ({noisy} of them NOISY)" if noisy else "")
        return f"{len(used)} quiet rounds of {len(self.runs)}"


def alternate(contestants: dict, min_rounds: int, max_rounds: int, budget: float,
              show=None, mirrored: bool = False) -> Rounds:
    """Run each contestant once per round, the order rotating, until enough quiet rounds.

    A contestant is a function returning an object with ``ours_cpu_s`` (CPU seconds our own
    processes used during the run); each result gets ``others_cores`` (CPU other processes
    used meanwhile, in cores) set here.  ``mirrored``: each round runs the order forwards
    and then backwards (A B C D D C B A) and merges each contestant's two runs (results
    need a ``merge`` method): every contestant's runs are then centred on the same moment,
    so a load that rises or falls steadily during the round hits them all alike.
    """
    rounds = Rounds()
    started = time.monotonic()
    names = list(contestants)
    while len(rounds.runs) < max_rounds:
        clean = sum(rounds.quiet)
        spent = time.monotonic() - started
        if len(rounds.runs) >= min_rounds and (clean >= MIN_CLEAN or spent > budget):
            break
        wait_for_quiet(max_wait=2.5)
        order = rotate(names, len(rounds.runs))
        results: dict = {}
        for name in order + (order[::-1] if mirrored else []):
            busy0, _ = machine_cpu()
            t0 = time.monotonic()
            result = contestants[name]()
            wall = time.monotonic() - t0
            busy1, _ = machine_cpu()
            result.others_cores = max(0.0, busy1 - busy0 - result.ours_cpu_s) / wall
            if show:
                show(len(rounds.runs) + 1, name, result)
            results[name] = results[name].merge(result) if name in results else result
        rounds.runs.append({name: results[name] for name in names})
        rounds.quiet.append(max(r.others_cores for r in results.values()) <= NOISY)
    return rounds
