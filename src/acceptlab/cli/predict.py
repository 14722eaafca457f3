"""``acceptlab predict``: the model's 90 % bands for a run, before making it.

The model simulates the run many times with this machine's calibration
(``acceptlab calibrate``) and prints, for each metric ``acceptlab run --json``
prints, the band 90 % of the simulated runs fall in: hold a live run against it.
"""

from __future__ import annotations

import argparse
import json
import threading

from ..registry import STRATEGY_RECORDS


def add(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="the model's 90 %% bands for a run, before making it",
        description="Simulate a run many times with this machine's calibration and print, "
                    "for each metric of `acceptlab run --json`, the band 90 %% of the "
                    "simulated runs fall in.")
    predict.add_argument("--strategy", choices=tuple(STRATEGY_RECORDS), default="blocking",
                         help="how each worker waits (default: blocking)")
    predict.add_argument("--workers", "-n", type=int, default=4, help="worker slots (default 4)")
    predict.add_argument("--connections", "-c", type=int, default=200,
                         help="connections (default 200)")
    predict.add_argument("--gap", type=float, default=0.0,
                         help="seconds each client pauses between connections")
    shape = predict.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, default=1,
                       help="closed loop: clients at once (default 1: sequential)")
    shape.add_argument("--rate", type=float, help="open loop: new connections per second")
    predict.add_argument("--work", default="none",
                         help="none, sleep:MS or spin:MS per request; a comma-separated list "
                              "gives each worker its own (sleep:8,sleep:2: a slow worker)")
    predict.add_argument("--kind", choices=("process", "thread"), default="process",
                         help="workers are processes or threads (default: process)")
    predict.add_argument("--protocol", choices=("zen", "lancelot"), default="zen",
                         help="what the clients ask (default: zen)")
    predict.add_argument("--remote", action="store_true",
                         help="the clients are other machines: no turns on the kit client's GIL "
                              "(for loads past what this machine's client can make)")
    predict.add_argument("--runs", type=int, help="simulated runs (default: 60, fewer for big runs)")
    predict.add_argument("--seed", type=int, default=0, help="the first simulated run's seed")
    predict.add_argument("--json", action="store_true", help="print one JSON line")
    predict.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print the bands (or the model's explicit "not modelled")."""
    from ..model.bands import predict
    from ..model.describe import prediction_lines
    from ..model.rules import NotModelled

    work = [part.strip() for part in args.work.split(",") if part.strip()] or ["none"]
    scenario = {"strategy": args.strategy, "workers": args.workers,
                "connections": args.connections, "gap": args.gap,
                "concurrency": args.concurrency, "rate": args.rate,
                "work": work[0] if len(work) == 1 else work, "kind": args.kind,
                "protocol": args.protocol, "remote": args.remote}
    try:
        result = predict(**scenario, runs=args.runs, seed=args.seed)
    except NotModelled as why:
        if args.json:
            print(json.dumps({**scenario, "not_modelled": str(why)}))
        else:
            print(f"{args.strategy}: not modelled ({why})")
        return 0
    if args.json:
        print(json.dumps({**result, "scenario": scenario}))
    else:
        print("\n".join(prediction_lines(result)))
    return 0
