"""Target 3: the kit's load generator against wrk, both firing at the same nginx.

Per round, in a rotating order: wrk (``-t2 -c32``, ``Connection: close``), the
kit's fastest client mode (``fire(..., processes=2, concurrency=16)``: the
lean epoll loop, one per client process), and for contrast the classic mode
a lesson uses (``processes=1, concurrency=8``: a thread per client).  The
kit's rate is the connections that got a correct reply divided by the span
from the first start to the last end (the client processes start together).
Every run is bounded by a count and a duration.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from acceptlab.client.load import fire

from . import RESULTS
from .nginx import Nginx
from .procfs import cpu_times
from .rounds import alternate
from .rows import Figure, banner, check, write_csv
from .stats import Spread
from .wrk import run_wrk

STEP = "client"
LEAN = "kit lean (2 processes x 16)"
CLASSIC = "kit classic (1 process, 8 threads)"
MODES = {LEAN: dict(processes=2, concurrency=16), CLASSIC: dict(processes=1, concurrency=8)}


@dataclass
class ClientRun:
    rate: float  # new connections/s that got a correct reply
    connections: int
    errors: int
    cpu_us: float  # the client's CPU per connection
    nginx_cpu_us: float = 0.0
    ours_cpu_s: float = 0.0
    others_cores: float = 0.0


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def fire_run(port: int, seconds: float, mode: dict) -> ClientRun:
    """fire() at 127.0.0.1:port for ``seconds``: rate of correct replies, and the client's CPU."""
    # client processes are our children (reaped when fire() returns); threads run in this process
    who = resource.RUSAGE_CHILDREN if mode["processes"] > 1 else resource.RUSAGE_SELF
    before = _cpu(who)
    client = fire(("127.0.0.1", port), protocol="http", connections=500_000, duration=seconds, **mode)
    cpu = _cpu(who) - before
    ok = int(client["ok"].sum())
    span = float(client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9
    return ClientRun(ok / span if span else 0.0, len(client), len(client) - ok,
                     cpu / max(len(client), 1) * 1e6, ours_cpu_s=cpu)


def wrk_run(url: str, seconds: int) -> ClientRun:
    result = run_wrk(url, seconds, 32, 2)
    cpu = result.cpu_user + result.cpu_sys
    return ClientRun(result.rate, result.requests, result.errors,
                     cpu / max(result.requests, 1) * 1e6, ours_cpu_s=cpu)


def with_server_cpu(nginx: Nginx, run):
    """Wrap a client run: add nginx's CPU to it (per connection, and to our own CPU)."""
    def measured() -> ClientRun:
        pids = nginx.worker_pids()
        user0, sys0 = cpu_times(pids)
        result = run()
        user1, sys1 = cpu_times(pids)
        server = user1 - user0 + sys1 - sys0
        result.nginx_cpu_us = server / max(result.connections, 1) * 1e6
        result.ours_cpu_s += server
        return result
    return measured


def _show(round_: int, who: str, run: ClientRun) -> None:
    print(f"  round {round_}: {who:<36} {run.rate:8.0f} conn/s  client CPU {run.cpu_us:5.1f} "
          f"µs/conn  errors {run.errors}  (others used {run.others_cores:.2f} cores)", flush=True)


def run(min_rounds: int = 5, max_rounds: int = 8, budget: float = 45,
        seconds: int = 2) -> list[Figure]:
    banner(f"{STEP}: the kit's client vs wrk, both against nginx (2 workers), "
           f">= {min_rounds} rounds")
    with Nginx(workers=2) as nginx:
        fire_run(nginx.port, 0.5, MODES[LEAN])  # warm-up: imports, first spawn
        contestants = {
            "wrk": with_server_cpu(nginx, lambda: wrk_run(nginx.url, seconds)),
            **{who: with_server_cpu(nginx, lambda mode=mode: fire_run(nginx.port, seconds, mode))
               for who, mode in MODES.items()},
        }
        rounds = alternate(contestants, min_rounds, max_rounds, budget, show=_show)
    write_csv(RESULTS / "client.csv", rounds.rows("client"))
    return summarise(rounds.kept(), rounds.note())


def summarise(kept: list[dict], note: str) -> list[Figure]:
    def ratio(who: str) -> Spread:
        return Spread([r[who].rate / r["wrk"].rate for r in kept if r["wrk"].rate])

    errors = sum(r[who].errors for r in kept for who in MODES)
    lean = ratio(LEAN)
    return [
        Figure(STEP, "3. kit client (lean, 2 proc x 16) / wrk: connections/s", lean, "ratio",
               ">= 0.80", check(lean, ">= 0.80"), goal="issue 21",
               note=f"new connections/s, same nginx; {note}; kit client errors: {errors}"),
        Figure(STEP, "3. kit client (classic, 8 threads) / wrk", ratio(CLASSIC), "ratio",
               note="the thread-per-client mode the lessons use"),
        Figure(STEP, "3. wrk connections/s (vs nginx)", Spread([r["wrk"].rate for r in kept]),
               "conn/s", digits=0),
        Figure(STEP, "3. kit lean client CPU per connection",
               Spread([r[LEAN].cpu_us for r in kept]), "µs", digits=1,
               note=f"incl. starting 2 processes; wrk: "
                    f"{Spread([r['wrk'].cpu_us for r in kept]).median:.1f} µs"),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
