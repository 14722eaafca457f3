"""``acceptlab calibrate`` and ``acceptlab predict``: the model on the command line.

Each command is an ``add_<name>(commands)`` that builds its parser (the shape
of :mod:`acceptlab.cli`'s blocks) and a ``run_<name>(args, stop)`` that runs
it.  Nothing heavy is imported until a command runs: the command line starts
as fast as before.

    acceptlab calibrate [--json] [--show]
    acceptlab predict --strategy S --workers N --connections C --gap G \\
                      [--concurrency K | --rate R] [--work W] [--kind K] --json
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from typing import Any

__all__ = ["add_calibrate", "add_predict", "run_calibrate", "run_predict", "calibration_lines",
           "prediction_lines"]


def add_calibrate(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="measure this machine for the model (a few seconds)",
        description="Measure this machine with small live runs of the kit (a few seconds): "
                    "wake-up latency, how soon a worker is back in accept(), the client's "
                    "times, the scheduler's spread; save them in the user's cache for "
                    "`acceptlab predict`.")
    calibrate.add_argument("--json", action="store_true", help="print one JSON summary line")
    calibrate.add_argument("--show", action="store_true",
                           help="measure nothing: show the calibration predict would use now")
    calibrate.set_defaults(handler=run_calibrate)


def add_predict(commands: argparse._SubParsersAction) -> None:
    from ..server.strategies import STRATEGIES

    predict = commands.add_parser(
        "predict", help="the model's 90 %% bands for a run, before making it",
        description="Simulate a run many times with this machine's calibration and print, "
                    "for each metric of `acceptlab run --json`, the band 90 %% of the "
                    "simulated runs fall in.")
    predict.add_argument("--strategy", choices=tuple(STRATEGIES), default="blocking",
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
    predict.add_argument("--runs", type=int, help="simulated runs (default: 60, fewer for big runs)")
    predict.add_argument("--seed", type=int, default=0, help="the first simulated run's seed")
    predict.add_argument("--json", action="store_true", help="print one JSON line")
    predict.set_defaults(handler=run_predict)


def run_calibrate(args: argparse.Namespace, stop: threading.Event) -> int:
    """Measure (unless --show), save in the cache, print what decides the race here."""
    from . import calibration

    if args.show:
        found = calibration.current()
        where = calibration.cache_path() if found.source == "measured" else None
    else:
        found = _measure(quiet=args.json)
        where = calibration.save(found)
    if args.json:
        print(json.dumps({**calibration_summary(found), "path": str(where) if where else None}))
    else:
        print("\n".join(calibration_lines(found)))
        print(f"saved in {where}" if where and not args.show else
              f"from {where}" if where else "(the documented default: no calibration saved; "
                                            "run `acceptlab calibrate`)")
    return 0


def _measure(quiet: bool):
    from tqdm.auto import tqdm

    from . import calibration

    with tqdm(total=len(calibration.CALIBRATION_RUNS), unit="run", desc="calibrating",
              disable=quiet) as bar:
        return calibration.calibrate(progress=lambda done, total, name: bar.update())


def calibration_summary(found) -> dict[str, Any]:
    """The numbers that decide the race on this machine, as one flat dict (medians over runs)."""
    import numpy as np

    def median(name: str, field: str) -> float | None:
        values = [v for pool in found.pools.get(name, ()) for v in getattr(pool, field)
                  if math.isfinite(v)]
        return round(float(np.median(values)), 1) if values else None

    busy = found.pools.get("process-busy", ())
    late = [pool.p_late for pool in busy]
    return {
        "source": found.source, "created": found.created,
        "load_average": list(found.load_average), "cpus": found.cpus,
        "wake_idle_us": median("process-idle", "woke"),
        "wake_busy_us": median("process-busy", "woke"),
        "return_lag_us": median("process-busy", "lag_prompt"),
        "return_us": median("process-busy", "ret"),
        "reconnect_us": median("process-busy", "pause"),
        "connect_us": median("process-busy", "connect"),
        "talk_us": median("process-busy", "talk"),
        "late_share": [round(min(late), 3), round(max(late), 3)] if late else None,
        "late_win_share": [round(min(p.p_late_win for p in busy), 3),
                           round(max(p.p_late_win for p in busy), 3)] if busy else None,
        "client_cpu_us": found.client_cpu_us, "worker_cpu_us": found.worker_cpu_us,
        "cores": found.cores, "cpu_share": found.cpu_share,
    }


def calibration_lines(found) -> list[str]:
    """What a learner reads after ``acceptlab calibrate``: the race without a gap, in numbers."""
    s = calibration_summary(found)
    lines = [found.describe(), ""]
    lines.append(f"  a sleeper's wake-up latency (after connect() returned): "
                 f"{s['wake_busy_us']} µs between back-to-back connections, "
                 f"{s['wake_idle_us']} µs after a pause")
    lines.append(f"  the worker that served a connection sees the hang-up {s['return_lag_us']} µs "
                 f"after its client and is back in accept() {s['return_us']} µs later")
    lines.append(f"  the client connects again {s['reconnect_us']} µs after hanging up, and its "
                 f"connect() takes {s['connect_us']} µs")
    if s["late_share"] and None not in (s["return_lag_us"], s["reconnect_us"], s["connect_us"]):
        margin = (s["reconnect_us"] + s["connect_us"]) - (s["return_lag_us"] + s["return_us"])
        first = "the returning worker" if margin > 0 else "the next connection"
        low, high = (round(100 * x) for x in s["late_share"])
        win_low, win_high = (round(100 * x) for x in s["late_win_share"])
        lines.append(f"  so without a gap, in the median, {first} comes first (by "
                     f"{abs(margin):.0f} µs, from hang-up to connect() returning); the worker "
                     f"was late after {low}-{high} % of connections (runs differ) and then took "
                     f"the next one itself after {win_low}-{win_high} %: each such connection "
                     f"breaks the turns")
    lines.append(f"  CPU per connection: client {s['client_cpu_us']} µs, worker "
                 f"{s['worker_cpu_us']} µs; cores the kit got under load: {s['cores']} of "
                 f"{s['cpus']}; a spinning worker's share of a core: {s['cpu_share']}")
    return lines


def run_predict(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print the bands (or the model's explicit "not modelled")."""
    from .bands import predict
    from .rules import NotModelled

    work = [part.strip() for part in args.work.split(",") if part.strip()] or ["none"]
    scenario = {"strategy": args.strategy, "workers": args.workers,
                "connections": args.connections, "gap": args.gap,
                "concurrency": args.concurrency, "rate": args.rate,
                "work": work[0] if len(work) == 1 else work, "kind": args.kind,
                "protocol": args.protocol}
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


def prediction_lines(result: dict[str, Any]) -> list[str]:
    """A prediction as a small table: metric, 90 % band, median."""
    from .bands import METRICS

    lines = [result["model"], f"with the {result['calibration']}", ""]
    width = max(len(name) for name in METRICS)
    for name in METRICS:
        band, middle = result[name], result["median"][name]
        shown = "—" if band is None else f"[{band[0]:.3f}, {band[1]:.3f}]"
        lines.append(f"  {name:<{width}}  {shown:>18}   median {middle if middle is None else f'{middle:.3f}'}")
    return lines
