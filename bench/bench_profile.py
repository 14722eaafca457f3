"""Where a connection's cost goes, part by part: the kit's worker beside the minimal server's.

One worker of each (``bench/profile_worker.py``: the kit's through
``process_main``, the code path of every kit worker process; the minimal
server's own loop), three views, side by side:

1. **Instructions per connection** (``valgrind --tool=callgrind``), total and
   per part.  Instruction counts do not depend on what else the machine runs,
   so they are the steady view on a shared machine.  Each part is counted in
   a run of its own (its functions go through ``operator.call``, and callgrind
   counts only inside that C function); the rest is the loop's own lines.  A
   fixed number of connections, one at a time, each with wrk's request;
   callgrind's counters are zeroed after a warm-up and read after the last.
   Callgrind counts user-space instructions only: what the kernel does for a
   system call is in view 2.
2. **System calls per connection** (``strace -c -f``), for the kit (log on
   and off), the minimal server and nginx, each with 2 workers under wrk.
3. **CPU time per connection and per part**, one worker under wrk: each part
   timed with this thread's CPU clock (the wrappers' own cost measured and
   subtracted), and the worker's whole CPU time from /proc with nothing
   wrapped, in alternating rounds, the load average and the CPU other
   processes used beside them.  These move with the machine's load; views 1
   and 2 do not.

py-spy, if installed (``.venv/bin/pip install py-spy``; not a dependency of
the kit), adds where the kit's workers spend their time, by source line.

``python -m bench.bench_profile [--quick]`` runs it alone; the tables go to
``results/profile_parts.csv`` and ``results/syscalls.csv``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import PYTHON, RESULTS, ROOT
from .nginx import Nginx
from .procfs import cpu_times
from .profile_worker import KIT_PARTS, MINIMAL_PARTS, PART_NOTES
from .rounds import alternate
from .rows import Figure, banner, loud_skip, markdown_table, write_csv
from .servers import ChildServer, KitServer, MinimalServer
from .stats import Spread
from .wrk import Sample, measure, run_wrk

STEP = "profile"
SERVERS = {"kit": KIT_PARTS, "minimal": MINIMAL_PARTS}


SRC: str | None = None  # another copy of the kit to profile (--src): its src/ folder


class ProfiledWorker(ChildServer):
    """``bench/profile_worker.py`` as our child: one worker, maybe under callgrind, maybe timed.

    It imports the kit from :data:`SRC` when set (``--src``: the code before a change, say).
    """

    def __init__(self, server: str, *options: str, prefix: tuple[str, ...] = (),
                 label: str | None = None) -> None:
        super().__init__(["-m", "bench.profile_worker", server, *options],
                         label or f"{server} (1 worker)", src=SRC, prefix=prefix)


# -- 1. instructions per connection (callgrind) -------------------------------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"  # wrk's


def one_connection(port: int) -> None:
    """Connect, send wrk's request, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(REQUEST % port)
        while sock.recv(65536):
            pass


def instructions(server: str, part: str | None, *options: str, connections: int = 400,
                 warmup: int = 100) -> float:
    """Instructions per connection of ``server``'s worker, or of one ``part`` of it (callgrind).

    A part's count has the wrappers' own cost (:func:`wrapper_cost`) taken off.
    """
    folder = Path(tempfile.mkdtemp(prefix="acceptlab-callgrind-"))
    prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.out")
    if part is not None:
        prefix += ("--collect-atstart=no", "--toggle-collect=_operator_call")
        options += ("--count", part, "--out", str(folder / "calls.json"))
    try:
        with ProfiledWorker(server, *options, prefix=prefix) as worker:
            for _ in range(warmup):
                one_connection(worker.port)
            time.sleep(0.5)  # the worker is back in accept(): nothing runs when we zero
            calls0 = _report(worker, folder / "calls.json")["calls"] if part else {}
            _callgrind_control("--zero", worker.process.pid)
            for _ in range(connections):
                one_connection(worker.port)
            time.sleep(0.5)
            _callgrind_control("--dump", worker.process.pid)
            calls1 = _report(worker, folder / "calls.json")["calls"] if part else {}
        count = _dumped(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for kind, n in calls1.items():
        count -= (n - calls0[kind]) * wrapper_cost(kind)
    return count / connections


def _dumped(folder: Path) -> int:
    """The instructions in callgrind's first dump in ``folder``."""
    dumps = sorted(folder.glob("cg.out.*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump in {folder}")
    return _summary(dumps[0])


def _summary(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {path}")


_WRAPPER_COST: dict[str, float] = {}


def wrapper_cost(kind: str, repeat: int = 20_000) -> float:
    """Instructions a call through operator.call adds, for a Python function or a C method.

    Measured once per run on a function that does nothing (so its own few
    instructions are taken off too: a slight over-correction).
    """
    if kind not in _WRAPPER_COST:
        folder = Path(tempfile.mkdtemp(prefix="acceptlab-callgrind-"))
        try:
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.out",
                            "--collect-atstart=no", "--toggle-collect=_operator_call", PYTHON,
                            "-m", "bench.profile_worker", "calibrate", kind, str(repeat)],
                           check=True, capture_output=True, cwd=ROOT, timeout=300)
            _WRAPPER_COST[kind] = _summary(folder / "cg.out") / repeat
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return _WRAPPER_COST[kind]


def _callgrind_control(action: str, pid: int) -> None:
    done = subprocess.run(["callgrind_control", action, str(pid)], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0 or "OK" not in done.stdout:
        raise RuntimeError(f"callgrind_control {action} {pid}: {done.stdout}{done.stderr}")


def instruction_breakdown(connections: int = 400) -> dict[str, dict[str, float]]:
    """Per server, instructions per connection: the total and each part (``loop``: the rest)."""
    found: dict[str, dict[str, float]] = {}
    for server, parts in SERVERS.items():
        counts = {"total": instructions(server, None, connections=connections)}
        for part in parts:
            counts[part] = instructions(server, part, connections=connections)
        print(f"  {server}: {counts['total']:,.0f} instructions per connection", flush=True)
        found[server] = _nested(counts)
    found["kit, log off"] = {"total": instructions("kit", None, "--no-record",
                                                   connections=connections)}
    return found


def _nested(values: dict[str, float]) -> dict[str, float]:
    """Take nested parts out of the part around them (accept out of the wait, the protocol out of
    the conversation); the rest of the total is the loop's own."""
    values = dict(values)
    if "wait" in values:
        values["wait"] -= values["accept"]
    if "protocol" in values:
        values["conversation"] -= values["protocol"]
    values["loop"] = values["total"] - sum(v for k, v in values.items() if k != "total")
    return values


# -- 3. CPU time per connection, per part (thread CPU clock) ------------------------------------

def timed_parts(server: str, seconds: int = 2, connections: int = 32) -> dict[str, float]:
    """µs of CPU per connection in each part of ``server``'s worker under wrk (one run)."""
    folder = Path(tempfile.mkdtemp(prefix="acceptlab-timed-"))
    out = folder / "parts.json"
    try:
        with ProfiledWorker(server, "--time", "--out", str(out)) as worker:
            run_wrk(worker.url, 1, connections, 2)  # warm-up
            before = _report(worker, out)
            cpu0 = sum(cpu_times(worker.pids))
            run_wrk(worker.url, seconds, connections, 2)
            cpu1 = sum(cpu_times(worker.pids))
            after = _report(worker, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    accepted = after["accept"]["calls"] - before["accept"]["calls"]
    wrapper = after.pop("_wrapper")
    before.pop("_wrapper")
    parts = {part: (after[part]["ns"] - before[part]["ns"]) / accepted / 1000 for part in after}
    calls = sum(after[part]["calls"] - before[part]["calls"] for part in after)
    wrappers_us = calls * wrapper["whole_ns"] / accepted / 1000
    parts["total"] = (cpu1 - cpu0) * 1e6 / accepted - wrappers_us
    parts = _nested(parts)
    parts["wrappers taken off"] = wrappers_us
    return parts


def _report(worker: ProfiledWorker, out: Path) -> dict:
    """Ask the timed worker for its totals (SIGUSR2) and read them."""
    out.unlink(missing_ok=True)
    os.kill(worker.process.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker.label} wrote no totals after SIGUSR2")
        time.sleep(0.02)
    return json.loads(out.read_text())


def cpu_breakdown(rounds: int = 3, seconds: int = 2) -> tuple[dict, dict, list[float]]:
    """Per server: median µs per part over ``rounds`` (alternating), the unwrapped totals, loads."""
    timed: dict[str, list[dict]] = {server: [] for server in SERVERS}
    loads = []
    for k in range(rounds):
        for server in (list(SERVERS) if k % 2 == 0 else list(SERVERS)[::-1]):
            loads.append(os.getloadavg()[0])
            timed[server].append(timed_parts(server, seconds))
    medians = {server: {part: statistics.median(run[part] for run in runs) for part in runs[0]}
               for server, runs in timed.items()}
    with ProfiledWorker("kit") as kit, ProfiledWorker("kit", "--no-record",
                                                      label="kit, log off (1 worker)") as off, \
            ProfiledWorker("minimal") as minimal:
        workers = {"kit": kit, "kit, log off": off, "minimal": minimal}
        for worker in workers.values():
            measure(worker, 1, 32)  # warm-up

        def measured(worker=None):
            loads.append(os.getloadavg()[0])
            return measure(worker, seconds, 32)
        totals = alternate({name: (lambda w=w: measured(w)) for name, w in workers.items()},
                           rounds, rounds, budget=0, show=_show)
    return medians, {name: [r[name] for r in totals.runs] for name in workers}, loads


def _show(round_: int, key: str, sample: Sample) -> None:
    print(f"  round {round_}: {sample.label:<28} {sample.rate:8.0f} conn/s  CPU "
          f"{sample.server_cpu_us:5.1f} µs/conn (user {sample.server_user_us:4.1f} sys "
          f"{sample.server_sys_us:4.1f})  load {os.getloadavg()[0]:.1f}, others used "
          f"{sample.others_cores:.2f} cores", flush=True)


# -- 2. system calls per connection (strace) ----------------------------------------------------

def strace_counts(server, seconds: int = 2, connections: int = 8) -> tuple[dict[str, int], int]:
    """System calls of ``server``'s workers during one wrk run; and the connections served."""
    out = Path(tempfile.mkstemp(prefix="acceptlab-strace-", suffix=".txt")[1])
    cmd = ["strace", "-c", "-f", "-o", str(out)]
    for pid in server.worker_pids():
        cmd += ["-p", str(pid)]
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attaching takes a moment
        result = run_wrk(server.url, seconds, connections, 2)
        time.sleep(0.2)
    finally:
        tracer.send_signal(signal.SIGINT)  # strace detaches and writes its table
        try:
            tracer.wait(10)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    counts = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    out.unlink()
    return counts, result.requests


def syscall_table() -> tuple[list[dict], dict[str, float]]:
    """System calls per connection, by call, for the kit (log on, off), minimal and nginx."""
    with contextlib.ExitStack() as stack:
        servers = {"kit": stack.enter_context(KitServer(record=True, src=SRC)),
                   "kit, log off": stack.enter_context(KitServer(record=False, src=SRC)),
                   "minimal": stack.enter_context(MinimalServer(2)),
                   "nginx": stack.enter_context(Nginx(workers=2))}
        per_conn = {}
        for label, server in servers.items():
            calls, served = strace_counts(server)
            per_conn[label] = {name: count / served for name, count in calls.items()}
    names = sorted({name for calls in per_conn.values() for name in calls},
                   key=lambda name: -per_conn["kit"].get(name, 0))
    rows = [{"syscall": name, **{label: round(calls.get(name, 0), 2)
                                 for label, calls in per_conn.items()}}
            for name in names if max(c.get(name, 0) for c in per_conn.values()) >= 0.005]
    totals = {label: sum(calls.values()) for label, calls in per_conn.items()}
    rows.append({"syscall": "total", **{label: round(total, 2) for label, total in totals.items()}})
    return rows, totals


# -- py-spy (optional) --------------------------------------------------------------------------

def pyspy(server, seconds: int = 3) -> list[dict]:
    """py-spy samples of the kit's workers: share per acceptlab/socket source line."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    outputs, spies = [], []
    for pid in server.worker_pids():
        out = tempfile.mkstemp(prefix="acceptlab-pyspy-", suffix=".txt")[1]
        outputs.append(out)
        spies.append(subprocess.Popen(
            [spy, "record", "-p", str(pid), "-r", "500", "-d", str(seconds + 1), "--nonblocking",
             "-f", "raw", "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    run_wrk(server.url, seconds, 32, 2)
    for process in spies:
        try:
            process.wait(seconds + 20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    own: collections.Counter = collections.Counter()
    total = 0
    for out in outputs:
        for line in Path(out).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            own[stack.split(";")[-1]] += int(count)
        Path(out).unlink()
    return [{"line": frame, "share": round(n / total, 3)} for frame, n in own.most_common(12)]


# -- the step -----------------------------------------------------------------------------------

def parts_table(counts: dict, cpu: dict, totals: dict) -> list[dict]:
    """One row per part: instructions and µs per connection, kit beside minimal."""
    rows = []
    for part in (*KIT_PARTS, "loop", "total"):
        row = {"part": part,
               "kit instructions": round(counts["kit"].get(part, 0)),
               "minimal instructions": round(counts["minimal"].get(part, 0)),
               "kit µs (timed)": round(cpu["kit"].get(part, 0), 2),
               "minimal µs (timed)": round(cpu["minimal"].get(part, 0), 2),
               "what": PART_NOTES.get(part, "")}
        if part == "total":
            row["what"] = ("the worker's CPU time (user + sys) / connections; unwrapped runs: "
                           + ", ".join(f"{name} {Spread([s.server_cpu_us for s in runs]).fmt(1)}"
                                       for name, runs in totals.items()))
        rows.append(row)
    rows.append({"part": "total, log off",
                 "kit instructions": round(counts["kit, log off"]["total"]),
                 "minimal instructions": "", "kit µs (timed)": "", "minimal µs (timed)": "",
                 "what": "the kit with its event log off (record=False)"})
    return rows


def run(rounds: int = 3, connections: int = 400) -> list[Figure]:
    banner(f"{STEP}: a connection's cost part by part, kit vs minimal: instructions (callgrind), "
           "system calls (strace), CPU time (one worker under wrk)")
    figures: list[Figure] = []
    missing = [tool for tool in ("valgrind", "callgrind_control", "strace", "wrk")
               if not shutil.which(tool)]
    if missing:
        loud_skip("profile", f"{', '.join(missing)} not installed (Debian: apt-get install "
                             "valgrind strace wrk)")
        return []
    counts = instruction_breakdown(connections)
    cpu, totals, loads = cpu_breakdown(rounds)
    rows = parts_table(counts, cpu, totals)
    write_csv(RESULTS / "profile_parts.csv", rows)
    load = Spread(loads)
    print(f"  per connection, one worker (load average {load.fmt(1)} during the timed runs):")
    print(markdown_table(rows))
    ratio = counts["kit"]["total"] / counts["minimal"]["total"]
    figures.append(Figure(STEP, "kit / minimal: instructions per connection (callgrind)",
                          Spread([ratio]), "ratio",
                          note=f"kit {counts['kit']['total']:,.0f}, log off "
                               f"{counts['kit, log off']['total']:,.0f}, minimal "
                               f"{counts['minimal']['total']:,.0f}; see profile_parts.csv"))
    cpu_ratio = Spread([k.server_cpu_us / m.server_cpu_us
                        for k, m in zip(totals["kit"], totals["minimal"])])
    figures.append(Figure(STEP, "kit / minimal: CPU per connection, 1 worker", cpu_ratio, "ratio",
                          note=f"load average {load.fmt(1)}; the servers step measures the goal"))
    syscalls, per_conn = syscall_table()
    write_csv(RESULTS / "syscalls.csv", syscalls)
    print("  system calls per connection (strace -c -f, 2 workers under wrk):")
    print(markdown_table(syscalls))
    figures.append(Figure(STEP, "system calls per connection, kit / minimal",
                          Spread([per_conn["kit"] / per_conn["minimal"]]), "ratio",
                          note=", ".join(f"{label} {total:.2f}" for label, total in per_conn.items())
                               + " (strace -c); see syscalls.csv"))
    spy = shutil.which("py-spy") or (Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        loud_skip("py-spy profile", "py-spy is not installed (.venv/bin/pip install py-spy; "
                  "it is not a dependency of the kit)")
    else:
        with KitServer(record=True) as kit:
            lines = pyspy(kit)
        write_csv(RESULTS / "profile_kit.csv", lines)
        print("  py-spy, the kit's workers under wrk (share of samples, by top frame):")
        print(markdown_table(lines))
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timed round, 200 connections")
    parser.add_argument("--src", help="profile the kit in this src/ folder (another version)")
    parser.add_argument("--out", help="write the parts table here instead of results/")
    args = parser.parse_args()
    SRC = args.src
    if args.out:
        RESULTS = Path(args.out)
    for figure in run(rounds=1 if args.quick else 3, connections=200 if args.quick else 400):
        print(figure.row())
