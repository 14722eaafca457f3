"""``acceptlab serve``: serve on a port until Ctrl-C, then print who served what."""

from __future__ import annotations

import argparse
import threading

from ..basics import show_address
from ..views.links import demo_link
from .common import BOOK_PORT, check_host, show_table
from .options import add_pool_options, pool_spec


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve until Ctrl-C",
                                description="Serve on a port until Ctrl-C or SIGTERM, then "
                                            "print who served what.")
    add_pool_options(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=BOOK_PORT, help="default: 1060, the book's")
    serve.add_argument("--allow-remote", action="store_true",
                       help="permit a non-loopback --host")
    serve.add_argument("--join", action="store_true",
                       help="with --strategy reuseport: share a port another server already "
                            "listens on (refused without it)")
    serve.add_argument("--no-record", action="store_true",
                       help="turn the event log off (only to measure what it costs)")
    serve.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop the pool and print per-worker counts."""
    from .. import analysis
    from ..server.pool import WorkerPool

    check_host(args.host, args.allow_remote)
    spec = pool_spec(args)
    with WorkerPool(spec) as pool:
        print(f"listening on {show_address(*pool.address[:2])}", flush=True)
        if spec.protocol == "http":  # the link that works where this runs: laptop or hub
            link = demo_link(pool.address[1], args.host)
            print(f"open {link.url} in a browser" + (f" ({link.note})" if link.note else ""),
                  flush=True)
        while not stop.wait(0.5):
            states = pool.status()
            if all(slot.state == "down" for slot in states):  # nobody left to serve
                raise states[0].error  # one line, exit code 2 (a RuntimeError)
    print(show_table(analysis.per_worker(pool.events(), spec.slots)))
    return 0
