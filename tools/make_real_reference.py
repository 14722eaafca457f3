"""Observe every real server this machine has under the three loads of notebook 09; save each
run as reference data (data/real-NAME-LOAD/) and print one line per run.

    PYTHONPATH=src python tools/make_real_reference.py [--out data] [--workers 4] [NAME ...]
    PYTHONPATH=src python tools/make_real_reference.py --scrub     # only cut machine paths

A server that is missing is one line and is skipped (its old reference run stays).  Each run's
meta.json holds the server's version and configuration, the inspection, the coverage and the
unobserved baseline.  Runs are written to a temporary directory first and replace the old ones
only when they succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from acceptlab import analysis
from acceptlab.real import servers as real
from acceptlab.real.observe import observe

# The loads of notebook 09: sequential 1 ms apart; 16 closed-loop clients; the same clients
# with every reply 10 ms slow (nginx's one-line reply cannot be slowed: no slow run for it).
LOADS = {
    "sequential": ({"connections": 200, "gap": 0.001}, 0.0),
    "closed": ({"connections": 400, "concurrency": 16}, 0.0),
    "slow": ({"connections": 200, "concurrency": 16}, 10.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(real.SERVERS))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--scrub", action="store_true",
                        help="only rewrite the saved runs' meta.json without machine paths")
    args = parser.parse_args(argv)
    if args.scrub:
        for path in scrub(Path(args.out)):
            print(f"rewrote {path}")
        return 0
    staging = Path(tempfile.mkdtemp(prefix="acceptlab-real-reference-"))
    try:
        for name in args.names:
            reason = real.missing_reason(name)
            if reason:
                print(f"skipped: {reason}")
                continue
            with real.real_server(name, workers=args.workers) as server:
                for load, (options, slow_ms) in LOADS.items():
                    if slow_ms and real.SERVERS[name].program == "nginx":
                        continue
                    server.set_slow(slow_ms)
                    before = os.getloadavg()
                    run = observe(server.pid, label=f"{name}/{load}", server=server.meta(),
                                  **options)
                    run.meta["load_name"] = load
                    # the machine may be shared: its load beside the run, as the sweep keeps it
                    run.meta["loadavg"] = {"before": before, "after": os.getloadavg()}
                    run.meta["command"] = (
                        f"server = real_server({name!r}, workers={args.workers}); "
                        f"server.set_slow({slow_ms:g}); observe(server.pid, "
                        + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")")
                    run.meta = without_machine_paths(run.meta)
                    _replace(run, real.reference_run_path(name, load, data=args.out), staging)
                    print(_line(run, name, load))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return 0


def without_machine_paths(meta):
    """``meta`` with every command line in it (the server's, and each process's of the
    inspection) as :func:`acceptlab.real.servers.recorded_command` records one."""
    if isinstance(meta, dict):
        return {key: (real.recorded_command(value) if key in ("cmd", "command")
                      and isinstance(value, str) else without_machine_paths(value))
                for key, value in meta.items()}
    if isinstance(meta, list):
        return [without_machine_paths(value) for value in meta]
    return meta


def scrub(data: Path) -> list[Path]:
    """Rewrite the real servers' reference runs under ``data`` without machine paths."""
    changed = []
    for path in sorted(data.glob("real-*/meta.json")):
        meta = json.loads(path.read_text())
        clean = without_machine_paths(meta)
        if clean != meta:
            path.write_text(json.dumps(clean, indent=2) + "\n")
            changed.append(path)
    return changed


def _replace(run, target: Path, staging: Path) -> None:
    """Write the run aside first; replace the old reference run only once that worked."""
    run.save(staging / target.name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(staging / target.name, target)


def _line(run, name: str, load: str) -> str:
    summary = analysis.summary(run.events, run.client, run.workers)
    counts = analysis.per_worker(run.events, run.workers)["accepts"].tolist()
    base = run.meta["baseline"]
    return (f"{name:<19} {load:<10} {run.meta['strategy']:<16} {counts} "
            f"switches/conn {summary['wakeups_per_accept']:.2f} observed "
            f"{base['switches_per_connection']:.2f} unobserved  "
            f"coverage {run.meta['coverage']['coverage']:.1%} {run.meta['attribution']}  "
            f"p50 {base['p50_ms']:.2f} ms unobserved  "
            f"load {run.meta['loadavg']['before'][0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
