"""Rerun the lessons' key experiments several times and keep the range each figure took.

A notebook runs each experiment once, and a single run of a scheduling-dependent
figure is a sample, not a constant.  The lessons therefore never state such a
figure in prose: they print this run's value and, beside it, the range this
script measured over several runs on the reference machine, read from
``data/lesson-ranges.json``.

    PYTHONPATH=src python tools/lesson_ranges.py            # every experiment, 5 runs each
    PYTHONPATH=src python tools/lesson_ranges.py --runs 3 --only closed_loop gil

Each entry of the JSON file holds the experiment's settings, the per-run values
and their min/max, the machine, and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "lesson-ranges.json"


def _throughput(client) -> float:
    seconds = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9
    return int(client["ok"].sum()) / seconds


def _latency_ms(client):
    return (client["t_done_ns"] - client["t_start_ns"]) / 1e6


def closed_loop(runs: int) -> dict:
    """04: the longest accept queue of a closed loop, and its median latency against Little's law."""
    from acceptlab import run_experiment
    values = {}
    for clients in (8, 32):
        rows = []
        for _ in range(runs):
            run = run_experiment(workers=4, work="sleep:3", connections=150 if clients == 8 else 300,
                                 concurrency=clients, sample_queue=True)
            rate = _throughput(run.client)
            rows.append({"max_queue": int(run.queue["queue_len"].max()),
                         "p50_ms": round(float(_latency_ms(run.client).median()), 1),
                         "littles_law_ms": round(1000 * clients / rate, 1),
                         "conn_per_s": round(rate)})
        values[f"concurrency_{clients}"] = {"settings": {"workers": 4, "work": "sleep:3",
                                                          "concurrency": clients}, "runs": rows}
    return values


def gil(runs: int) -> dict:
    """04: processes / threads throughput, the client in 2 processes of its own."""
    from acceptlab import run_experiment
    values = {}
    for work, connections in (("spin:5", 120), ("sleep:5", 120), ("none", 600)):
        rows = []
        for _ in range(runs):
            row = {}
            for kind in ("thread", "process"):
                run = run_experiment(workers=4, kind=kind, work=work, connections=connections,
                                     concurrency=8, processes=2)
                row[kind] = round(_throughput(run.client), 1)
            row["ratio"] = round(row["process"] / row["thread"], 2)
            rows.append(row)
        values[work] = {"settings": {"workers": 4, "connections": connections, "concurrency": 8,
                                     "processes": 2}, "runs": rows}
    return values


def round_robin(runs: int) -> dict:
    """02: round-robin score of blocking accept() with a 1 ms gap and with none."""
    from acceptlab import analysis, run_experiment
    values = {}
    for gap in (0.001, 0.0):
        rows = []
        for _ in range(runs):
            run = run_experiment(workers=4, strategy="blocking", connections=200, gap=gap)
            order = analysis.accepted(run.events)["worker"].tolist()
            rows.append({"rr_score": round(analysis.round_robin_score(order, 4), 2)})
        values[f"gap_{gap * 1000:g}ms"] = {"settings": {"workers": 4, "connections": 200,
                                                        "gap": gap}, "runs": rows}
    return values


def _herd_row(run, workers: int) -> dict:
    from acceptlab import analysis
    counts = analysis.per_worker(run.events, workers)["accepts"].tolist()
    outcome = run.events["outcome"].astype(str)
    accepted = int(outcome.eq("accepted").sum())
    return {"counts": [int(c) for c in counts], "busiest": int(max(counts)),
            "returns_per_accept": round(int(outcome.ne("waiting").sum()) / accepted, 2),
            "eagain_per_accept": round(int(outcome.eq("eagain").sum()) / accepted, 2),
            "wakeups_per_accept": round(float(run.events["nvcsw"].sum()) / accepted, 2),
            "mean_rank": round(float(analysis.wake_order_ranks(run.events)["norm_rank"].mean()), 2)}


def herd(runs: int) -> dict:
    """05, 06, 08: who wins a racy or LIFO-ish wakeup, and what every waiter pays."""
    from acceptlab import run_experiment
    values = {}
    for strategy, kind, workers in (("blocking", "process", 4), ("reuseport", "process", 4),
                                    ("poll", "process", 4), ("timeout", "process", 4),
                                    ("epoll", "process", 4), ("poll", "process", 6),
                                    ("shared-epoll", "thread", 4),
                                    ("epoll-exclusive", "process", 4),
                                    ("locked", "process", 4)):
        rows = [_herd_row(run_experiment(workers=workers, kind=kind, strategy=strategy,
                                         connections=200, gap=0.001), workers)
                for _ in range(runs)]
        values[f"{strategy}-{kind}-{workers}"] = {
            "settings": {"strategy": strategy, "kind": kind, "workers": workers,
                         "connections": 200, "gap": 0.001}, "runs": rows}
    return values


def supervisor(runs: int) -> dict:
    """03: how long after a SIGKILL the supervisor (interval=0.1) noticed the death."""
    from acceptlab import WorkerPool
    import random
    rows = []
    for _ in range(runs):
        with WorkerPool(workers=4) as pool:
            time.sleep(random.uniform(0.05, 0.15))  # a random moment of the supervisor's cycle
            killed_at = time.monotonic_ns()
            pool.kill(1)
            pool.kill(2)
            deadline = time.monotonic() + 15
            while len(pool.replacements) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            noticed = [(r.t_detected_ns - killed_at) / 1e6 for r in pool.replacements]
        rows.append({"noticed_ms": round(max(noticed), 1)})
    return {"kill_two": {"settings": {"workers": 4, "interval": 0.1, "kill_at": "random phase"},
                         "runs": rows}}


EXPERIMENTS = {"closed_loop": closed_loop, "gil": gil, "round_robin": round_robin,
               "herd": herd, "supervisor": supervisor}


def _merge(old: dict | None, new: dict, session: dict) -> dict:
    """Add a session's runs to the runs already kept for the same settings.

    A scheduling-dependent figure depends on how busy the machine was, so the
    ranges cover every session, and each session records its load average.
    """
    if old and old.get("settings") == new["settings"]:
        new["runs"] = old["runs"] + new["runs"]
        new["sessions"] = old.get("sessions", [{"date": old.get("date"),
                                                "runs": len(old["runs"]),
                                                "load_average_before": None}]) + [session]
    else:
        new["sessions"] = [session]
    new["range"] = _ranges(new)
    return new


def _ranges(entry: dict) -> dict:
    """min/max of every numeric field over an entry's runs."""
    out = {}
    for key in entry["runs"][0]:
        numbers = [row[key] for row in entry["runs"] if isinstance(row[key], (int, float))]
        if numbers:
            out[key] = [min(numbers), max(numbers)]
    return out


def markdown_table(table: dict) -> str:
    """The herd group as a markdown table of ranges, for the README.

    The README's measured table is printed from the kept runs, never typed in, so that it says
    what several runs gave and cannot drift from the data.

    Args:
        table: the parsed ``data/lesson-ranges.json``.
    """
    lines = ["| strategy (200 sequential connections 1 ms apart) | runs | busiest worker (of 200) "
             "| mean wake-order rank (0 FIFO, 1 LIFO) | wakeups per connection | returns per connection "
             "| EAGAIN per connection |", "|---|---|---|---|---|---|---|"]
    for key, entry in table.get("herd", {}).items():
        settings, ranges = entry["settings"], entry["range"]
        cells = [f"{low:g}–{high:g}" if low != high else f"{low:g}"
                 for low, high in (ranges[field] for field in
                                   ("busiest", "mean_rank", "wakeups_per_accept",
                                    "returns_per_accept", "eagain_per_accept"))]
        name = f"{settings['strategy']} ({settings['workers']} {settings['kind']}{'es' if settings['kind'] == 'process' else 's'})"
        lines.append(f"| {name} | {len(entry['runs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen experiments ``--runs`` times each and merge them into the JSON file.

    Each invocation is one session: its runs are added to those already kept for the same
    settings, with the session's date and load average, because how busy the machine was
    changes the scheduling-dependent figures.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per experiment (default 5)")
    parser.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS),
                        help="experiments to run (default: all)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON file (default {OUT})")
    parser.add_argument("--markdown", action="store_true",
                        help="print the herd group of the JSON file as a markdown table; run nothing")
    args = parser.parse_args(argv)
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.markdown:
        print(markdown_table(table))
        return 0
    command = "PYTHONPATH=src python tools/lesson_ranges.py " + " ".join(argv or sys.argv[1:])
    machine = {"system": f"{platform.system()} {platform.release()}", "cpus": os.cpu_count(),
               "python": platform.python_version()}
    for name in args.only or sorted(EXPERIMENTS):
        started = time.perf_counter()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        for key, entry in EXPERIMENTS[name](args.runs).items():
            entry = _merge(table.get(name, {}).get(key), entry, {
                "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "runs": len(entry["runs"]),
                "load_average_before": None if load is None else round(load, 1)})
            entry.update(machine=machine, command=command.strip())
            table.setdefault(name, {})[key] = entry
            print(f"{name}/{key}: {entry['range']}", flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        args.out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
