"""``acceptlab observe``: load a running server and attribute each connection to its worker."""

from __future__ import annotations

import argparse
import json
import threading

from ..server.protocol import PROTOCOLS
from .common import UsageError, is_loopback, plain
from .options import add_load_options, load_spec


def add(commands: argparse._SubParsersAction) -> None:
    observe = commands.add_parser("observe", help="load any running server and attribute each "
                                                  "connection to the worker that accepted it")
    observe.add_argument("pid", type=int, help="the server's master process")
    observe.add_argument("--port", type=int, help="default: the one port the server listens on")
    observe.add_argument("--host", default="127.0.0.1",
                         help="the server's loopback address (default: 127.0.0.1)")
    observe.add_argument("--protocol", choices=tuple(PROTOCOLS), default="http",
                         help="what the server speaks (default: http)")
    add_load_options(observe, connections=200)
    observe.add_argument("--attribution", choices=("auto", "after-reply", "before-request"),
                         default="auto",
                         help="look at a connection after its reply (servers that keep it "
                              "open) or hold its request back until a worker holds it; auto "
                              "(default) tries one connection to choose")
    observe.add_argument("--no-baseline", action="store_true",
                         help="skip the second, unobserved pass (switches and latency without "
                              "attribution)")
    observe.add_argument("--out", help="directory for the run's files")
    observe.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Observe a running server under load: who accepted what, switches, coverage."""
    from .. import analysis
    from ..real.observe import observe

    if not is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    try:
        run = observe(args.pid, load_spec(args), port=args.port, host=args.host,
                      baseline=not args.no_baseline, attribution=args.attribution)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    out = run.save(args.out) if args.out else None
    table = analysis.per_worker(run.events, run.workers)
    table.insert(0, "pid", run.meta["worker_pids"])
    table = table[["pid", "accepts", "share", "wakeups"]]
    covered = run.meta["coverage"]
    baseline = run.meta.get("baseline", {})
    switches = analysis.cost_per_accept(run.events)["wakeups_per_accept"]
    summary = {"strategy": run.meta["strategy"] or None,
               "per_worker": table["accepts"].astype(int).tolist(),
               "worker_pids": run.meta["worker_pids"], "attribution": run.meta["attribution"],
               **covered,
               "switches_per_connection": switches,
               "baseline_switches_per_connection": baseline.get("switches_per_connection"),
               "p50_ms": analysis.latency(run.client).iloc[0]["p50_ms"],
               "baseline_p50_ms": baseline.get("p50_ms"), "out": str(out) if out else None}
    if args.json:
        print(json.dumps({key: plain(value) for key, value in summary.items()}))
        return 0
    print(f"{args.pid}: {run.meta['strategy'] or 'no strategy matched'} - {run.meta['prediction']}")
    print(table.to_string())
    print(f"attributed {covered['attributed']}/{covered['connections']} connections "
          f"({covered['coverage']:.1%}, {run.meta['attribution']}); "
          f"the reply named a pid for {covered['named']}: "
          f"{covered['agree']} agree, {covered['disagree']} disagree")
    print(f"voluntary context switches per connection: "
          f"{summary['switches_per_connection']:.2f} observed"
          + (f", {baseline['switches_per_connection']:.2f} unobserved" if baseline else ""))
    if out:
        print(f"run written to {out}/")
    return 0
