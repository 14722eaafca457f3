"""Regenerate the reference runs in data/: every strategy, both kinds, light and saturating load.

    .venv/bin/python tools/make_reference_data.py [--out data]

Each run is written by ``Run.save`` into ``<out>/<strategy>-<kind>-<load>/``.
The loads:

* ``light``: 4 workers, 200 sequential connections 1 ms apart (the kernel's
  wake order, undisturbed);
* ``saturating``: 4 workers with 2 ms of sleep per request, 400 connections
  from 16 concurrent clients, accept-queue depth sampled;
* ``slowworker``: 3 workers whose requests take 30/10/10 ms, 300 connections
  from 12 concurrent clients (blocking and reuseport only): the latency tail
  that SO_REUSEPORT gives a slow worker.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tqdm import tqdm

from acceptlab.analysis import SLOW_WORKER
from acceptlab.lab.experiment import run_experiment
from acceptlab.server.strategies import STRATEGIES
from acceptlab.linux.support import Unavailable, check_strategy

LOADS = {
    "light": dict(workers=4, connections=200, gap=0.001),
    "saturating": dict(workers=4, connections=400, concurrency=16, work="sleep:2",
                       sample_queue=True),
}


def plan() -> list[tuple[str, dict]]:
    """Every (directory name, run_experiment keywords) this script makes."""
    runs = []
    for kind in ("process", "thread"):
        for strategy in STRATEGIES:
            try:
                check_strategy(strategy, kind)
            except Unavailable:
                continue
            for load, options in LOADS.items():
                runs.append((f"{strategy}-{kind}-{load}",
                             dict(strategy=strategy, kind=kind, **options)))
    for strategy in ("blocking", "reuseport"):
        runs.append((f"{strategy}-process-slowworker",
                     dict(strategy=strategy, kind="process", **SLOW_WORKER,
                          sample_queue=True)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", type=Path)
    args = parser.parse_args()
    for name, options in tqdm(plan(), unit="run"):
        target = args.out / name
        run = run_experiment(label=name, **options)  # first: a failed run keeps the old data
        run.meta["command"] = "python tools/make_reference_data.py"
        if target.exists():
            shutil.rmtree(target)
        run.save(target)


if __name__ == "__main__":
    main()
