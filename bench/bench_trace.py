"""What the kernel trace costs: connections/s and CPU per connection, traced and untraced.

    .venv/bin/python bench/bench_trace.py [--rounds 7] [--connections 2000] [--csv out.csv]

Root only (tracefs); without it the step says so loudly and measures nothing.

How: for each strategy (``blocking``: one wakeup per connection; ``poll``: the
herd, four), a fresh pool of 4 process workers per round, and the kit's own
load (``fire``, 4 concurrent clients, threads of this process).  Rounds alternate
untraced / traced (the order flips every round, so drift in the machine's other
load falls on both), after one uncounted warm-up round.  Per round:

* ``conn_per_s``: connections / the load's span (first connect to last reply, from
  the client's table);
* ``cpu_us_per_conn``: CPU time (user + system) of the workers (``/proc/PID/stat``)
  and of this process (the client threads, the pool's supervisor), over the
  load only, per connection.  The tracepoints' cost is paid
  by whichever task hits them (the workers, the clients, softirq on their
  behalf), so it lands in these numbers; starting the trace and reading its
  buffer is reported apart (``read_ms``) because a run pays it once.

Reported: the median of each and its range (min-max) over the rounds, and the
ratio traced / untraced of the medians.  Imports only the kit and the standard
library.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from acceptlab.client.load import fire
from acceptlab.server.pool import WorkerPool
from acceptlab.linux.tracing import KernelTrace, TracingUnavailable, tracefs_root

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: list[int]) -> float:
    """Seconds of CPU (user + system) the processes ``pids`` have used so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError):
            pass
    return total


def _own_cpu() -> float:
    """CPU seconds of this process (the client's threads run in it)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    return mine.ru_utime + mine.ru_stime


def one_round(strategy: str, traced: bool, connections: int) -> dict:
    """One pool, one load, traced or not; the figures of that round."""
    with WorkerPool(workers=4, kind="process", strategy=strategy) as pool:
        pids = list(pool.pids)
        tracer = KernelTrace(tids=pids, port=pool.address[1]).start() if traced else None
        try:
            cpu_before, own_before = _cpu_of(pids), _own_cpu()
            client = fire(pool.address, protocol="zen", connections=connections, concurrency=4)
            seconds = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9
            cpu = _cpu_of(pids) - cpu_before + _own_cpu() - own_before
            read_started = time.perf_counter()
            events = len(tracer.stop()) if tracer is not None else 0
            read_ms = (time.perf_counter() - read_started) * 1000 if traced else 0.0
            lost = tracer.lost if tracer is not None else 0
        finally:
            if tracer is not None:
                tracer.close()
    ok = int(client["ok"].sum())
    return {"strategy": strategy, "traced": traced, "connections": ok,
            "conn_per_s": ok / seconds, "cpu_us_per_conn": cpu / max(ok, 1) * 1e6,
            "read_ms": read_ms, "events": events, "lost": lost}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per condition")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--strategies", nargs="+", default=["blocking", "poll"])
    parser.add_argument("--csv", type=Path, help="also write every round here")
    args = parser.parse_args()
    try:
        tracefs_root()
    except TracingUnavailable as exc:
        print(f"SKIPPED bench_trace: {exc}", file=sys.stderr)
        return 0
    rows = []
    for strategy in args.strategies:
        one_round(strategy, True, args.connections // 4)  # warm-up, not counted: caches, imports
        for number in range(args.rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for traced in order:
                rows.append(one_round(strategy, traced, args.connections))
    print(f"{args.rounds} alternating rounds per condition, {args.connections} connections "
          f"each, 4 process workers, 4 concurrent clients; median [min-max]")
    print(f"{'strategy':<10} {'traced':<7} {'conn/s':>26} {'CPU us/conn':>26} "
          f"{'read ms':>22} {'events':>7} {'lost':>5}")
    for strategy in args.strategies:
        medians = {}
        for traced in (False, True):
            mine = [row for row in rows if row["strategy"] == strategy and row["traced"] == traced]
            rate = [row["conn_per_s"] for row in mine]
            cpu = [row["cpu_us_per_conn"] for row in mine]
            medians[traced] = (statistics.median(rate), statistics.median(cpu))
            print(f"{strategy:<10} {str(traced):<7} {_spread(rate):>26} {_spread(cpu):>26} "
                  f"{_spread([row['read_ms'] for row in mine]):>22} "
                  f"{int(statistics.median([row['events'] for row in mine])):>7} "
                  f"{max(row['lost'] for row in mine):>5}")
        (rate_off, cpu_off), (rate_on, cpu_on) = medians[False], medians[True]
        print(f"{strategy:<10} traced/untraced: conn/s x{rate_on / rate_off:.3f}, "
              f"CPU per connection x{cpu_on / cpu_off:.3f}")
    if args.csv:
        with args.csv.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
