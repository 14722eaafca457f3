"""Soak: hold the highest load this machine allows for a while, and watch for slow leaks.

    .venv/bin/python -m bench.soak                  # 60 s per kind, process then thread
    .venv/bin/python -m bench.soak --duration 10 --kinds thread --json

For each kind of pool (4 workers, ``blocking``, zen) it:

1. warms up for a couple of seconds (imports done, allocator and event-log
   pages in use), then measures every worker: open file descriptors
   (``/proc/<pid>/fd``) and memory (``/proc/<pid>/status``);
2. fires as fast as it can for ``--duration`` seconds: a closed loop in two
   client processes (the kit's fastest client mode), all on 127.0.0.1,
   bounded by a connection count and the duration;
3. measures again, and checks: no client error, every ok client joined to
   exactly one accepted event (``analysis.reconcile``), the same descriptors
   before and after, and the growth of each worker's *anonymous* memory (its
   heap: ``RssAnon``) within ``ANON_GROWTH_LIMIT``.

Why anonymous memory: the event log is a file mapped into each worker, one
fixed-size record per wait (``RECORD_BYTES``, the event log's own struct),
so the file-backed part of the RSS (``RssFile``)
grows with the number of connections by design; it is reported apart, with
its expected size.  The pool runs in a server process of its own, so that
what is measured is the pool's alone: each worker process, or for a thread
pool, the one process its workers share.

``tests/test_soak.py`` runs the same function for a few seconds.  Linux only
(``/proc``).  Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import acceptlab
from acceptlab import analysis
from acceptlab.server import eventlog
from acceptlab.server.eventlog import read_events
from acceptlab.client.load import fire

ANON_GROWTH_LIMIT = 2 * 1024 * 1024  # bytes of heap a worker may add over a soak, after warm-up
# One event-log record, as the event log defines it (it has no public name for it yet).
RECORD_BYTES = eventlog._RECORD.size


@dataclass
class Snapshot:
    """One process's descriptors and memory (bytes), read from /proc."""

    pid: int
    fds: int
    rss: int
    rss_anon: int
    rss_file: int

    @classmethod
    def of(cls, pid: int) -> "Snapshot":
        status = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                status[key] = int(value.split()[0]) * 1024
        return cls(pid, len(os.listdir(f"/proc/{pid}/fd")), status["VmRSS"],
                   status.get("RssAnon", -1), status.get("RssFile", -1))


@dataclass
class SoakResult:
    """What one soak measured, and which checks failed (empty: all passed)."""

    kind: str
    seconds: float
    connections: int
    ok: int
    errors: dict
    rate_per_s: float
    accepted_events: int
    reconciled: bool
    before: list[Snapshot]
    after: list[Snapshot]
    event_log_bytes: int
    failures: list[str] = field(default_factory=list)

    @property
    def fd_change(self) -> list[int]:
        return [a.fds - b.fds for b, a in zip(self.before, self.after)]

    @property
    def anon_growth(self) -> list[int]:
        return [a.rss_anon - b.rss_anon for b, a in zip(self.before, self.after)]

    @property
    def file_growth(self) -> list[int]:
        return [a.rss_file - b.rss_file for b, a in zip(self.before, self.after)]

    def summary(self) -> dict:
        mib = 1024 * 1024
        return {
            "kind": self.kind, "seconds": round(self.seconds, 1),
            "connections": self.connections, "ok": self.ok, "errors": self.errors,
            "connections_per_s": round(self.rate_per_s), "accepted_events": self.accepted_events,
            "reconciled": self.reconciled,
            "fds_before": [s.fds for s in self.before], "fds_after": [s.fds for s in self.after],
            "rss_anon_mib_before": [round(s.rss_anon / mib, 2) for s in self.before],
            "rss_anon_mib_after": [round(s.rss_anon / mib, 2) for s in self.after],
            "rss_file_growth_mib": [round(g / mib, 2) for g in self.file_growth],
            "event_log_mib": round(self.event_log_bytes / mib, 2),
            "anon_growth_limit_mib": ANON_GROWTH_LIMIT / mib,
            "failures": self.failures,
        }


SERVER = """
import json, os, sys
from acceptlab.server.pool import WorkerPool
kind, workers, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with WorkerPool(workers=workers, kind=kind, strategy="blocking", protocol="zen",
                log_dir=log_dir) as pool:
    print(json.dumps({"port": pool.address[1], "pid": os.getpid(), "workers": pool.pids}),
          flush=True)
    sys.stdin.readline()  # serve until the soak says stop
    print(json.dumps({"replacements": len(pool.replacements)}), flush=True)
"""


class Server:
    """The pool under test, in a process of its own, so that its memory is only the pool's.

    (Measured in the soak's own process, a thread pool's heap would include
    the client's tables.)  A context manager: the server is stopped, or
    killed with its whole process group, whatever happens.
    """

    def __init__(self, kind: str, workers: int, log_dir: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, kind, str(workers), log_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
            # the server imports the same acceptlab as this process
            env={**os.environ, "PYTHONPATH": str(Path(acceptlab.__file__).resolve().parents[1])})
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the soak's server did not start")
        info = json.loads(line)
        self.address = ("127.0.0.1", info["port"])
        self.pid, self.workers = info["pid"], info["workers"]
        self.kind = kind

    def measured_pids(self) -> list[int]:
        """Each worker process, or (threads) the one process they live in."""
        return list(self.workers) if self.kind == "process" else [self.pid]

    def stop(self) -> int:
        """Stop the pool; return how many workers its supervisor had to replace."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        replaced = json.loads(self.proc.stdout.readline())["replacements"]
        self.proc.wait(10)
        return replaced

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def soak(kind: str = "process", duration: float = 60.0, workers: int = 4,
         processes: int = 2, concurrency: int = 16, warmup: float = 2.0,
         max_connections: int = 2_000_000) -> SoakResult:
    """Hold a closed-loop load at full speed on a fresh pool for ``duration`` seconds."""
    with tempfile.TemporaryDirectory(prefix="acceptlab-soak-") as log_dir, \
            Server(kind, workers, log_dir) as server:
        load = dict(connections=max_connections, concurrency=concurrency,
                    processes=processes, timeout=5)
        warm = fire(server.address, protocol="zen", duration=warmup, **load)
        pids = server.measured_pids()
        before = [Snapshot.of(pid) for pid in pids]
        started = time.monotonic()
        client = fire(server.address, protocol="zen", duration=duration, **load)
        seconds = time.monotonic() - started
        time.sleep(0.2)  # let the workers finish recording the last conversations
        after = [Snapshot.of(pid) for pid in pids]
        replaced = server.stop()
        events = read_events(log_dir)
    everything = pd.concat([warm, client], ignore_index=True)
    ok = client["ok"].astype(bool)
    check = analysis.reconcile(everything, events)
    result = SoakResult(
        kind=kind, seconds=seconds, connections=len(client), ok=int(ok.sum()),
        errors=client.loc[~ok, "error"].value_counts().to_dict(),
        rate_per_s=len(client) / seconds if seconds else 0.0,
        accepted_events=check.accepted_events, reconciled=bool(check.ok),
        before=before, after=after, event_log_bytes=len(events) * RECORD_BYTES)
    failures = result.failures
    if result.ok != result.connections or not everything["ok"].astype(bool).all():
        failures.append(f"{result.connections - result.ok} client errors: {result.errors}")
    if not check.ok or check.accepted_events != len(everything):
        failures.append(f"logs do not reconcile: {check}")
    if replaced:
        failures.append(f"{replaced} workers died during the soak")
    if any(result.fd_change):
        failures.append(f"file descriptors changed by {result.fd_change} (pids {pids})")
    grown = [g for g in result.anon_growth if g > ANON_GROWTH_LIMIT]
    if grown:
        failures.append(f"anonymous memory grew by {[round(g / 2**20, 2) for g in grown]} MiB "
                        f"(limit {ANON_GROWTH_LIMIT / 2**20} MiB)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per kind (60)")
    parser.add_argument("--kinds", nargs="+", default=["process", "thread"],
                        choices=("process", "thread"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="one JSON line per kind")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("soak: reads /proc, so it runs on Linux only", file=sys.stderr)
        return 2
    failed = False
    for kind in args.kinds:
        result = soak(kind, duration=args.duration, workers=args.workers)
        failed |= bool(result.failures)
        if args.json:
            print(json.dumps(result.summary()), flush=True)
        else:
            print(f"\n== soak, {kind} workers, {result.seconds:.0f} s")
            for key, value in result.summary().items():
                print(f"  {key:>22}: {value}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
