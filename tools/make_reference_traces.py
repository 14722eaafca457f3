"""Record the reference traces in data/: light runs with the kernel's own account (root only).

    sudo .venv/bin/python tools/make_reference_traces.py [--out data] [--connections 40]

Each run is ``run_experiment(trace=True)`` written by ``Run.save`` into
``<out>/trace-<strategy>-process-light/``: the usual ``events.csv``,
``client.csv``, ``queue.csv`` and ``meta.json``, plus ``trace.csv`` (columns in
``acceptlab.linux.tracing``).  The load is light and short, so each connection's
wakeups can be told apart and the film of it is short: 4 process workers,
40 sequential connections 1 ms apart.  The script prints the agreement table
of the two accounts (``acceptlab.linux.tracing.agreement``) at the end.

A run is replaced only once its new recording succeeded, and only if the
trace lost no events; without root the script stops with one line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from acceptlab.lab.experiment import run_experiment
from acceptlab.linux.support import Unavailable, check_strategy
from acceptlab.server.strategies import STRATEGIES
from acceptlab.linux.tracing import TracingUnavailable, agreement, tracefs_root

LIGHT = dict(kind="process", workers=4, gap=0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", type=Path)
    parser.add_argument("--connections", type=int, default=40)
    args = parser.parse_args()
    try:
        tracefs_root()
    except TracingUnavailable as exc:
        print(f"make_reference_traces: {exc}", file=sys.stderr)
        return 2
    runs = {}
    for strategy in STRATEGIES:
        try:
            check_strategy(strategy, "process")
        except Unavailable:
            continue
        name = f"trace-{strategy}-process-light"
        run = run_experiment(strategy=strategy, connections=args.connections, label=name,
                             trace=True, **LIGHT)
        if run.meta.get("trace") != "recorded" or run.meta.get("trace_lost"):
            print(f"{name}: not saved ({run.meta.get('trace')}, "
                  f"{run.meta.get('trace_lost')} events lost)", file=sys.stderr)
            continue
        run.meta["command"] = "python tools/make_reference_traces.py"
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        run.save(target)
        runs[name] = run
        print(f"wrote {target}/ ({len(run.trace)} kernel events)")
    print(agreement(runs).to_string(float_format=lambda value: f"{value:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
