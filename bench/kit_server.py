"""The kit's server for the benchmarks: a WorkerPool exactly as ``acceptlab serve`` builds it.

    python bench/kit_server.py --workers 2 --kind process --protocol http [--no-record]

It listens on a free loopback port, prints one JSON line ``{"port": P, "pids":
[...]}`` (the worker PIDs, whose CPU time the benchmark reads from /proc), and
serves until SIGTERM or SIGINT, then stops the pool.  The event logs stay in
``--log-dir`` for the caller to read.  (``acceptlab serve`` prints neither the
port it got nor its workers' PIDs, which is why this small wrapper exists.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

# ACCEPTLAB_SRC: run a patched copy of the package instead (bench/patch_gain.py uses it)
sys.path.insert(0, os.environ.get("ACCEPTLAB_SRC")
                or str(Path(__file__).resolve().parent.parent / "src"))

from acceptlab.pool import WorkerPool  # noqa: E402


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
        import acceptlab
        print(json.dumps({"port": pool.address[1], "pids": pool.pids,
                          "package": str(Path(acceptlab.__file__).parent)}), flush=True)
        while not finished.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
