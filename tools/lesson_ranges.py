"""Rerun the lessons' key experiments several times and keep the range each figure took, per machine state.

A notebook runs each experiment once, and a single run of a scheduling-dependent
figure is a sample, not a constant.  The lessons therefore never state such a
figure in prose: they print this run's value and, beside it, the ranges this
script measured, read from ``data/lesson-ranges.json``.

How busy the machine is changes those figures (a woken worker that waits for a
CPU loses races it would win on an idle machine), so every invocation is one
**session** with a label, ``quiet`` or ``loaded``, and records the load average
before and after it and the machine it ran on.  The lessons print each label's
range and say which one the run in front of the learner resembles
(:func:`acceptlab.views.verdicts.closest_session`)::

    PYTHONPATH=src python tools/lesson_ranges.py --session quiet    # on an idle machine
    PYTHONPATH=src python tools/lesson_ranges.py --session loaded   # while other work runs
    PYTHONPATH=src python tools/lesson_ranges.py --session loaded --runs 3 --only gil
    PYTHONPATH=src python tools/lesson_ranges.py --markdown         # the README's herd table

``--session quiet`` refuses to run when the load average says the machine is
busy (more than a quarter of its CPUs in use), so a quiet range cannot be
recorded on a loaded machine by mistake.

Each entry of the JSON file holds the experiment's settings, its ``sessions``
(label, date, machine, load average before and after, command, runs and their
min/max), and, for older readers, every session's runs together with their
overall ``range``.
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
LABELS = ("quiet", "loaded")  # the order acceptlab.views.verdicts.session_ranges prints them in
QUIET_LOAD_PER_CPU = 0.25  # a 1-minute load average above this share of the CPUs is not quiet


def _throughput(client) -> float:
    seconds = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9
    return int(client["ok"].sum()) / seconds


def _latency_ms(client):
    return (client["t_done_ns"] - client["t_start_ns"]) / 1e6


def closed_loop(runs: int) -> dict:
    """04: the longest accept queue of a closed loop, and its mean latency against the capacity bound."""
    from acceptlab import run_experiment
    values = {}
    workers, per_connection_ms = 4, 3 * 3  # three requests of sleep:3
    for clients in (8, 32):
        rows = []
        for _ in range(runs):
            run = run_experiment(workers=workers, work="sleep:3", connections=150 if clients == 8 else 300,
                                 concurrency=clients, sample_queue=True)
            rate = _throughput(run.client)
            latency = _latency_ms(run.client)
            rows.append({"max_queue": int(run.queue["queue_len"].max()),
                         "p50_ms": round(float(latency.median()), 1),
                         "mean_ms": round(float(latency.mean()), 1),
                         # the capacity model: W >= C * S / N once C > N
                         "capacity_ms": round(clients * per_connection_ms / workers, 1),
                         "littles_law_ms": round(1000 * clients / rate, 1),
                         "conn_per_s": round(rate)})
        values[f"concurrency_{clients}"] = {"settings": {"workers": workers, "work": "sleep:3",
                                                          "concurrency": clients}, "runs": rows}
    return values


def gil(runs: int) -> dict:
    """04: four threads in one worker process against four processes, waiting and computing."""
    from acceptlab import run_experiment
    values = {}
    for work in ("spin:5", "sleep:5"):
        rows = []
        for _ in range(runs):
            threads = run_experiment(workers=1, threads=4, kind="hybrid", work=work,
                                     connections=40, concurrency=8)
            processes = run_experiment(workers=4, kind="process", work=work, connections=40,
                                       concurrency=8)
            row = {"thread": round(_throughput(threads.client), 1),
                   "process": round(_throughput(processes.client), 1)}
            row["ratio"] = round(row["process"] / row["thread"], 2)
            rows.append(row)
        values[work] = {"settings": {"threads": "1 process x 4 threads", "processes": 4,
                                     "connections": 40, "concurrency": 8, "client_processes": 1},
                        "runs": rows}
    return values


def _order_row(run, workers: int) -> dict:
    from acceptlab import analysis
    rows = analysis.accepted(run.events)
    ranks = analysis.wake_order_ranks(run.events)["rank"]
    return {"rr_score": round(analysis.round_robin_score(rows["worker"].tolist(), workers), 2),
            "longest_waiter_won": round(float((ranks == 0).mean()), 2),
            "never_slept": round(float((rows["nvcsw"] == 0).mean()), 2)}


def round_robin(runs: int) -> dict:
    """02: blocking accept() with a 1 ms gap, with none, and with two clients at once."""
    from acceptlab import run_experiment
    values = {}
    for key, gap, clients in (("gap_1ms", 0.001, 1), ("gap_0ms", 0.0, 1), ("clients_2", 0.0, 2)):
        rows = [_order_row(run_experiment(workers=4, strategy="blocking", connections=200,
                                          gap=gap, concurrency=clients), 4)
                for _ in range(runs)]
        settings = {"workers": 4, "connections": 200, "gap": gap}
        if clients > 1:
            settings["concurrency"] = clients
        values[key] = {"settings": settings, "runs": rows}
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


# -- the file's shape ---------------------------------------------------------------------------

def _ranges(runs: list[dict]) -> dict:
    """min/max of every numeric field over ``runs`` (a field missing from some runs: over the others)."""
    out = {}
    for key in dict.fromkeys(key for row in runs for key in row):
        numbers = [row[key] for row in runs
                   if isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)]
        if numbers:
            out[key] = [min(numbers), max(numbers)]
    return out


def upgrade(entry: dict) -> dict:
    """Give an entry of the older shape (runs and sessions apart) one record per session.

    The first files kept every run in one list and, beside it, each session's date,
    run count and load average.  The runs are split back into their sessions in order;
    a session recorded before labels existed ran while the machine was busy (its load
    average says so, or it was not recorded), so it is labelled ``loaded``.
    """
    if all("label" in session for session in entry.get("sessions", [])) and entry.get("sessions"):
        return entry
    sessions = entry.get("sessions") or [{"date": entry.get("date"), "runs": len(entry["runs"]),
                                          "load_average_before": None}]
    upgraded, start = [], 0
    for session in sessions:
        count = session["runs"] if isinstance(session["runs"], int) else len(session["runs"])
        runs = entry["runs"][start:start + count]
        start += count
        upgraded.append({"label": "loaded", "date": session.get("date"),
                         "machine": entry.get("machine"),
                         "load_average": {"before": session.get("load_average_before"),
                                          "after": None},
                         "command": entry.get("command"), "runs": runs, "range": _ranges(runs)})
    return {**entry, "sessions": upgraded}


def merge(old: dict | None, new: dict, session: dict) -> dict:
    """Add one session's runs to an entry, keeping the sessions recorded before with the same settings.

    An entry whose settings changed starts again: runs made with other settings
    measure something else.

    Args:
        old: the entry as the file holds it (or None).
        new: ``{"settings": ..., "runs": [...]}`` from an experiment.
        session: the session's label, date, machine, load average and command.
    """
    record = {**session, "runs": new["runs"], "range": _ranges(new["runs"])}
    sessions = [record]
    if old and old.get("settings") == new["settings"]:
        sessions = upgrade(old)["sessions"] + [record]
    runs = [row for past in sessions for row in past["runs"]]
    return {"settings": new["settings"], "sessions": sessions, "runs": runs,
            "range": _ranges(runs), "machine": session["machine"], "command": session["command"]}


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


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine() -> dict:
    """The machine a session ran on, as the lessons print it."""
    return {"system": f"{platform.system()} {platform.release()}", "cpus": os.cpu_count(),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen experiments ``--runs`` times each and add them, as one session, to the JSON file.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", choices=LABELS,
                        help="how busy the machine is while this session runs (required to run)")
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
    if args.session is None:
        parser.error("say how busy the machine is: --session quiet or --session loaded")
    if args.runs < 3:
        parser.error("a range needs at least 3 runs")
    where = machine()
    before = _load_average()
    if args.session == "quiet" and before is not None and before > QUIET_LOAD_PER_CPU * (where["cpus"] or 1):
        print(f"the load average is {before} on {where['cpus']} CPUs: this machine is not quiet; "
              "record with --session loaded, or wait until it is idle", file=sys.stderr)
        return 2
    command = ("PYTHONPATH=src python tools/lesson_ranges.py "
               + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    for name in args.only or sorted(EXPERIMENTS):
        started, load_before = time.perf_counter(), _load_average()
        results = EXPERIMENTS[name](args.runs)
        session = {"label": args.session, "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                   "machine": where, "load_average": {"before": load_before, "after": _load_average()},
                   "command": command}
        for key, entry in results.items():
            entry = merge(table.get(name, {}).get(key), entry, session)
            table.setdefault(name, {})[key] = entry
            print(f"{name}/{key}: {entry['sessions'][-1]['range']}", flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s, load average "
              f"{session['load_average']['before']} -> {session['load_average']['after']})", flush=True)
        args.out.write_text(json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
