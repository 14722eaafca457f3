"""The options several commands share, and the specs they build (:mod:`acceptlab.specs`)."""

from __future__ import annotations

import argparse

from ..registry import STRATEGY_RECORDS
from ..server.protocol import PROTOCOLS
from ..specs import Limits, LoadSpec, PoolSpec


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("thread", "process", "hybrid"), default="process",
                        help="workers are threads, processes, or processes of --threads "
                             "threads each (hybrid) (default: process)")
    parser.add_argument("--workers", "-n", type=int, default=4,
                        help="how many (processes, for hybrid) (default: 4)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per process with --kind hybrid (default: 2)")
    parser.add_argument("--strategy", choices=tuple(STRATEGY_RECORDS), default="blocking",
                        help="how each worker waits for a connection (default: blocking)")
    parser.add_argument("--strategy-option", type=strategy_option, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="one of the strategy's own settings, e.g. every=8 for reorder or "
                             "accept_timeout=0.5 for timeout (repeatable)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                        help="what the workers speak (default: zen, the book's)")
    parser.add_argument("--work", default="none", help="none, sleep:MS or spin:MS per request")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                        help="how processes are started (default: the platform's)")
    parser.add_argument("--idle-timeout", type=float, default=Limits().idle_timeout,
                        help="seconds a silent client may hold a worker")
    parser.add_argument("--max-request", type=int, default=Limits().max_request,
                        help="bytes a request may take")


def add_load_options(parser: argparse.ArgumentParser, connections: int) -> None:
    parser.add_argument("--connections", "-c", type=int, default=connections,
                        help=f"connections to make (default: {connections})")
    parser.add_argument("--duration", type=float, default=LoadSpec.duration,
                        help=f"stop after this many seconds whatever the count "
                             f"(default: {LoadSpec.duration:g})")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, default=1,
                       help="closed loop: clients at once (default 1: sequential)")
    shape.add_argument("--rate", type=float, help="open loop: new connections per second")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--retries", type=int, default=0, help="retries of a failed connection")
    parser.add_argument("--seed", type=int, help="makes an open loop's arrival times repeatable")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds each client pauses between connections")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")


def add_out_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", help=f"directory for the files (default: {default}, or "
                        f"{default}-2, -3... if that one holds results already)")
    parser.add_argument("--force", action="store_true",
                        help="replace the results already in --out")


def strategy_option(text: str) -> tuple[str, float]:
    """``--strategy-option every=8`` -> ``('every', 8.0)``."""
    name, equals, value = text.partition("=")
    try:
        return name, float(value) if equals else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=NUMBER, e.g. every=8") from None


def pool_spec(args: argparse.Namespace) -> PoolSpec:
    """The pool the options describe (the spec checks every value)."""
    threads = args.threads if args.threads is not None else (2 if args.kind == "hybrid" else 1)
    extra = {name: getattr(args, name) for name in ("host", "port") if name in args}
    if "join" in args:
        extra["join_port"] = args.join
    return PoolSpec(workers=args.workers, kind=args.kind, threads=threads,
                    strategy=args.strategy, strategy_options=dict(args.strategy_option),
                    protocol=args.protocol, work=args.work, start_method=args.start_method,
                    limits=Limits(max_request=args.max_request, idle_timeout=args.idle_timeout),
                    record=not getattr(args, "no_record", False), **extra)


def load_spec(args: argparse.Namespace) -> LoadSpec:
    """The load the options describe (the spec checks every value)."""
    return LoadSpec(protocol=args.protocol, connections=args.connections,
                    concurrency=args.concurrency, rate=args.rate, gap=args.gap,
                    duration=args.duration, processes=args.processes, seed=args.seed,
                    retries=args.retries)


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The saved run a command reads (``replay``, ``rerun``)."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `run`")
