"""``acceptlab run``: serve and load on an ephemeral port, save the run, print who served what."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from ..specs import LoadSpec, PoolSpec, RunOptions
from ..views.verdicts import busy_note
from .common import (INTERRUPTED, OutputDirectory, client_lines, load_summary, plain,
                     say_interrupted, show_table)
from .options import add_load_options, add_out_options, add_pool_options, load_spec, pool_spec

if TYPE_CHECKING:
    import pandas as pd


def add(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="serve + load on an ephemeral port, save the run",
                              description="Serve, fire the load, stop; save the run's files "
                                          "and print who served what and what the client saw.")
    add_pool_options(run)
    add_load_options(run, connections=200)
    run.add_argument("--sample-queue", action="store_true", help="record accept-queue depth")
    run.add_argument("--trace", action="store_true",
                     help="also record the kernel's wakeups and TCP states (root, tracefs)")
    run.add_argument("--restart-every", type=float, metavar="SECONDS",
                     help="restart one worker after another every SECONDS during the load, "
                          "and count what each restart cost the clients")
    run.add_argument("--graceful", action=argparse.BooleanOptionalAction, default=True,
                     help="with --restart-every: let each worker finish its conversation "
                          "(default), or --no-graceful to kill it")
    add_out_options(run, "out/run")
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve, fire, stop; save the run under --out and print the per-worker table."""
    options = RunOptions(sample_queue=args.sample_queue, trace=args.trace,
                         restart_every=args.restart_every, graceful=args.graceful)
    return run_and_report(args, stop, (pool_spec(args), load_spec(args), options), "out/run")


def run_and_report(args: argparse.Namespace, stop: threading.Event,
                    specs: tuple[PoolSpec, LoadSpec, RunOptions], default_out: str) -> int:
    """Run the specs, save the run under --out, print its table (or one JSON line)."""
    from dataclasses import replace

    from .. import analysis
    from ..lab.experiment import run_experiment

    pool, load, options = specs
    out = OutputDirectory(args.out, default_out, args.force)
    try:
        run = run_experiment(pool, load,
                             options=replace(options, progress=not args.json, stop=stop))
    except BaseException:
        out.discard()
        raise
    say_if_untraced(run)
    run.save(out.path)
    table = analysis.per_worker(run.events, run.workers)
    client = load_summary(run.client)
    losses = restart_losses_of(run)
    if args.json:
        summary = analysis.summary(run.events, run.client, run.workers)
        summary.update(per_worker=table["accepts"].astype(int).tolist(),
                       client_errors=len(run.client) - int(summary["client_ok"]),
                       client_errors_by_kind=client["errors"], max_ms=client["max_ms"],
                       out=str(out.path), interrupted=run.interrupted,
                       machine_busy=run.meta.get("machine_busy"))
        if losses is not None:
            summary["restarts"] = losses.to_dict(orient="records")
        print(json.dumps({key: plain(value) for key, value in summary.items()}))
    else:
        print(f"{run.label}: {pool.workers} workers, {len(run.client)} connections "
              f"-> {out.path}/")
        print(show_table(table))
        print("\n".join(client_lines(client)))
        crowd = busy_note(run.meta)
        if crowd:
            print(f"note: {crowd}")
        if losses is not None:
            print("restarts (connections that ended in each restart's window):")
            print(show_table(losses))
    if run.interrupted:
        say_interrupted(f"kept the {len(run.client)} connections that completed in {out.path}/")
        return INTERRUPTED
    return 0


def restart_losses_of(run) -> "pd.DataFrame | None":
    """What each restart of ``run --restart-every`` cost, or None for a run without restarts."""
    if "restarts" not in run.meta:
        return None
    from ..lab.restarts import restart_losses

    return restart_losses(run.client, run.meta["restarts"])


def say_if_untraced(run) -> None:
    """One line when ``--trace`` was asked for and could not be had; the run goes on."""
    note = run.meta.get("trace")
    if isinstance(note, str) and note.startswith("unavailable"):
        print(f"acceptlab: tracing {note}; the run went on untraced", file=sys.stderr)
