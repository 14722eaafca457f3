"""``acceptlab replay``: a saved run's wait queue as a film (HTML or GIF)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from .common import UsageError, saved_run
from .options import add_run_dir


def add(commands: argparse._SubParsersAction) -> None:
    replay = commands.add_parser("replay", help="animate a saved run (the wait queue as a film)",
                                 description="Write a saved run's film: the accept queue, the "
                                             "sleeping workers in the kernel's order, who is "
                                             "woken and who wins.")
    add_run_dir(replay)
    replay.add_argument("--out", default="film.html", help="film.html (offline) or film.gif")
    replay.add_argument("--connections", type=int, default=24,
                        help="how many connections to show (default 24)")
    replay.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Write a saved run's film as offline HTML or a GIF."""
    from ..lab.experiment import Run
    from ..views.film import replay, save_film

    source = saved_run(args.run_dir)
    if Path(args.out).suffix.lower() not in (".html", ".htm", ".gif"):
        raise UsageError(f"--out must end in .html or .gif, not {args.out!r}")
    if args.connections < 1:
        raise UsageError(f"--connections must be at least 1, not {args.connections}")
    film = replay(Run.load(source), max_connections=args.connections)
    print(f"wrote {save_film(film, args.out)}")
    return 0
