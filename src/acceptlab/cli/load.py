"""``acceptlab load``: fire connections at any server on this machine and report."""

from __future__ import annotations

import argparse
import json
import threading

from ..basics import show_address
from ..server.protocol import PROTOCOLS
from .common import (BOOK_PORT, INTERRUPTED, UsageError, client_lines, is_loopback, load_summary,
                     say_interrupted)
from .options import add_load_options, load_spec


def add(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser("load", help="fire connections at a server",
                               description="Fire connections at any server on this machine "
                                           "(the kit's, the book's, nginx) and report.")
    load.add_argument("--host", default="127.0.0.1",
                      help="server address, on this machine (default: 127.0.0.1)")
    load.add_argument("--port", type=int, default=BOOK_PORT,
                      help="server port (default: 1060, the book's)")
    load.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                      help="what the server speaks (default: zen)")
    add_load_options(load, connections=1000)
    load.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Fire load at any server and print connections/s, latency and errors by cause."""
    from ..client.load import fire

    if not is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    client = fire((args.host, args.port), load_spec(args), progress=not args.json, stop=stop)
    summary = load_summary(client)
    if args.json:
        print(json.dumps({**summary, "interrupted": stop.is_set()}))
    else:
        print(f"load on {show_address(args.host, args.port)} ({args.protocol}):")
        print("\n".join(client_lines(summary)))
        print(f"{summary['seconds']:.2f} s, {summary['connections_per_s']:.2f} connections/s")
    if stop.is_set():
        say_interrupted(f"stopped the load after {len(client)} connections")
        return INTERRUPTED
    return 0 if summary["ok"] else 1
