"""The ``acceptlab`` command (also ``python -m acceptlab``).

``serve``    run a pool of workers on a port until Ctrl-C, then print who served what
``load``     fire connections at ANY server (the kit's, the book's, nginx) and report
``run``      serve + load + stop on an ephemeral port, write the run's files, print a table
``compare``  run several strategies side by side, write the comparison figures
``doctor``   what this machine supports

Every expected failure (a taken port, a missing platform feature, a bad
argument) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from .conversation import Limits
from .protocol import PROTOCOLS
from .strategies import STRATEGIES, Unavailable

__all__ = ["main"]

BOOK_PORT = 1060  # the port every server in the book listens on
MAX_WORKERS = 256  # far past where 2 cores stop gaining; a typo of 100000 should not fork a storm


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_host(host: str, allow_remote: bool) -> None:
    """Loopback unless the user insists: a teaching server should not face the network by accident."""
    if _is_loopback(host):
        return
    if not allow_remote:
        raise UsageError(f"{host} is not a loopback address; add --allow-remote if you mean it")
    print(f"warning: listening on {host}: anyone who can reach this machine can connect",
          file=sys.stderr)


def _check_values(args: argparse.Namespace) -> None:
    """Refuse values argparse's types let through but no run can use, before anything starts."""
    def bad(message: str) -> None:
        raise UsageError(message)

    port = getattr(args, "port", None)
    if port is not None and not 0 <= port <= 65535:
        bad(f"--port {port} is not a TCP port (0-65535; 0 means any free one)")
    workers = getattr(args, "workers", None)
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        bad(f"--workers {workers}: choose 1 to {MAX_WORKERS}")
    if getattr(args, "idle_timeout", 1) <= 0:
        bad(f"--idle-timeout {args.idle_timeout}: a client needs more than 0 seconds to speak")
    if getattr(args, "max_request", 1) < 1:
        bad(f"--max-request {args.max_request}: a request needs at least 1 byte")
    rate = getattr(args, "rate", None)
    if rate is not None and rate <= 0:
        bad(f"--rate {rate}: an open loop needs a positive rate (connections per second)")
    for name in ("connections", "concurrency", "processes"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            bad(f"--{name} {value}: must be at least 1")
    if getattr(args, "retries", 0) < 0:
        bad(f"--retries {args.retries}: must be 0 or more")
    if getattr(args, "duration", 1) <= 0:
        bad(f"--duration {args.duration}: must be more than 0 seconds")
    if getattr(args, "gap", 0) < 0:
        bad(f"--gap {args.gap}: must be 0 or more seconds")


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("thread", "process"), default="process",
                        help="workers are threads or processes (default: process)")
    parser.add_argument("--workers", "-n", type=int, default=4, help="how many (default: 4)")
    parser.add_argument("--strategy", choices=tuple(STRATEGIES), default="blocking",
                        help="how each worker waits for a connection (default: blocking)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen")
    parser.add_argument("--work", default="none", help="none, sleep:MS or spin:MS per request")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                        help="how processes are started (default: the platform's)")
    parser.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout,
                        help="seconds a silent client may hold a worker")
    parser.add_argument("--max-request", type=int, default=Limits.max_request,
                        help="bytes a request may take")


def _add_load_options(parser: argparse.ArgumentParser, connections: int) -> None:
    parser.add_argument("--connections", "-c", type=int, default=connections)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="stop after this many seconds whatever the count (default: 60)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, default=1,
                       help="closed loop: clients at once (default 1: sequential)")
    shape.add_argument("--rate", type=float, help="open loop: new connections per second")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--retries", type=int, default=0, help="retries of a failed connection")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds each client pauses between connections")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="acceptlab", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve until Ctrl-C")
    _add_pool_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=BOOK_PORT, help="default: 1060, the book's")
    serve.add_argument("--allow-remote", action="store_true",
                       help="permit a non-loopback --host")
    serve.add_argument("--no-record", action="store_true",
                       help="turn the event log off (only to measure what it costs)")

    load = commands.add_parser("load", help="fire connections at a server")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, default=BOOK_PORT)
    load.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen")
    _add_load_options(load, connections=1000)

    run = commands.add_parser("run", help="serve + load on an ephemeral port, save the run")
    _add_pool_options(run)
    _add_load_options(run, connections=200)
    run.add_argument("--sample-queue", action="store_true", help="record accept-queue depth")
    run.add_argument("--out", default="out/run", help="directory for the run's files")

    compare = commands.add_parser("compare", help="strategies side by side, with figures")
    compare.add_argument("--strategies", nargs="+", default=None, metavar="S",
                         choices=tuple(STRATEGIES),
                         help="default: every strategy this machine supports")
    compare.add_argument("--kinds", nargs="+", default=["process", "thread"],
                         choices=("thread", "process"))
    compare.add_argument("--workers", "-n", type=int, default=4)
    compare.add_argument("--connections", "-c", type=int, default=200)
    compare.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen")
    compare.add_argument("--out", default="out/compare")

    commands.add_parser("doctor", help="what this machine supports")
    _add_real_server_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="acceptlab: %(message)s", level=logging.INFO)
    try:
        _check_values(args)
        return COMMANDS[args.command](args)
    except (UsageError, Unavailable, ValueError, RuntimeError) as exc:  # RuntimeError: a
        print(f"acceptlab: {exc}", file=sys.stderr)                   # worker died at birth
        return 2
    except OSError as exc:  # a taken port, an address this machine lacks, too many files...
        print(f"acceptlab: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("acceptlab: interrupted", file=sys.stderr)
        return 130


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_request=args.max_request, idle_timeout=args.idle_timeout)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop the pool and print per-worker counts."""
    from . import analysis
    from .pool import WorkerPool

    _check_host(args.host, args.allow_remote)
    finished = threading.Event()
    # Ctrl-C and SIGTERM only set a flag: the main thread stops the pool (no work in a handler).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())
    pool = WorkerPool(workers=args.workers, kind=args.kind, strategy=args.strategy,
                      protocol=args.protocol, work=args.work, host=args.host, port=args.port,
                      start_method=args.start_method, limits=_limits(args),
                      record=not args.no_record)
    with pool:
        host, port = pool.address
        print(f"listening on {host}:{port}", flush=True)
        while not finished.wait(0.5):
            pass
    print(analysis.per_worker(pool.events(), args.workers).to_string())
    return 0


def _load_summary(client) -> dict:
    """Throughput, latency percentiles and errors by cause from a client table."""
    from . import analysis

    ok = int(client["ok"].sum())
    span = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9 if len(client) else 0
    percentiles = analysis.latency(client).iloc[0]
    return {
        "connections": len(client),
        "ok": ok,
        "errors": client.loc[~client["ok"], "error"].value_counts().to_dict(),
        "seconds": round(float(span), 3),
        "connections_per_s": round(ok / span, 1) if span else 0.0,
        **{name: _plain(round(float(percentiles[name]), 3))
           for name in ("p50_ms", "p90_ms", "p99_ms")},
    }


def cmd_load(args: argparse.Namespace) -> int:
    """Fire load at any server and print connections/s, latency and errors by cause."""
    from .load import fire

    if not _is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    client = fire((args.host, args.port), args.protocol, args.connections, args.concurrency,
                  args.rate, args.processes, args.duration, args.gap, retries=args.retries,
                  progress=not args.json)
    summary = _load_summary(client)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>18}: {value}")
    return 0 if summary["ok"] else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Serve, fire, stop; save the run under --out and print the per-worker table."""
    from . import analysis
    from .experiment import run_experiment

    run = run_experiment(workers=args.workers, kind=args.kind, strategy=args.strategy,
                         protocol=args.protocol, work=args.work, connections=args.connections,
                         concurrency=args.concurrency, rate=args.rate,
                         client_processes=args.processes, gap=args.gap, duration=args.duration,
                         retries=args.retries, start_method=args.start_method,
                         limits=_limits(args), sample_queue=args.sample_queue,
                         progress=not args.json)
    out = run.save(args.out)
    table = analysis.per_worker(run.events, args.workers)
    if args.json:
        summary = analysis.summary(run.events, run.client, args.workers)
        summary.update(per_worker=table["accepts"].astype(int).tolist(),
                       client_errors=len(run.client) - int(summary["client_ok"]), out=str(out))
        print(json.dumps({key: _plain(value) for key, value in summary.items()}))
    else:
        print(f"{run.label}: {args.workers} workers, {len(run.client)} connections -> {out}/")
        print(table.to_string())
    return 0


def _plain(value: object) -> object:
    """A value JSON can hold: numpy and pandas numbers as Python's, NaN as null."""
    if value is None or isinstance(value, (bool, str, list)):
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN: JSON has no such number
        return None
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def cmd_compare(args: argparse.Namespace) -> int:
    """Run strategies side by side; write runs, figures and a summary table under --out."""
    from .report import write_comparison

    written = write_comparison(Path(args.out), strategies=args.strategies, kinds=args.kinds,
                               workers=args.workers, connections=args.connections,
                               protocol=args.protocol)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what this machine supports, and which strategies run for which kind."""
    from .kernel import feature_report, format_report
    from .strategies import strategy_support

    print(format_report(feature_report()))
    print()
    print("strategies:")
    for name, kinds in strategy_support().items():
        verdicts = ", ".join(f"{kind} {'✓' if why is None else '✗'}" for kind, why in kinds.items())
        reasons = {why for why in kinds.values() if why}
        print(f"  {name:<16} {verdicts}" + (f"   ({'; '.join(reasons)})" if reasons else ""))
    return 0


COMMANDS = {"serve": cmd_serve, "load": cmd_load, "run": cmd_run, "compare": cmd_compare,
            "doctor": cmd_doctor}


# -------------------------------------------------------- real servers (inspect, observe, real)
# Each command is one _add_* (which names its handler with set_defaults) and one _cmd_*(args,
# stop=None); _add_real_server_commands registers the three.


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect_ = commands.add_parser("inspect", help="any server's accept topology, from /proc")
    inspect_.add_argument("pid", type=int, help="a master or any worker process")
    inspect_.add_argument("--json", action="store_true", help="print one JSON object")
    inspect_.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Print a server's listeners, how each thread waits, the matching strategy and prediction."""
    from .topology import format_topology, topology

    try:
        found = topology(args.pid)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(found.to_json()) if args.json else format_topology(found))
    return 0


def _add_observe(commands: argparse._SubParsersAction) -> None:
    observe = commands.add_parser("observe", help="load any running server and attribute each "
                                                  "connection to the worker that accepted it")
    observe.add_argument("pid", type=int, help="the server's master process")
    observe.add_argument("--port", type=int, help="default: the one port the server listens on")
    observe.add_argument("--host", default="127.0.0.1")
    observe.add_argument("--protocol", choices=tuple(PROTOCOLS), default="http")
    _add_load_options(observe, connections=200)
    observe.add_argument("--no-baseline", action="store_true",
                         help="skip the second, unobserved pass (switches and latency without "
                              "attribution)")
    observe.add_argument("--out", help="directory for the run's files")
    observe.set_defaults(handler=_cmd_observe)


def _cmd_observe(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Observe a running server under load: who accepted what, switches, coverage."""
    from . import analysis
    from .observe import observe

    if args.processes != 1 or args.retries:
        raise UsageError("observe fires from one client process without retries "
                         "(--processes 1, --retries 0)")
    if not _is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    try:
        run = observe(args.pid, port=args.port, host=args.host, protocol=args.protocol,
                      connections=args.connections, concurrency=args.concurrency,
                      rate=args.rate, duration=args.duration, gap=args.gap,
                      baseline=not args.no_baseline)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    out = run.save(args.out) if args.out else None
    table = analysis.per_worker(run.events, run.workers)
    table.insert(0, "pid", run.meta["worker_pids"])
    table = table[["pid", "accepts", "share", "nvcsw"]].rename(columns={"nvcsw": "switches"})
    covered = run.meta["coverage"]
    baseline = run.meta.get("baseline", {})
    switches = analysis.wakeups_per_accept(run.events)["nvcsw_per_accept"]
    summary = {"strategy": run.meta["strategy"] or None,
               "per_worker": table["accepts"].astype(int).tolist(),
               "worker_pids": run.meta["worker_pids"], **covered,
               "switches_per_connection": switches,
               "baseline_switches_per_connection": baseline.get("switches_per_connection"),
               "p50_ms": analysis.latency(run.client).iloc[0]["p50_ms"],
               "baseline_p50_ms": baseline.get("p50_ms"), "out": str(out) if out else None}
    if args.json:
        print(json.dumps({key: _plain(value) for key, value in summary.items()}))
        return 0
    print(f"{args.pid}: {run.meta['strategy'] or 'no strategy matched'} - {run.meta['prediction']}")
    print(table.to_string())
    print(f"attributed {covered['attributed']}/{covered['connections']} connections "
          f"({covered['coverage']:.1%}); the reply named a pid for {covered['named']}: "
          f"{covered['agree']} agree, {covered['disagree']} disagree")
    print(f"voluntary context switches per connection: "
          f"{summary['switches_per_connection']:.2f} observed"
          + (f", {baseline['switches_per_connection']:.2f} unobserved" if baseline else ""))
    if out:
        print(f"run written to {out}/")
    return 0


def _add_real(commands: argparse._SubParsersAction) -> None:
    from .real import SERVERS

    real = commands.add_parser("real", help="start a real server (gunicorn, uvicorn, nginx, node) "
                                            "on a free loopback port until Ctrl-C")
    real.add_argument("name", choices=tuple(SERVERS), metavar="NAME",
                      help=", ".join(SERVERS))
    real.add_argument("--workers", "-n", type=int, default=4, help="how many (default: 4)")
    real.add_argument("--slow-ms", type=float, default=0.0,
                      help="every reply waits this long (not nginx)")
    real.set_defaults(handler=_cmd_real)


def _cmd_real(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Start a real server, print where it listens and what inspect sees, stop it on Ctrl-C."""
    from .basics import show_address
    from .real import ServerMissing, real_server, reference_run_path
    from .topology import format_topology, settled_topology

    try:
        server = real_server(args.name, workers=args.workers, slow_ms=args.slow_ms)
    except ServerMissing as exc:
        reference = reference_run_path(args.name, "sequential")
        raise UsageError(f"{exc}; its reference run: {reference}" if reference.exists()
                         else str(exc)) from None
    if stop is None:  # Ctrl-C and SIGTERM only set a flag: the main thread stops the server
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"{server.version} listening on http://{show_address(*server.address)}/  "
              f"(master pid {server.pid}; Ctrl-C stops it)", flush=True)
        print(format_topology(settled_topology(server.pid)), flush=True)
        while not stop.wait(0.5) and server.process.poll() is None:
            pass
    return 0


def _add_real_server_commands(commands: argparse._SubParsersAction) -> None:
    """Register inspect, observe and real (one call in build_parser)."""
    for add in (_add_inspect, _add_observe, _add_real):
        add(commands)


COMMANDS.update(inspect=_cmd_inspect, observe=_cmd_observe, real=_cmd_real)

if __name__ == "__main__":
    sys.exit(main())
