"""The kit's server for the benchmarks: a WorkerPool exactly as ``acceptlab serve`` builds it.

    python -m bench.kit_server --workers 2 --kind process --log-dir DIR [--no-record]

It listens on a free loopback port, prints one JSON line ``{"port": P, "pids":
[...]}`` (the worker PIDs, whose CPU time the benchmark reads from /proc), and
serves until SIGTERM or SIGINT, then stops the pool.  The event logs stay in
``--log-dir`` for the caller to read.  (``acceptlab serve`` prints neither the
port it got nor its workers' PIDs, which is why this small wrapper exists.)

It imports whichever acceptlab is first on its path: :class:`bench.servers.KitServer`
sets the child's PYTHONPATH to the parent's acceptlab, or to a patched copy
(``bench_patch.py``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import acceptlab
from acceptlab.server.pool import WorkerPool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kind", choices=("thread", "process"), default="process")
    parser.add_argument("--strategy", default="blocking")
    parser.add_argument("--protocol", default="http")
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--start-method", default=None)
    args = parser.parse_args()
    finished = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())
    pool = WorkerPool(workers=args.workers, kind=args.kind, strategy=args.strategy,
                      protocol=args.protocol, host="127.0.0.1", port=0, log_dir=args.log_dir,
                      start_method=args.start_method, record=not args.no_record)
    with pool:
        print(json.dumps({"port": pool.address[1], "pids": pool.pids,
                          "package": str(Path(acceptlab.__file__).parent)}), flush=True)
        while not finished.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
