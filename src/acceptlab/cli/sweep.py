"""``acceptlab sweep``: every strategy over a grid of conditions; which wins where."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from ..registry import STRATEGY_RECORDS
from .common import INTERRUPTED, OutputDirectory, UsageError, say_interrupted, show_table
from .options import add_out_options


def add(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="every strategy over a grid of conditions",
                                description="Which strategy wins where: every strategy under "
                                            "each condition (connection lifetime, clients, "
                                            "work, one slow worker); a table, heatmaps and "
                                            "the winners per condition.")
    sweep.add_argument("--quick", action="store_true",
                       help="three conditions and fewer connections (about half a minute)")
    sweep.add_argument("--strategies", nargs="+", default=None, metavar="S",
                       choices=tuple(STRATEGY_RECORDS),
                       help="default: every strategy this machine runs with processes")
    sweep.add_argument("--workers", "-n", type=int, default=4,
                       help="worker processes per run (default: 4)")
    sweep.add_argument("--seconds", type=float, default=None,
                       help="bound on each run's load (default: 1.5, or 0.8 with --quick)")
    sweep.add_argument("--restarts", action="store_true",
                       help="also compare what a graceful restart costs: shared socket, "
                            "reuseport, reuseport with tcp_migrate_req (private network "
                            "namespaces, as root)")
    add_out_options(sweep, "out/sweep")
    sweep.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run the grid with a progress bar; write sweep.csv, winners.md and the heatmaps."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    from tqdm.auto import tqdm

    from ..views import plots
    from ..lab.sweep import GRID, QUICK, run_sweep, winners

    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds {args.seconds}: must be more than 0")
    out = OutputDirectory(args.out, "out/sweep", args.force)
    conditions = QUICK if args.quick else GRID
    seconds = args.seconds or (0.8 if args.quick else 1.5)
    with tqdm(total=None, unit="run", desc="sweep") as bar:
        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.set_postfix_str(label)
            bar.update(done - bar.n)

        table = run_sweep(args.strategies, conditions=conditions, workers=args.workers,
                          seconds=seconds, progress=progress, stop=stop)
    for line in table.attrs["skipped"]:
        print(f"skipped {line}")
    table.to_csv(out.path / "sweep.csv", index=False)
    best = winners(table)
    (out.path / "winners.md").write_text(best.to_markdown() + "\n")
    plots.sweep_heatmaps(table).savefig(out.path / "sweep-heatmaps.png", dpi=110)
    meta = {"conditions": [c.name for c in conditions], "seconds": seconds,
            "workers": args.workers, "skipped": table.attrs["skipped"],
            "interrupted": table.attrs["interrupted"]}
    print(show_table(table.set_index(["strategy", "condition"])))
    print()
    print(best.to_string())
    if args.restarts and not stop.is_set():
        meta["restarts"] = _sweep_restarts(out.path, stop)
    (out.path / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"-> {out.path}/ (sweep.csv, winners.md, sweep-heatmaps.png"
          f"{', restarts.csv, restart-losses.png' if args.restarts else ''})")
    if table.attrs["interrupted"]:
        say_interrupted(f"kept the {len(table)} cells that completed in {out.path}/")
        return INTERRUPTED
    return 0


def _sweep_restarts(out: Path, stop: threading.Event) -> dict:
    """The restart comparison of ``sweep --restarts``: a table, a figure, and notes."""
    import pandas as pd

    from ..views import plots
    from ..lab.restarts import restart_losses
    from ..lab.sweep import compare_restarts

    runs = compare_restarts(graceful=True)
    losses, notes = {}, {}
    for design, run in runs.items():
        if isinstance(run, str):
            print(f"restarts, {design}: {run}")
            notes[design] = run
            continue
        losses[design] = restart_losses(run.client, run.meta["restarts"])
        notes[design] = f"{len(losses[design])} restarts"
    if losses:
        table = pd.concat(losses, names=["design", "restart"])
        table.to_csv(out / "restarts.csv")
        print("\nwhat each graceful restart cost:")
        print(show_table(table.groupby(level="design", sort=False)[
            ["refused", "reset", "other_errors", "delayed"]].sum()))
        plots.restart_losses(losses).savefig(out / "restart-losses.png", dpi=110)
    return notes
