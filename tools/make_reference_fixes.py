"""Regenerate the reference data of notebooks 10 ("The fixes") and 11 (the sweep and the restarts).

    .venv/bin/python tools/make_reference_fixes.py [--out data] [--only sweep|restarts|notebook]

* ``<out>/sweep/`` (notebook 11): ``sweep.csv`` (``acceptlab.lab.sweep.run_sweep()`` over the
  default ``GRID``: every strategy this machine runs, one row per
  strategy x condition) and ``meta.json`` (the machine, the conditions, each
  run's bound in seconds, the wall time the sweep took, the load average
  before and after it, the date, the strategies left out and why).
* ``<out>/restarts/<design>-<graceful|killed>/`` (notebook 11): one run per restart design
  of ``acceptlab.lab.sweep.compare_restarts`` (shared socket; reuseport;
  reuseport with ``net.ipv4.tcp_migrate_req=1``), as written by ``Run.save``.
  Each design runs in a private network namespace, so this part needs root;
  without it the designs that cannot run are named and left as they were.
* ``<out>/fixes/<name>/``: the small runs of notebook 10's sections (:data:`NOTEBOOK_RUNS`),
  which the notebook shows under a banner where this machine cannot run one live (not
  Linux, or a strategy it lacks).  The ``reuseport-cpu`` runs pin this process (and so the
  client) to one CPU, as the notebook does.

A failed or interrupted part keeps the old data: a directory is replaced only
once its new contents exist.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from acceptlab.lab.experiment import machine, run_experiment
from acceptlab.lab.restarts import restart_losses
from acceptlab.lab.sweep import GRID, compare_restarts, run_sweep

SECONDS = 1.5  # each sweep cell's bound (run_sweep's default, as `acceptlab sweep`)

_LIGHT = dict(workers=4, connections=64, gap=0.001)
# CPU work: what Puma's busy sleep saves is contention for a process's interpreter lock.
_BUSY = dict(workers=2, kind="hybrid", threads=3, connections=40, concurrency=2, work="spin:10",
             protocol="http")
_BACK_TO_BACK = dict(workers=4, connections=80)
_LONG = dict(workers=2, kind="hybrid", threads=3, connections=4, concurrency=4, work="sleep:60")
_BY_CPU = dict(workers=4, connections=40)
NOTEBOOK_RUNS: dict[str, tuple[dict, int | None]] = {
    # name: (run_experiment keywords, the CPU to pin the client to, or None)
    "reorder-light": (dict(strategy="reorder", **_LIGHT), None),
    "epoll-exclusive-light": (dict(strategy="epoll-exclusive", **_LIGHT), None),
    "blocking-hybrid-busy": (dict(strategy="blocking", **_BUSY), None),
    "busy-sleep-hybrid-busy": (dict(strategy="busy-sleep", **_BUSY), None),
    "blocking-back-to-back": (dict(strategy="blocking", **_BACK_TO_BACK), None),
    "handoff-back-to-back": (dict(strategy="handoff", **_BACK_TO_BACK), None),
    "blocking-hybrid-long": (dict(strategy="blocking", **_LONG), None),
    "handoff-least-busy-hybrid-long": (dict(strategy="handoff-least-busy", **_LONG), None),
    "exact-hybrid-long": (dict(strategy="exact", **_LONG), None),
    "reuseport-cpu-cpu0": (dict(strategy="reuseport-cpu", **_BY_CPU), 0),
    "reuseport-cpu-cpu1": (dict(strategy="reuseport-cpu", **_BY_CPU), 1),
}
"""Notebook 10's live runs, as the notebook makes them with its default parameters."""


def slug(design: str) -> str:
    """A design's directory name: ``'reuseport + migrate'`` -> ``'reuseport-migrate'``."""
    return "-".join(part for part in design.replace("+", " ").split())


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (the machine is shared: say how busy it was)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def replace(target: Path, fresh: Path) -> None:
    """Swap ``fresh`` in for ``target`` (after the new data is complete)."""
    if target.exists():
        shutil.rmtree(target)
    fresh.rename(target)


def make_sweep(out: Path) -> None:
    before, started = load_average(), time.monotonic()
    with tqdm(total=None, unit="run", desc="sweep") as bar:
        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.set_postfix_str(label)
            bar.update(done - bar.n)

        table = run_sweep(conditions=GRID, seconds=SECONDS, progress=progress)
    wall = time.monotonic() - started
    fresh = out / "sweep.new"
    fresh.mkdir(parents=True, exist_ok=True)
    table.to_csv(fresh / "sweep.csv", index=False)
    meta = {
        "command": "python tools/make_reference_fixes.py --only sweep",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "conditions": {c.name: {"question": c.question, "load": c.load} for c in GRID},
        "seconds": SECONDS,
        "workers": 4,
        "wall_seconds": round(wall, 1),
        "load_average_before": before,
        "load_average_after": load_average(),
        "skipped": table.attrs["skipped"],
    }
    (fresh / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    replace(out / "sweep", fresh)
    print(f"sweep: {len(table)} cells in {wall:.0f} s (load average before {before}, "
          f"after {meta['load_average_after']}) -> {out / 'sweep'}/")
    for line in table.attrs["skipped"]:
        print(f"  skipped {line}")


def make_restarts(out: Path) -> None:
    for graceful in (True, False):
        how = "graceful" if graceful else "killed"
        runs = compare_restarts(graceful=graceful)
        for design, run in runs.items():
            if isinstance(run, str):
                print(f"restarts, {design} ({how}): not made: {run}", file=sys.stderr)
                continue
            run.meta["command"] = "python tools/make_reference_fixes.py --only restarts"
            run.meta["machine"] = machine()
            run.meta["design"] = design
            target = out / "restarts" / f"{slug(design)}-{how}"
            fresh = run.save(target.with_name(target.name + ".new"))
            replace(target, fresh)
            losses = restart_losses(run.client, run.meta["restarts"])
            print(f"restarts, {design} ({how}): {len(losses)} restarts, "
                  f"refused {losses['refused'].sum()}, reset {losses['reset'].sum()}, "
                  f"other errors {losses['other_errors'].sum()}, "
                  f"delayed {losses['delayed'].sum()} -> {target}/")


def make_notebook_runs(out: Path) -> None:
    for name, (options, cpu) in tqdm(NOTEBOOK_RUNS.items(), unit="run", desc="notebook"):
        saved = os.sched_getaffinity(0)
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # this thread, and the client thread it starts
            run = run_experiment(label=name, **options)
        finally:
            os.sched_setaffinity(0, saved)
        run.meta["command"] = "python tools/make_reference_fixes.py --only notebook"
        run.meta["machine"] = machine()
        if cpu is not None:
            run.meta["client_cpu"] = cpu
        target = out / "fixes" / name
        replace(target, run.save(target.with_name(name + ".new")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", type=Path)
    parser.add_argument("--only", choices=["sweep", "restarts", "notebook"], default=None)
    args = parser.parse_args()
    if args.only in (None, "sweep"):
        make_sweep(args.out)
    if args.only in (None, "restarts"):
        make_restarts(args.out)
    if args.only in (None, "notebook"):
        make_notebook_runs(args.out)


if __name__ == "__main__":
    main()
