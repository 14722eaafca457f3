"""``acceptlab inspect``: any server's accept topology, read from /proc."""

from __future__ import annotations

import argparse
import json
import threading

from .common import UsageError


def add(commands: argparse._SubParsersAction) -> None:
    inspect_ = commands.add_parser("inspect", help="any server's accept topology, from /proc")
    inspect_.add_argument("pid", type=int, help="a master or any worker process")
    inspect_.add_argument("--json", action="store_true", help="print one JSON object")
    inspect_.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print a server's listeners, how each thread waits, the matching strategy and prediction."""
    from ..real.topology import format_topology, topology

    try:
        found = topology(args.pid)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(found.to_json()) if args.json else format_topology(found))
    return 0
