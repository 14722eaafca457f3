"""Issue 15, item 5: what each fix for the uneven split costs, against plain blocking accept().

Every fix of ``acceptlab.server.strategies`` (nginx's ``reorder``, Puma's ``busy-sleep``,
Envoy's ``exact``, Node's ``handoff`` and its least-busy variant, and the two
CPU-aware ``SO_REUSEPORT`` strategies) runs as the kit's server with 4 process
workers and the ``http`` protocol, beside ``blocking`` with the same pool, for
the whole step; each round runs wrk (``-H 'Connection: close'``: every request
a new connection, enough clients to keep every worker busy) against each in a
rotating order and then in the reverse order (A B C C B A).  Per round we take
each fix's ratio to ``blocking`` in that round; the step reports the median of
those ratios and their range.

The server's CPU is the OS's account (user + sys from /proc) of the worker
processes *and* the pool's own process: ``handoff``'s dealer is a thread
there, so leaving it out would hide the extra hop.  The hop is reported on its
own too: ``handoff``'s CPU per connection minus ``blocking``'s, per round.

Cited, not measured here: nginx #322 measured its reordering at 62,058 -> 56,610
requests/s (a ratio of 0.91) with ``pts/nginx`` on a 48-core server
(docs/sources.md#nginx-322); the step prints it beside ``reorder``'s ratio.

Node's cluster: with :mod:`acceptlab.real.servers` (the real-servers module) and Node
installed, Node's own two modes run under the same wrk load in their own rounds,
``SCHED_RR`` (the primary accepts and deals, the same extra hop as ``handoff``)
against ``SCHED_NONE`` (the workers accept on the shared socket), so Node's
price for its hop sits beside the kit's.  Without either, the step says loudly
that this part was skipped and why.

What to expect of the CPU-aware strategies on loopback: the connection's CPU is
the one wrk's thread ran on, so with 2 CPUs only workers 0 and 1 get
connections; their throughput is that of a two-worker server.  ``busy-sleep``
with process workers of one thread each never sleeps (a busy process is not
waiting): its cost here is its herd (every idle worker polls).
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

from . import RESULTS
from .rows import Figure, banner, loud_skip, write_csv
from .servers import KitServer
from .stats import Spread, ratios
from .wrk import Sample, wrk_rounds

STEP = "fixes"
WORKERS = 4
CONNECTIONS = 32  # wrk -c: connections in flight (each one new per request)
THREADS = 2  # wrk -t
FIXES = ("reorder", "busy-sleep", "exact", "handoff", "handoff-least-busy", "reuseport-cpu",
         "reuseport-incoming-cpu")
NGINX_322 = (62_058, 56_610)  # requests/s before and after ngx_reorder_accept_events (cited)


class PoolServer(KitServer):
    """The kit's server, its CPU counted over the workers and the pool's own process."""

    def worker_pids(self) -> list[int]:
        return [*self.pids, self.process.pid]


def run(min_rounds: int = 5, max_rounds: int = 8, budget: float = 150,
        seconds: int = 1) -> list[Figure]:
    from acceptlab.linux.support import Unavailable, check_strategy

    banner(f"{STEP}: each fix vs blocking, {WORKERS} process workers, http, wrk -t{THREADS} "
           f"-c{CONNECTIONS} -d{seconds}s -H 'Connection: close', >= {min_rounds} mirrored rounds")
    fixes = []
    for name in FIXES:
        try:
            check_strategy(name, "process")
        except Unavailable as why:
            loud_skip(f"{STEP}: {name}", str(why))
        else:
            fixes.append(name)
    with ExitStack() as stack:
        servers = {name: stack.enter_context(PoolServer(WORKERS, strategy=name,
                                                        label=f"kit {name}"))
                   for name in ("blocking", *fixes)}
        rounds = wrk_rounds(servers, seconds=seconds, connections=CONNECTIONS, threads=THREADS,
                            min_rounds=min_rounds, max_rounds=max_rounds, budget=budget,
                            show=_show)
    write_csv(RESULTS / "fixes.csv", rounds.rows("server"))
    kept = rounds.kept()
    samples = {name: [r[name] for r in kept] for name in servers}
    figures = summarise(samples, rounds.note())
    figures += node_cluster(min_rounds, max_rounds, budget, seconds)
    return figures


def _show(round_: int, key: str, sample: Sample) -> None:
    print(f"  round {round_}: {sample.label:<32} {sample.rate:8.0f} conn/s  "
          f"server {sample.server_cpu_us:6.1f} µs/conn  errors {sample.errors}  "
          f"(others used {sample.others_cores:.2f} cores)", flush=True)


def summarise(samples: dict[str, list[Sample]], rounds_note: str) -> list[Figure]:
    rate = {k: [s.rate for s in v] for k, v in samples.items()}
    cpu = {k: [s.server_cpu_us for s in v] for k, v in samples.items()}
    errors = sum(s.errors for v in samples.values() for s in v)
    cited = NGINX_322[1] / NGINX_322[0]
    figures = [
        Figure(STEP, "blocking connections/s (the yardstick)", Spread(rate["blocking"]), "conn/s",
               digits=0, note=rounds_note),
        Figure(STEP, "blocking CPU per connection", Spread(cpu["blocking"]), "µs", digits=1,
               note="workers + the pool's process, user+sys / connections"),
    ]
    for name in samples:
        if name == "blocking":
            continue
        note = rounds_note
        if name == "reorder":
            note = (f"cited beside it: nginx #322 measured {NGINX_322[0]:,} -> {NGINX_322[1]:,} "
                    f"requests/s = {cited:.2f} (pts/nginx, 48 cores; docs/sources.md#nginx-322)")
        figures.append(Figure(STEP, f"{name} / blocking: connections/s",
                              ratios(rate[name], rate["blocking"]), "ratio", note=note))
        figures.append(Figure(STEP, f"{name} / blocking: CPU per connection",
                              ratios(cpu[name], cpu["blocking"]), "ratio"))
    if "handoff" in samples:
        hop = Spread([h - b for h, b in zip(cpu["handoff"], cpu["blocking"])])
        figures.append(Figure(STEP, "handoff's extra hop: CPU per connection", hop, "µs", digits=1,
                              note="handoff minus blocking, per round (accept + SCM_RIGHTS + recv)"))
    others = Spread([s.others_cores for v in samples.values() for s in v])
    figures.append(Figure(STEP, "machine: cores used by other processes", others, "cores",
                          note=f"during the rounds used ({rounds_note}); wrk errors: {errors}"))
    if "reorder" in samples:
        print(f"\n  reorder / blocking connections/s: {ratios(rate['reorder'], rate['blocking']).fmt()}"
              f"   beside nginx #322 (cited): {cited:.2f} ({NGINX_322[0]:,} -> {NGINX_322[1]:,} "
              "requests/s)", flush=True)
    return figures


class NodeServer:
    """A running :func:`acceptlab.real.servers.real_server`, shaped as the bench's servers are."""

    def __init__(self, server, label: str) -> None:
        self.server, self.label = server, label
        self.port = server.address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def worker_pids(self) -> list[int]:
        return [*self.server.workers, self.server.pid]  # SCHED_RR's primary deals: count it


def node_cluster(min_rounds: int, max_rounds: int, budget: float,
                 seconds: int) -> list[Figure]:
    """Node's SCHED_RR against SCHED_NONE, under the same wrk load (skipped loudly if absent)."""
    what = f"{STEP}: Node cluster SCHED_RR vs SCHED_NONE (handoff's hop beside Node's)"
    try:
        from acceptlab.real.servers import missing_reason, real_server
    except ImportError:
        loud_skip(what, "acceptlab.real.servers (the real-servers module, branch realservers) is not "
                        "in this checkout, so there is no Node cluster server to start")
        return []
    absent = missing_reason("node-rr")
    if absent:
        loud_skip(what, absent)
        return []
    banner(f"{what}, {WORKERS} workers each")
    with real_server("node-rr", workers=WORKERS) as rr, \
            real_server("node-none", workers=WORKERS) as none:
        servers = {"node-rr": NodeServer(rr, "node SCHED_RR"),
                   "node-none": NodeServer(none, "node SCHED_NONE")}
        rounds = wrk_rounds(servers, seconds=seconds, connections=CONNECTIONS, threads=THREADS,
                            min_rounds=min_rounds, max_rounds=max_rounds, budget=budget,
                            show=_show)
    write_csv(RESULTS / "fixes-node.csv", rounds.rows("server"))
    kept = rounds.kept()
    rate = {name: [r[name].rate for r in kept] for name in servers}
    cpu = {name: [r[name].server_cpu_us for r in kept] for name in servers}
    hop = Spread([a - b for a, b in zip(cpu["node-rr"], cpu["node-none"])])
    return [
        Figure(STEP, "node SCHED_RR / SCHED_NONE: connections/s",
               ratios(rate["node-rr"], rate["node-none"]), "ratio",
               note=f"Node's price for its dealer; compare handoff / blocking ({rounds.note()})"),
        Figure(STEP, "node SCHED_RR / SCHED_NONE: CPU per connection",
               ratios(cpu["node-rr"], cpu["node-none"]), "ratio"),
        Figure(STEP, "node's extra hop: CPU per connection", hop, "µs", digits=1,
               note="SCHED_RR minus SCHED_NONE, per round (primary and workers)"),
        Figure(STEP, "node SCHED_NONE connections/s", Spread(rate["node-none"]), "conn/s",
               digits=0, note=f"median of {statistics.median(cpu['node-none']):.1f} µs/conn"),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
