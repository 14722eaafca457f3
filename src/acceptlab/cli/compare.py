"""``acceptlab compare``: the strategies side by side, with figures (``make demo``)."""

from __future__ import annotations

import argparse
import threading

from ..registry import STRATEGY_RECORDS
from ..server.protocol import PROTOCOLS
from .common import INTERRUPTED, OutputDirectory, say_interrupted, show_table
from .options import add_out_options


def add(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="strategies side by side, with figures",
                                  description="Run the strategies side by side; write the "
                                              "runs, a summary table and figures.")
    compare.add_argument("--strategies", nargs="+", default=None, metavar="S",
                         choices=tuple(STRATEGY_RECORDS),
                         help="default: every strategy this machine supports")
    compare.add_argument("--kinds", nargs="+", default=["process", "thread"],
                         choices=("thread", "process"),
                         help="worker kinds to compare (default: process thread)")
    compare.add_argument("--workers", "-n", type=int, default=4,
                         help="workers per run (default: 4)")
    compare.add_argument("--connections", "-c", type=int, default=200,
                         help="connections per run (default: 200)")
    compare.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                         help="what the workers speak (default: zen)")
    add_out_options(compare, "out/compare")
    compare.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run strategies side by side; write runs, figures and a summary table under --out."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works headless
    from ..views.report import write_comparison

    out = OutputDirectory(args.out, "out/compare", args.force)
    try:
        result = write_comparison(out.path, strategies=args.strategies, kinds=args.kinds,
                                  workers=args.workers, connections=args.connections,
                                  protocol=args.protocol, stop=stop)
    except BaseException:
        out.discard()
        raise
    if result.table is not None:
        print(show_table(result.table))
    if result.slow_worker is not None:
        print()
        print("one slow worker (30/10/10 ms per request), 12 clients:")
        print(show_table(result.slow_worker))
    for path in result.written:
        print(f"wrote {path}")
    if result.interrupted:
        say_interrupted(f"kept the {len(result.written)} files of what completed in "
                         f"{out.path}/")
        return INTERRUPTED
    return 0
