"""Does observing change what it measures?  And the kit's http server against real servers.

    .venv/bin/python -m bench.bench_observe [--min-rounds 7] [--seconds 2]
                                            [--only observer|client|servers]

Needs the kit; nginx (Debian: nginx-light) for part 1, gunicorn and uvicorn
(``pip install 'acceptlab[servers]'``) for part 2.  A part whose server is missing is
skipped with a loud reason.  Linux only (it reads /proc).

Part 1, what observing costs nginx.  One nginx (:mod:`acceptlab.real.servers`, default configuration,
2 workers) under a throughput load, the kit's fastest client (``fire(processes=2,
concurrency=16)``: HTTP/1.0, a new connection per request) for a fixed time, with beside it:

* ``alone``: nothing else;
* ``plain``: a sequential load, one connection at a time 1 ms apart, from the plain client
  (:func:`acceptlab.client.load.fire`): what any second client costs;
* ``observed``: the same sequential load fired by :func:`acceptlab.real.observe.observe`, every
  connection attributed to its worker (``attribution="auto"``: after the reply, since
  nginx keeps an HTTP/1.1 connection open), with its accept-queue sampling.

nginx's connections/s is every connection it served in the throughput load's window: the
throughput load's and the sequential load's.  The figures are ratios taken within a round
(mirrored rotating rounds, :func:`bench.rounds.alternate`: A P O O P A, then the next
order), median and range over the rounds:

* ``observed / plain``: the cost of observing, the same load attributed or not.  The
  issue's bar (nginx keeps >= 95 % of its connections/s while observed) is read here;
* ``observed / alone``: the observer's whole cost, its own load included.  On this 2-core
  machine nginx and the throughput load already fill both cores, so every microsecond the
  sequential client spends comes out of nginx's share: this ratio is about the machine as
  much as about observing, and is reported beside the bar, not instead of it;
* the same over the throughput load's connections only (the most conservative reading);
* nginx's CPU per connection (its workers' user + system time over every connection they
  served), observed / plain: what attribution changes in the server itself.

Part 1b (``--only client``), what the observer spends: the sequential load's client CPU (this
process, user + system) per connection, for the plain client and for ``observe`` in each of
its two attributions, 2,000 connections 1 ms apart at the same nginx, nothing else running,
in rotating rounds; median and range of each, and each observer's ratio to the plain client.

Part 2, the kit's ``http`` server (WorkerPool, blocking, 2 process workers) against gunicorn
sync and uvicorn (2 workers each, acceptlab.real.servers's one-line app) under the same throughput
load, in mirrored rotating rounds; each server's connections/s over the kit's.

Every server listens on 127.0.0.1 and is stopped by acceptlab.real.servers / the pool on exit; every
load is bounded by a count and a duration.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from acceptlab.client.load import fire
from acceptlab.real.observe import observe
from acceptlab.server.pool import WorkerPool
from acceptlab.real.servers import missing_reason, real_server

from .procfs import cpu_times
from .rounds import alternate
from .rows import Figure, banner, check, loud_skip, markdown_table, write_csv
from .stats import Spread, ratios

GAP = 0.001  # the sequential load: notebook 09's "sequential", one connection 1 ms apart
LEAD = 0.5  # seconds the sequential load runs before the throughput window opens
TARGET = ">= 0.95"


def _own_cpu() -> float:
    """CPU seconds of this process (the sequential client's threads) and its reaped children
    (the throughput load's client processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Window:
    """One throughput run, with whatever ran beside it, seen from nginx's side."""

    load: int  # the throughput load's ok connections in the window
    side: int  # the sequential load's ok connections that started in the window
    seconds: float  # the window: the throughput load's first start to its last end
    nginx_cpu: float  # CPU seconds nginx's workers used over the whole run
    nginx_served: int  # every connection nginx served over the whole run (for nginx_cpu)
    coverage: float  # the observer's attributed / total (nan when not observed)
    ours_cpu_s: float  # CPU seconds of nginx's workers and our clients (for bench.rounds)
    others_cores: float = 0.0

    @property
    def rate(self) -> float:
        """Every connection nginx served in the window, per second."""
        return (self.load + self.side) / self.seconds if self.seconds else 0.0

    @property
    def load_rate(self) -> float:
        """The throughput load's connections only, per second."""
        return self.load / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """nginx's CPU per connection it served, microseconds."""
        return self.nginx_cpu / self.nginx_served * 1e6 if self.nginx_served else 0.0

    def merge(self, other: "Window") -> "Window":
        """Two runs of one condition as one: counts and times added."""
        seconds = self.seconds + other.seconds
        return Window(self.load + other.load, self.side + other.side, seconds,
                      self.nginx_cpu + other.nginx_cpu, self.nginx_served + other.nginx_served,
                      min(self.coverage, other.coverage), self.ours_cpu_s + other.ours_cpu_s,
                      (self.others_cores * self.seconds + other.others_cores * other.seconds)
                      / seconds if seconds else 0.0)


def _throughput(address: tuple[str, int], seconds: float):
    return fire(address, protocol="http", connections=10**6, concurrency=16, processes=2,
                duration=seconds, timeout=5.0)


def one_run(server, condition: str, seconds: float) -> Window:
    """The throughput load for ``seconds`` with ``condition`` beside it (see the docstring)."""
    side: dict = {}  # the sequential load's client table, and the observer's coverage

    def sequential() -> None:
        span = seconds + 2 * LEAD + 1.0  # outlasts the throughput window on both sides
        if condition == "plain":
            side["client"] = fire(server.address, protocol="http", connections=10**6, gap=GAP,
                                  duration=span)
        else:
            run = observe(server.pid, port=server.address[1], connections=10**6, gap=GAP,
                          duration=span, baseline=False)
            side["client"], side["coverage"] = run.client, run.meta["coverage"]["coverage"]

    workers = server.workers
    cpu0, own0 = sum(cpu_times(workers)), _own_cpu()
    thread = None
    if condition != "alone":
        thread = threading.Thread(target=sequential, name=f"bench-{condition}", daemon=True)
        thread.start()
        time.sleep(LEAD)
    client = _throughput(server.address, seconds)
    if thread is not None:
        thread.join()
    cpu, own = sum(cpu_times(workers)) - cpu0, _own_cpu() - own0
    ok = client[client["ok"]]
    start, end = int(ok["t_start_ns"].min()), int(ok["t_done_ns"].max())
    inside, served, coverage = 0, len(ok), math.nan
    if side:
        others = side["client"][side["client"]["ok"]]
        if others["t_start_ns"].min() > start or others["t_done_ns"].max() < end:
            raise RuntimeError(f"the {condition} load did not cover the throughput window "
                               "(raise LEAD)")
        inside = int(others["t_start_ns"].between(start, end).sum())
        served += len(others)
        coverage = side.get("coverage", math.nan)
    return Window(len(ok), inside, (end - start) / 1e9, cpu, served, coverage, cpu + own)


def _show(round_: int, condition: str, run: Window) -> None:
    extra = f", coverage {run.coverage:.1%}" if not math.isnan(run.coverage) else ""
    print(f"  round {round_} {condition:8s}: {run.rate:7.0f} conn/s ({run.load_rate:.0f} from "
          f"the throughput load), server CPU {run.cpu_us:.1f} us/conn, others "
          f"{run.others_cores:.2f} cores{extra}", flush=True)


def observer_overhead(min_rounds: int, max_rounds: int, seconds: float, budget: float,
                      results: Path) -> list[Figure]:
    reason = missing_reason("nginx")
    if reason:
        loud_skip("observer overhead", reason)
        return []
    with real_server("nginx", workers=2) as server:
        banner(f"observing nginx {server.version}: {max_rounds}-round budget, {seconds:g} s runs")
        one_run(server, "observed", 1.0)  # warm-up: first connections, caches, the inspection
        rounds = alternate({condition: (lambda c=condition: one_run(server, c, seconds))
                            for condition in ("alone", "plain", "observed")},
                           min_rounds, max_rounds, budget, show=_show, mirrored=True)
    write_csv(results / "observe-observer.csv", [
        {"round": i + 1, "quiet": quiet, "condition": name, "rate": run.rate,
         "load_rate": run.load_rate, "nginx_cpu_us": run.cpu_us, "coverage": run.coverage,
         "others_cores": run.others_cores}
        for i, (runs, quiet) in enumerate(zip(rounds.runs, rounds.quiet))
        for name, run in runs.items()])
    kept = rounds.kept()

    def of(condition: str, field: str) -> list[float]:
        return [getattr(r[condition], field) for r in kept]

    note = rounds.note()
    figures = [
        Figure("observe", "nginx conn/s, observed / plain sequential load",
               ratios(of("observed", "rate"), of("plain", "rate")), target=TARGET, note=note),
        Figure("observe", "nginx conn/s, observed / alone",
               ratios(of("observed", "rate"), of("alone", "rate")), note=note),
        Figure("observe", "throughput load's conn/s, observed / alone",
               ratios(of("observed", "load_rate"), of("alone", "load_rate")), note=note),
        Figure("observe", "nginx conn/s, plain sequential load / alone",
               ratios(of("plain", "rate"), of("alone", "rate")), note=note),
        Figure("observe", "nginx CPU per connection, observed / plain",
               ratios(of("observed", "cpu_us"), of("plain", "cpu_us")), note=note),
        Figure("observe", "observer coverage (lowest run)",
               Spread(of("observed", "coverage")), digits=4, note=note),
    ]
    for figure in figures:
        if figure.target:
            figure.met = check(figure.spread, figure.target)
    return figures


@dataclass
class ClientCost:
    """One sequential load: the client's CPU per connection (for bench.rounds)."""

    cpu_us: float
    ours_cpu_s: float
    others_cores: float = 0.0


def client_cost(min_rounds: int, max_rounds: int, budget: float, results: Path,
                connections: int = 2000) -> list[Figure]:
    reason = missing_reason("nginx")
    if reason:
        loud_skip("observer client cost", reason)
        return []
    with real_server("nginx", workers=2) as server:
        banner(f"the sequential client's CPU per connection, plain and observing "
               f"({connections} connections {GAP * 1000:g} ms apart)")

        def measured(how: str) -> ClientCost:
            cpu0, nginx0 = _own_cpu(), sum(cpu_times(server.workers))
            if how == "plain":
                served = len(fire(server.address, protocol="http", connections=connections,
                                  gap=GAP))
            else:
                served = len(observe(server.pid, connections=connections, gap=GAP,
                                     baseline=False, attribution=how).client)
            cpu = _own_cpu() - cpu0
            return ClientCost(cpu / served * 1e6,
                              cpu + sum(cpu_times(server.workers)) - nginx0)

        def show(round_: int, how: str, cost: ClientCost) -> None:
            print(f"  round {round_} {how:15s}: {cost.cpu_us:6.1f} us/conn, others "
                  f"{cost.others_cores:.2f} cores", flush=True)

        measured("after-reply")  # warm-up
        rounds = alternate({how: (lambda h=how: measured(h))
                            for how in ("plain", "after-reply", "before-request")},
                           min_rounds, max_rounds, budget, show=show)
    write_csv(results / "observe-client.csv", [
        {"round": i + 1, "quiet": quiet, "client": name, "cpu_us": cost.cpu_us,
         "others_cores": cost.others_cores}
        for i, (runs, quiet) in enumerate(zip(rounds.runs, rounds.quiet))
        for name, cost in runs.items()])
    kept, note = rounds.kept(), rounds.note()
    figures = [Figure("client", f"{how} client CPU per connection",
                      Spread([r[how].cpu_us for r in kept]), unit="us", digits=0, note=note)
               for how in ("plain", "after-reply", "before-request")]
    figures += [Figure("client", f"{how} / plain client CPU per connection",
                       ratios([r[how].cpu_us for r in kept], [r["plain"].cpu_us for r in kept]),
                       note=note) for how in ("after-reply", "before-request")]
    return figures


def kit_against_real(min_rounds: int, max_rounds: int, seconds: float, budget: float,
                     results: Path) -> list[Figure]:
    names = [name for name in ("gunicorn-sync", "uvicorn") if not missing_reason(name)]
    for name in ("gunicorn-sync", "uvicorn"):
        if name not in names:
            loud_skip(f"{name} against the kit", missing_reason(name))
    if not names:
        return []
    banner("the kit's http server, gunicorn sync and uvicorn under the same load")
    servers = [real_server(name, workers=2) for name in names]
    try:
        with WorkerPool(workers=2, kind="process", strategy="blocking", protocol="http") as pool:
            addresses = {"kit": pool.address, **{s.name: s.address for s in servers}}
            pids = {"kit": pool.pids, **{s.name: s.workers for s in servers}}

            def measured(name: str) -> Window:
                cpu0, own0 = sum(cpu_times(pids[name])), _own_cpu()
                client = _throughput(addresses[name], seconds)
                cpu = sum(cpu_times(pids[name])) - cpu0
                ok = client[client["ok"]]
                span = (int(ok["t_done_ns"].max()) - int(ok["t_start_ns"].min())) / 1e9
                return Window(len(ok), 0, span, cpu, len(ok), math.nan,
                              cpu + _own_cpu() - own0)

            rounds = alternate({name: (lambda n=name: measured(n)) for name in addresses},
                               min_rounds, max_rounds, budget, show=_show, mirrored=True)
    finally:
        for server in servers:
            server.stop()
    write_csv(results / "observe-servers.csv", [
        {"round": i + 1, "quiet": quiet, "server": name, "rate": run.rate,
         "cpu_us": run.cpu_us, "others_cores": run.others_cores}
        for i, (runs, quiet) in enumerate(zip(rounds.runs, rounds.quiet))
        for name, run in runs.items()])
    kept = rounds.kept()
    return [Figure("servers", f"{name} conn/s / the kit's http server",
                   ratios([r[name].rate for r in kept], [r["kit"].rate for r in kept]),
                   note=rounds.note()) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-rounds", type=int, default=7)
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per part")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--only", choices=("observer", "client", "servers"))
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("bench_observe: Linux only (it reads /proc)")
        return 0
    results, figures = Path(args.results), []
    parts = {
        "observer": lambda: observer_overhead(args.min_rounds, args.max_rounds, args.seconds,
                                              args.budget, results),
        "client": lambda: client_cost(args.min_rounds, args.max_rounds, args.budget, results),
        "servers": lambda: kit_against_real(args.min_rounds, args.max_rounds, args.seconds,
                                            args.budget, results),
    }
    for part, measure in parts.items():
        if args.only in (None, part):
            found = measure()
            if found:  # each part's own summary file: running one part keeps the others'
                write_csv(results / f"observe-{part}-summary.csv", [f.row() for f in found])
            figures += found
    banner("summary")
    rows = [{"figure": f.name, "median (range, n)": f.spread.fmt(f.digits),
             "target": f.target, "met": {None: "", True: "yes", False: "NO"}[f.met],
             "rounds": f.note} for f in figures]
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
