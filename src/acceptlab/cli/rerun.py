"""``acceptlab rerun``: make a saved run again, with the same specs (seed included)."""

from __future__ import annotations

import argparse
import threading

from .common import UsageError, saved_run
from .options import add_out_options, add_run_dir
from .run import run_and_report


def add(commands: argparse._SubParsersAction) -> None:
    rerun = commands.add_parser("rerun", help="make a saved run again, with the same settings",
                                description="Read a saved run's meta.json and make the run "
                                            "again: the same pool, load (seed included) and "
                                            "options, on this machine.")
    add_run_dir(rerun)
    rerun.add_argument("--json", action="store_true", help="print one JSON summary line")
    add_out_options(rerun, "out/rerun")
    rerun.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Repeat a saved run (an older run's flat meta.json works too)."""
    from ..lab.experiment import Run

    source = saved_run(args.run_dir)
    saved = Run.load(source)
    pool = saved.pool_spec
    if pool is None:
        raise UsageError(f"{source} is an observed real server, not a run the kit served: "
                         f"`acceptlab observe` makes it again")
    return run_and_report(args, stop, (pool, saved.load_spec, saved.options), "out/rerun")
