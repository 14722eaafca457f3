"""Where a connection's cost goes: system calls per connection (strace -c), kit vs nginx,
and where the kit's workers spend their time (py-spy, if installed).

``strace -c -f`` attaches to the running workers for one short wrk run and
counts every system call; divided by the connections wrk completed, that is
each server's system-call bill per connection.  (strace slows the traced
processes a lot: these counts are exact, their throughput is not.)

py-spy samples the kit's two worker processes during a wrk run and reports
the share of samples per source line of the acceptlab package ("self": the
line at the top of the stack; a line that makes a system call is charged for
the kernel time too).  py-spy is not a dependency of the kit: install it into
the venv to get this part (``.venv/bin/pip install py-spy``).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from . import PYTHON, RESULTS, bench_patch
from .nginx import Nginx
from .rows import Figure, banner, loud_skip, markdown_table, write_csv
from .servers import KitServer, MinimalServer
from .stats import Spread
from .wrk import run_wrk

STEP = "profile"


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


def micro_costs(repeat: int = 50_000) -> list[dict]:
    """CPU cost of the pieces of the kit's per-connection path, timed in a loop (µs per call).

    These are user-space costs measured in isolation, no scheduler involved: the
    parts of one connection's bill that are the kit's own choices.
    """
    import os
    import socket
    import threading

    from acceptlab.server.eventlog import EventWriter
    from acceptlab.linux.kernel import voluntary_switches
    from acceptlab.server.protocol import HTTP, served_by, split_requests
    from acceptlab.server.strategies import Wakeup

    now = time.monotonic_ns
    tid = threading.get_native_id()
    who = served_by(0, os.getpid(), tid)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
    folder = tempfile.mkdtemp(prefix="acceptlab-micro-")
    log = EventWriter(Path(folder) / "w.events", 0, 0)

    def event_log() -> None:
        row = log.begin_wait(tid, now())
        log.woke(row, now(), "accepted", now(), 12345, 7)
        log.done(row, now())
        if log._count > 4000:  # stay inside the first mapping: measure writes, not growth
            log._count = 0

    def counters() -> None:
        voluntary_switches()
        voluntary_switches()

    def http() -> None:
        for one in split_requests(request, HTTP.request_end)[0]:
            HTTP.answer(one, who)

    pair = (None, ("127.0.0.1", 12345))
    pieces = {
        "event log: begin_wait + woke + done": event_log,
        "context-switch counter read twice (2 getrusage)": counters,
        "http: split_requests + answer": http,
        "Wakeup.accepted (a NamedTuple)": lambda: Wakeup.accepted(now(), pair),
    }
    rows = []
    for name, piece in pieces.items():
        started = time.perf_counter()
        for _ in range(repeat):
            piece()
        rows.append({"piece": name, "µs per connection": round(
            (time.perf_counter() - started) / repeat * 1e6, 2)})
    log.close()
    shutil.rmtree(folder, ignore_errors=True)
    # socket.accept() (socket.py) around the C accept: enum look-ups, a socket object
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    spent = {"socket.accept() (socket.py wrapper)": 0.0, "listener._accept() (the C call)": 0.0,
             "conn.settimeout() (an ioctl)": 0.0}
    for _ in range(20):
        for name in ("socket.accept() (socket.py wrapper)", "listener._accept() (the C call)"):
            clients = [socket.create_connection(listener.getsockname()) for _ in range(100)]
            started = time.perf_counter()
            accepted = [listener.accept() if name.startswith("socket") else listener._accept()
                        for _ in range(100)]
            spent[name] += time.perf_counter() - started
            socks = [c if isinstance(c, socket.socket) else socket.socket(fileno=c)
                     for c, _ in accepted]
            started = time.perf_counter()
            for sock in socks:
                sock.settimeout(5.0)
            spent["conn.settimeout() (an ioctl)"] += (time.perf_counter() - started) / 2
            for sock in socks + clients:
                sock.close()
    listener.close()
    rows += [{"piece": name, "µs per connection": round(value / 2000 * 1e6, 2)}
             for name, value in spent.items()]
    return rows


def run() -> list[Figure]:
    banner(f"{STEP}: system calls per connection (strace -c), kit, nginx, minimal, patched; "
           "py-spy of the kit")
    if not shutil.which("strace"):
        loud_skip("strace counts", "strace is not installed (Debian: apt-get install strace)")
        return []
    figures: list[Figure] = []
    patched, why = bench_patch.patched_copy()
    with contextlib.ExitStack() as stack:
        nginx = stack.enter_context(Nginx(workers=2))
        kit = stack.enter_context(KitServer(record=True))
        servers = {"kit": kit, "nginx": nginx, "minimal": stack.enter_context(MinimalServer(2))}
        if patched is not None:
            stack.callback(shutil.rmtree, patched, ignore_errors=True)
            src = str(patched / "src")
            servers["kit patched"] = stack.enter_context(KitServer(record=True, src=src))
            servers["kit patched, log off"] = stack.enter_context(
                KitServer(record=False, src=src))
        else:
            print(f"  (no patched server: {why})")
        per_conn = {}
        for label, server in servers.items():
            calls, served = strace_counts(server)
            per_conn[label] = {name: count / served for name, count in calls.items()}
        names = sorted({name for calls in per_conn.values() for name in calls},
                       key=lambda name: -per_conn["kit"].get(name, 0))
        rows = [{"syscall": name, **{f"{label} per conn": round(calls.get(name, 0), 2)
                                     for label, calls in per_conn.items()}}
                for name in names if max(c.get(name, 0) for c in per_conn.values()) >= 0.005]
        totals = {label: sum(calls.values()) for label, calls in per_conn.items()}
        rows.append({"syscall": "total", **{f"{label} per conn": round(total, 2)
                                            for label, total in totals.items()}})
        write_csv(RESULTS / "syscalls.csv", rows)
        print(markdown_table(rows))
        figures.append(Figure(STEP, "system calls per connection, kit / nginx",
                              Spread([totals["kit"] / totals["nginx"]]), "ratio",
                              note=", ".join(f"{label} {total:.2f}"
                                             for label, total in totals.items())
                                   + " (strace -c); see syscalls.csv"))
        spy = shutil.which("py-spy") or (Path(PYTHON).parent / "py-spy")
        if not Path(spy).exists():
            loud_skip("py-spy profile", "py-spy is not installed (.venv/bin/pip install py-spy; "
                      "it is not a dependency of the kit)")
        else:
            lines = pyspy(kit)
            write_csv(RESULTS / "profile_kit.csv", lines)
            print("  py-spy, the kit's workers under wrk (share of samples, by top frame; py-spy\n"
                  "  counts a worker that is runnable but waiting for a CPU as busy):")
            print(markdown_table(lines))
    costs = micro_costs()
    write_csv(RESULTS / "micro_costs.csv", costs)
    print("  user-space cost of the kit's per-connection pieces, timed in isolation:")
    print(markdown_table(costs))
    return figures


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
