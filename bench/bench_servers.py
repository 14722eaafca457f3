"""Targets 1, 2 and 4: the kit's server with its event log on and off, against nginx, under wrk.

Four servers run side by side for the whole step, each on its own loopback port:
nginx (2 workers, ``return 200``, keep-alive off), the kit (2 process workers,
``blocking``, ``http``) with the event log on and with it off, and the floor, a
minimal Python blocking-accept server (bench/minimal_server.py).  Each round
runs wrk (``-H 'Connection: close'``: every request a new connection) against
each in turn, in a rotating order, and then in the reverse order (A B C D D C B
A), so that a load rising or falling during the round hits all of them alike.
Per round we take ratios of the runs of that round; the step reports their
median and range.

Besides connections/s, each run reads the CPU time (user + sys) the servers'
worker processes and wrk used, from /proc and wait4: the OS's own accounting,
divided by the connections served.  The "CPU-normalised" ratio compares
connections per CPU-second of server + wrk together: what the throughput ratio
would be on an otherwise idle machine, where the CPU is the limit.  It is much
less sensitive to what else runs on a shared machine.
"""

from __future__ import annotations

import statistics

from . import RESULTS
from .nginx import Nginx
from .rows import Figure, banner, check, write_csv
from .servers import KitServer, MinimalServer
from .stats import Spread, ratios
from .wrk import Sample, wrk_rounds

STEP = "servers"
GOAL = "issue 21"  # the hot path's goals: these figures are listed together in the summary
CONNECTIONS = 32  # wrk -c: connections in flight (each one new per request)
THREADS = 2  # wrk -t


def run(min_rounds: int = 5, max_rounds: int = 10, budget: float = 70,
        seconds: int = 1) -> list[Figure]:
    banner(f"{STEP}: kit (log on / off) vs nginx and a minimal Python server, wrk -t{THREADS} "
           f"-c{CONNECTIONS} -d{seconds}s -H 'Connection: close', >= {min_rounds} mirrored rounds")
    with Nginx(workers=2) as nginx, KitServer(record=True) as on, \
            KitServer(record=False) as off, MinimalServer(workers=2) as minimal:
        servers = {"nginx": nginx, "on": on, "off": off, "minimal": minimal}
        rounds = wrk_rounds(servers, seconds=seconds, connections=CONNECTIONS, threads=THREADS,
                            min_rounds=min_rounds, max_rounds=max_rounds, budget=budget,
                            show=_show)
    write_csv(RESULTS / "servers.csv", rounds.rows("server"))
    kept = rounds.kept()
    samples = {key: [r[key] for r in kept] for key in ("nginx", "on", "off", "minimal")}
    return summarise(samples, rounds.note())


def _show(round_: int, key: str, sample: Sample) -> None:
    print(f"  round {round_}: {sample.label:<30} {sample.rate:8.0f} conn/s  "
          f"server {sample.server_cpu_us:5.1f} µs/conn  wrk {sample.wrk_cpu_us:5.1f}  "
          f"errors {sample.errors}  (others used {sample.others_cores:.2f} cores)", flush=True)


def _split(runs: list[Sample]) -> str:
    user = statistics.median(s.server_user_us for s in runs)
    system = statistics.median(s.server_sys_us for s in runs)
    return f"user {user:.1f} + sys {system:.1f} (medians)"


def summarise(samples: dict[str, list[Sample]], rounds_note: str) -> list[Figure]:
    rate = {k: [s.rate for s in v] for k, v in samples.items()}
    cpu = {k: [s.server_cpu_us for s in v] for k, v in samples.items()}
    total = {k: [s.server_cpu_us + s.wrk_cpu_us for s in v] for k, v in samples.items()}
    others = Spread([s.others_cores for v in samples.values() for s in v])
    errors = sum(s.errors for v in samples.values() for s in v)
    log_ratio = ratios(rate["on"], rate["off"])
    nginx_ratio = ratios(rate["on"], rate["nginx"])
    cpu_ratio = ratios(cpu["on"], cpu["nginx"])
    minimal_ratio = ratios(cpu["on"], cpu["minimal"])
    figures = [
        Figure(STEP, "4. kit (log on) / minimal Python server: CPU per connection", minimal_ratio,
               "ratio", "<= 1.15", check(minimal_ratio, "<= 1.15"), goal=GOAL,
               note=f"what the kit's features cost over bench/minimal_server.py; {rounds_note}"),
        Figure(STEP, "1. event log on / off: connections/s", log_ratio, "ratio", ">= 0.95",
               check(log_ratio, ">= 0.95"), goal=GOAL, note=rounds_note),
        Figure(STEP, "1. event log on / off: CPU-normalised", ratios(total["off"], total["on"]),
               "ratio", note="(server+wrk CPU per conn, off / on)"),
        Figure(STEP, "1. kit CPU per connection, log off", Spread(cpu["off"]), "µs", digits=1),
        Figure(STEP, "2. kit (log on) / nginx: connections/s", nginx_ratio, "ratio", ">= 0.90",
               check(nginx_ratio, ">= 0.90"), goal=GOAL, note=rounds_note),
        Figure(STEP, "2. kit (log off) / nginx: connections/s", ratios(rate["off"], rate["nginx"]),
               "ratio"),
        Figure(STEP, "2. kit (log on) / nginx: CPU-normalised", ratios(total["nginx"], total["on"]),
               "ratio", note="(nginx server+wrk CPU per conn / kit's)"),
        Figure(STEP, "2. minimal Python server / nginx: connections/s",
               ratios(rate["minimal"], rate["nginx"]), "ratio",
               note="bench/minimal_server.py: accept, recv, sendall, close"),
        Figure(STEP, "2. nginx connections/s", Spread(rate["nginx"]), "conn/s", digits=0),
        Figure(STEP, "2. kit (log on) connections/s", Spread(rate["on"]), "conn/s", digits=0),
        Figure(STEP, "4. kit (log on) CPU per connection", Spread(cpu["on"]), "µs", digits=1,
               note=f"2 workers' user+sys / connections; {_split(samples['on'])}"),
        Figure(STEP, "4. nginx CPU per connection", Spread(cpu["nginx"]), "µs", digits=1,
               note=f"2 workers' user+sys / connections; {_split(samples['nginx'])}"),
        Figure(STEP, "4. minimal Python server CPU per connection", Spread(cpu["minimal"]), "µs",
               digits=1, note=_split(samples["minimal"])),
        Figure(STEP, "4. kit / nginx CPU per connection", cpu_ratio, "ratio", "<= 1.05",
               check(cpu_ratio, "<= 1.05"), note="parity = 1.0"),
        Figure(STEP, "4. wrk CPU per connection (vs nginx)",
               Spread([s.wrk_cpu_us for s in samples["nginx"]]), "µs", digits=1),
        Figure(STEP, "machine: cores used by other processes", others, "cores",
               note=f"during the rounds used ({rounds_note}); wrk errors: {errors}"),
    ]
    return figures


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
