"""Target 6: throughput and per-worker fairness with 1-16 workers and 1-64 concurrent clients.

For each kind (threads, processes) and number of workers (1, 2, 4, 8, 16) one
pool of the kit's server runs (``blocking``, ``http``, event log on); all ten
run for the whole step.  wrk fires at each with 1, 4, 16 and 64 connections in
flight (``Connection: close``), one second each; a sweep visits every pool, and
the sweep is repeated, each time in another order.

* throughput: wrk's completed requests per second (= new connections per second);
* fairness: from the kit's own event log, the connections each worker accepted
  during that second; Jain's index (``acceptlab.analysis.jain_fairness``) is 1
  when every worker got the same share and 1/n when one worker got everything;
  the busiest worker's share is given too;
* CPU per connection of the server process(es), from /proc.

Results: scale.csv (every run), scale.md (medians and ranges) and scale.png.
"""

from __future__ import annotations

import contextlib
import statistics
import time

from acceptlab.analysis import jain_fairness
from acceptlab.server.eventlog import read_events

from . import RESULTS
from .procfs import cpu_times, machine_cpu
from .rounds import rotate, wait_for_quiet
from .rows import Figure, banner, markdown_table, write_csv
from .servers import KitServer
from .stats import Spread
from .wrk import run_wrk

STEP = "scale"
KINDS = ("process", "thread")
WORKERS = (1, 2, 4, 8, 16)
CLIENTS = (1, 4, 16, 64)


def run(repeats: int = 3, seconds: int = 1) -> list[Figure]:
    banner(f"{STEP}: {len(KINDS)} kinds x workers {WORKERS} x clients {CLIENTS}, "
           f"{seconds} s each, {repeats} sweeps")
    configs = [(kind, workers) for kind in KINDS for workers in WORKERS]
    windows: dict[tuple, list] = {config: [] for config in configs}
    with contextlib.ExitStack() as stack:
        # every pool runs for the whole step, idle but for its turn, so each sweep visits
        # them all: a noisy minute on the machine then spoils one sweep of many cells,
        # not every sweep of one cell
        servers = {config: stack.enter_context(KitServer(workers=config[1], kind=config[0]))
                   for config in configs}
        for server in servers.values():
            run_wrk(server.url, 1, 4, 2)  # warm-up
        for sweep in range(repeats):
            wait_for_quiet(max_wait=3.0)
            for config in rotate(configs, sweep * 3):
                server = servers[config]
                for clients in CLIENTS:
                    windows[config].append((sweep, clients) + _one(server, seconds, clients))
        events = {config: read_events(server.log_dir) for config, server in servers.items()}
    rows = []
    for (kind, workers), runs in windows.items():
        accepted = events[(kind, workers)]
        accepted = accepted[accepted["outcome"] == "accepted"]
        for sweep, clients, t0, t1, result, cpu, others in runs:
            inside = accepted[(accepted["t_accept_ns"] >= t0) & (accepted["t_accept_ns"] < t1)]
            counts = [int((inside["worker"] == w).sum()) for w in range(workers)]
            rows.append({"kind": kind, "workers": workers, "clients": clients,
                         "sweep": sweep + 1, "conn_per_s": round(result.rate, 1),
                         "errors": result.errors, "jain": round(jain_fairness(counts), 4),
                         "busiest_share": round(max(counts) / max(sum(counts), 1), 4),
                         "cpu_us_per_conn": round(cpu * 1e6, 2),
                         "others_cores": round(others, 2),
                         "per_worker": " ".join(map(str, counts))})

        def median(key: str, clients: int) -> float:
            return statistics.median(r[key] for r in rows[-len(runs):] if r["clients"] == clients)

        print(f"  {workers:2d} {kind:<7}  " + "  ".join(
            f"c{c}: {median('conn_per_s', c):6.0f}/s J={median('jain', c):.2f}" for c in CLIENTS),
            flush=True)
    write_csv(RESULTS / "scale.csv", rows)
    table = summary_table(rows)
    (RESULTS / "scale.md").write_text(
        "# Scale: the kit's server (blocking, http, event log on) under wrk, Connection: close\n\n"
        "Medians over the sweeps, (min-max). Jain = 1: every worker got the same share; "
        "1/n: one worker got all.\n\n" + markdown_table(table))
    plot(rows, RESULTS / "scale.png")
    print(f"  wrote {RESULTS / 'scale.md'}, scale.csv, scale.png")
    return figures(rows, repeats) + [
        Figure(STEP, "machine: cores used by other processes, scale runs",
               Spread([r["others_cores"] for r in rows]), "cores")]


def _one(server: KitServer, seconds: int, clients: int) -> tuple:
    """One wrk run: (start, end, wrk result, server CPU s per connection, others' cores)."""
    pids = server.worker_pids()
    user0, sys0 = cpu_times(pids)
    busy0, _ = machine_cpu()
    t0 = time.monotonic_ns()
    result = run_wrk(server.url, seconds, clients, 2)
    t1 = time.monotonic_ns()
    busy1, _ = machine_cpu()
    user1, sys1 = cpu_times(pids)
    ours = user1 - user0 + sys1 - sys0
    others = (busy1 - busy0 - ours - result.cpu_user - result.cpu_sys) / ((t1 - t0) / 1e9)
    return t0, t1, result, ours / max(result.requests, 1), max(0.0, others)


def _cell(rows: list[dict], kind: str, workers: int, clients: int, key: str) -> list[float]:
    return [r[key] for r in rows
            if r["kind"] == kind and r["workers"] == workers and r["clients"] == clients]


def summary_table(rows: list[dict]) -> list[dict]:
    table = []
    for kind in KINDS:
        for workers in WORKERS:
            for clients in CLIENTS:
                rate = Spread(_cell(rows, kind, workers, clients, "conn_per_s"))
                fair = Spread(_cell(rows, kind, workers, clients, "jain"))
                busiest = Spread(_cell(rows, kind, workers, clients, "busiest_share"))
                cpu = Spread(_cell(rows, kind, workers, clients, "cpu_us_per_conn"))
                table.append({"kind": kind, "workers": workers, "clients": clients,
                              "conn/s": rate.fmt(0).split(", n=")[0] + ")",
                              "Jain": fair.fmt(2).split(", n=")[0] + ")",
                              "busiest worker": f"{busiest.median:.0%}",
                              "server CPU µs/conn": f"{cpu.median:.1f}"})
    return table


def figures(rows: list[dict], repeats: int) -> list[Figure]:
    out = []

    def paired(kind_a, workers_a, kind_b, workers_b, clients):
        a = _cell(rows, kind_a, workers_a, clients, "conn_per_s")
        b = _cell(rows, kind_b, workers_b, clients, "conn_per_s")
        return Spread([x / y for x, y in zip(a, b) if y])

    out.append(Figure(STEP, "6. processes: 16 workers / 1 worker, 64 clients",
                      paired("process", 16, "process", 1, 64), "ratio",
                      note="throughput; the 2 cores are shared with wrk"))
    out.append(Figure(STEP, "6. threads: 16 workers / 1 worker, 64 clients",
                      paired("thread", 16, "thread", 1, 64), "ratio", note="throughput; the GIL"))
    out.append(Figure(STEP, "6. 2 threads / 2 processes, 64 clients",
                      paired("thread", 2, "process", 2, 64), "ratio", note="throughput"))
    out.append(Figure(STEP, "6. 16 threads / 16 processes, 64 clients",
                      paired("thread", 16, "process", 16, 64), "ratio", note="throughput"))
    for kind in KINDS:
        out.append(Figure(STEP, f"6. Jain fairness, 16 {kind} workers, 64 clients",
                          Spread(_cell(rows, kind, 16, 64, "jain")), "index",
                          note="1 = equal shares; scale.md has every cell"))
        out.append(Figure(STEP, f"6. Jain fairness, 16 {kind} workers, 1 client",
                          Spread(_cell(rows, kind, 16, 1, "jain")), "index",
                          note="sequential: FIFO wake-one predicts strict round robin"))
    return out


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip(CLIENTS, ("#999999", "#5b8ff9", "#f6903d", "#c2255c")))
    for kind, style in zip(KINDS, ("-", "--")):
        for clients in CLIENTS:
            rates = [statistics.median(_cell(rows, kind, w, clients, "conn_per_s"))
                     for w in WORKERS]
            fair = [statistics.median(_cell(rows, kind, w, clients, "jain")) for w in WORKERS]
            label = f"{kind} workers, {clients} client{'s' if clients > 1 else ''}"
            left.plot(WORKERS, rates, style, marker="o", color=colours[clients], label=label)
            right.plot(WORKERS, fair, style, marker="o", color=colours[clients], label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(WORKERS, [str(w) for w in WORKERS])
        axis.set_xlabel("workers")
        axis.grid(alpha=0.3)
    left.set_ylabel("new connections / s (wrk, Connection: close)")
    left.set_title("Throughput: solid = processes, dashed = threads")
    right.set_ylabel("Jain's fairness index over workers")
    right.set_ylim(0, 1.05)
    right.set_title("Per-worker fairness (1 = equal shares)")
    left.legend(fontsize=7, ncol=2)
    fig.suptitle("acceptlab server (blocking, http, event log on), 2 cores shared with wrk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
