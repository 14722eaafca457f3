"""One process of the kit's lean client, firing a fixed number of connections (for profiling).

    python -m bench.profile_client PORT CONNECTIONS [--concurrency 16] [--protocol http]

It runs the engine ``fire(processes=2)`` runs in each client process
(:class:`acceptlab.client.lean.ClosedLoop`), in this process, with nothing
around it: no process pool, no progress bar, no table.  It prints one JSON
line, ``{"ok": N, "errors": {...}}``, when done.  ``bench_profile.py`` runs it
under ``valgrind --tool=callgrind`` to count the instructions per connection,
and times it with the OS's accounting, beside wrk against the same nginx.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

from acceptlab.basics import now
from acceptlab.client.control import GRACE_NS, LoadControl, LoadPart, StopFlag
from acceptlab.client.lean import ClosedLoop
from acceptlab.server.protocol import get_protocol


def _parts() -> dict:
    import socket

    from acceptlab.client import conversation, lean

    loop, talk = lean.ClosedLoop, conversation.ClientConversation
    return {
        "start": lambda: [(loop, "_start")],
        "readable": lambda: [(loop, "_readable")],
        "finish": lambda: [(loop, "_finish")],
        "conversation": lambda: [(talk, "__init__"), (talk, "start"), (talk, "receive")],
        "socket": lambda: [(lean.socket, "socket")],
        "getsockname": lambda: [(socket.socket, "getsockname")],
        "recv": lambda: [(socket.socket, "recv")],
    }


PARTS = _parts()


def fire(port: int, connections: int, concurrency: int, protocol: str,
         seconds: float = 600) -> list[tuple]:
    """Fire ``connections`` at 127.0.0.1:``port`` through one ClosedLoop; its rows."""
    stop_ns = now() + int(seconds * 1e9)
    part = LoadPart(("127.0.0.1", port), protocol, range(connections), concurrency, None, 0.0,
                    5.0, 0, None, True, stop_ns, stop_ns + GRACE_NS)
    rows, _ = ClosedLoop(part, get_protocol(protocol), LoadControl(None, StopFlag())).run()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--protocol", default="http")
    parser.add_argument("--warmup", type=int, default=0, help="connections fired first, not counted")
    parser.add_argument("--count", help="the part whose functions go through operator.call "
                                        "(for callgrind --toggle-collect=_operator_call)")
    args = parser.parse_args()
    if args.count:
        from .profile_worker import through_call

        for owner, name in PARTS[args.count]():
            setattr(owner, name, through_call(getattr(owner, name)))
    if args.warmup:
        fire(args.port, args.warmup, args.concurrency, args.protocol)
        print("warm", flush=True)
        sys.stdin.readline()  # the driver zeroes callgrind's counters, then says go
    rows = fire(args.port, args.connections, args.concurrency, args.protocol)
    errors = collections.Counter(row[7] for row in rows if not row[6])
    print(json.dumps({"ok": sum(1 for row in rows if row[6]), "errors": dict(errors)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
