"""``acceptlab real``: start a real server (gunicorn, uvicorn, nginx, node) until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from .common import UsageError


def add(commands: argparse._SubParsersAction) -> None:
    from ..real.servers import SERVERS

    real = commands.add_parser("real", help="start a real server (gunicorn, uvicorn, nginx, node) "
                                            "on a free loopback port until Ctrl-C")
    real.add_argument("name", choices=tuple(SERVERS), metavar="NAME",
                      help=", ".join(SERVERS))
    real.add_argument("--workers", "-n", type=int, default=4, help="how many (default: 4)")
    real.add_argument("--slow-ms", type=float, default=0.0,
                      help="every reply waits this long (not nginx)")
    real.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Start a real server, print where it listens and what inspect sees, stop it on Ctrl-C."""
    from ..basics import show_address
    from ..real.servers import ServerMissing, real_server, reference_run_path
    from ..real.topology import format_topology, settled_topology

    try:
        server = real_server(args.name, workers=args.workers, slow_ms=args.slow_ms)
    except ServerMissing as exc:
        reference = reference_run_path(args.name, "sequential")
        raise UsageError(f"{exc}; its reference run: {reference}" if reference.exists()
                         else str(exc)) from None
    with server:
        print(f"{server.version} listening on http://{show_address(*server.address)}/  "
              f"(master pid {server.pid}; Ctrl-C stops it)", flush=True)
        print(format_topology(settled_topology(server.pid)), flush=True)
        while not stop.wait(0.5) and server.process.poll() is None:
            pass
    return 0
