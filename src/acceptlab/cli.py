"""The acceptlab command (also python -m acceptlab).

Every expected failure (a taken port, a missing platform feature, a bad
argument, an output directory that cannot take the run) is one line on
stderr and exit code 2, never a traceback.  Ctrl-C during run, load or
compare stops the load, keeps what was measured (printed, and written with
"interrupted": true) and exits with 130; a second Ctrl-C quits at once.

How the file is laid out: a few shared pieces (checks, output, interrupts),
then one block per sub-command, each an ``_add_<name>(commands)`` that builds
its parser and a ``_cmd_<name>(args, stop)`` that runs it.  ``@_command``
registers a block, so adding a sub-command is adding one block.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import __version__
from .basics import show_address
from .server.conversation import Limits
from .server.protocol import PROTOCOLS
from .server.strategies import STRATEGIES
from .linux.support import Unavailable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main", "build_parser"]

DESCRIPTION = "Watch the kernel hand out TCP connections to workers that share one socket."
BOOK_PORT = 1060  # the port every server in the book listens on
MAX_WORKERS = 256  # far past where 2 cores stop gaining; a typo of 100000 should not fork a storm
NOTHING = "—"  # what a table shows where nothing ran (instead of NaN or <NA>)
INTERRUPTED = 130  # the shell's code for "ended by SIGINT" (128 + 2)


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""


# -- checks made before anything starts --------------------------------------------------------

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
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= MAX_WORKERS:
        bad(f"--threads {threads}: choose 1 to {MAX_WORKERS}")
    if threads not in (None, 1) and getattr(args, "kind", "hybrid") != "hybrid":
        bad(f"--threads {threads} needs --kind hybrid (processes of several threads)")
    every = getattr(args, "restart_every", None)
    if every is not None and every <= 0:
        bad(f"--restart-every {every}: must be more than 0 seconds")


class OutputDirectory:
    """Where a run's files go, claimed BEFORE the run so a bad directory costs no measurement.

    A file in the way, a directory that cannot be written, or one that already
    holds results (and no ``--force``) is a :class:`UsageError`.  Without an
    explicit ``--out`` the default name is used, or the first free
    ``<default>-2``, ``-3``... so running twice never overwrites anything.
    """

    RESULTS = ("meta.json", "summary.csv", "runs")  # what a run or a comparison leaves

    def __init__(self, given: str | None, default: str, force: bool) -> None:
        self.path = Path(given) if given is not None else self._fresh(Path(default))
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path}: a file is in the way (it must be a directory)")
        if self._holds_results(self.path) and not force:
            raise UsageError(f"--out {self.path} already holds a run; add --force to replace "
                             f"it, or choose another --out")
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass  # proof that files can be created there (read-only mounts, permissions)
        except OSError as exc:
            self.discard()
            raise UsageError(f"--out {self.path}: cannot write there "
                             f"({exc.strerror or exc})") from None

    @classmethod
    def _holds_results(cls, path: Path) -> bool:
        return path.is_dir() and any((path / name).exists() for name in cls.RESULTS)

    @classmethod
    def _fresh(cls, default: Path) -> Path:
        candidate, number = default, 1
        while cls._holds_results(candidate) or (candidate.exists() and not candidate.is_dir()):
            number += 1
            candidate = default.with_name(f"{default.name}-{number}")
        return candidate

    def discard(self) -> None:
        """Remove the directory again if this command created it and nothing was written."""
        if self.created:
            try:
                self.path.rmdir()
            except OSError:
                pass  # not empty, or already gone: leave it


# -- output ------------------------------------------------------------------------------------

def _cell(value: object) -> str:
    """One rule for every number a person reads: 2 decimals, and "—" where nothing ran."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NA:
        return NOTHING
    if isinstance(value, (float, np.floating)):
        return NOTHING if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _show_table(table: "pd.DataFrame") -> str:
    """A table as text, every cell by :func:`_cell`."""
    return table.astype(object).apply(lambda column: column.map(_cell)).to_string()


def _errors_by_kind(client: "pd.DataFrame") -> dict[str, int]:
    failed = client.loc[~client["ok"].astype(bool), "error"]
    return {str(kind): int(count) for kind, count in failed.value_counts().items()}


def _load_summary(client: "pd.DataFrame") -> dict:
    """Throughput, latency percentiles and errors by cause from a client table."""
    from .views import analysis

    ok = int(client["ok"].sum())
    span = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9 if len(client) else 0
    times = analysis.latency(client).iloc[0]
    return {
        "connections": len(client),
        "ok": ok,
        "errors": _errors_by_kind(client),
        "seconds": round(float(span), 3),
        "connections_per_s": round(ok / span, 1) if span else 0.0,
        **{name: _plain(round(float(times[name]), 3))
           for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }


def _client_lines(summary: dict) -> list[str]:
    """What the client saw, for people: errors by kind and the latency percentiles."""
    errors = ", ".join(f"{kind} {count}" for kind, count in summary["errors"].items())
    return [f"client: {summary['connections']} connections, {summary['ok']} ok, "
            f"errors: {errors or 'none'}",
            "latency (ms): " + "  ".join(f"{name[:-3]} {_cell(summary[name])}"
                                          for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))]


def _plain(value: object) -> object:
    """A value JSON can hold: numpy and pandas numbers as Python's, NaN as null."""
    if value is None or isinstance(value, (bool, str, list, dict)):
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN: JSON has no such number
        return None
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def _say_interrupted(what: str) -> None:
    print(f"acceptlab: interrupted: {what}", file=sys.stderr, flush=True)


# -- Ctrl-C: a request to stop, not an exception -------------------------------------------------

class Interrupts:
    """Turn Ctrl-C (and SIGTERM) into an Event the commands poll; a second Ctrl-C quits at once.

    Why not KeyboardInterrupt: it can land anywhere (inside a join, a save, a
    ``finally``) and throws away what was measured.  So, as gunicorn's arbiter
    does, the signal only records the request and the command's own flow acts
    on it: stop the load, stop the pool, save, print.

    SIGINT is *blocked* in this process before any worker or client process
    starts, and one thread takes it with ``sigwait``.  The block is inherited
    by every child (fork keeps the mask, and so does exec for spawn and
    forkserver), so the SIGINT a terminal sends to the whole process group
    never reaches a worker or client process halfway through its start-up:
    no child prints a KeyboardInterrupt traceback.  The parent alone decides,
    and stops its children by their pids.

    One catch: multiprocessing's resource tracker, when it starts (at the first
    cross-process lock), blocks and then *unblocks* SIGINT in the calling
    thread.  So it is started here, before the block; and in case anything
    else unblocks SIGINT, a Python handler that only records the request
    stands behind the block.

    On the way out, multiprocessing's helper processes (the resource tracker,
    a forkserver) are stopped and reaped here rather than left to notice this
    process's end by themselves: a helper that outlives its parent is an
    orphan, and a zombie until something else reaps it.

    A second Ctrl-C means "now": the watcher kills this process's children
    (SIGKILL, by pid, and reaps them), stops the resource tracker and exits
    with 130.  That is the one action taken outside the main flow, because the
    main flow may be the very thing that is stuck.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._closing = False
        self._watcher: threading.Thread | None = None
        self._old_mask: set | None = None
        self._old_term: object = None
        self._old_int: object = None
        self._helpers_before: list = []  # a caller's own (main() called in-process): kept

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is not threading.main_thread():
            return self.stop  # signals reach only the main thread's handlers: nothing to do
        self._helpers_before = [h for h in _multiprocessing_helpers() if _running(h)]
        self._old_term = signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        self._old_int = signal.signal(signal.SIGINT, lambda *_: self._asked())
        if hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait"):
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()  # now, while SIGINT is not blocked yet
            self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            self._watcher = threading.Thread(target=self._watch, name="acceptlab-ctrl-c",
                                             daemon=True)
            self._watcher.start()
        return self.stop

    def _watch(self) -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            if self._closing:
                return
            self._asked()

    def _asked(self) -> None:
        """One Ctrl-C: record the request.  The second: quit now."""
        if self.stop.is_set():
            self._quit_now()
        self.stop.set()

    @staticmethod
    def _quit_now() -> None:
        print("\nacceptlab: interrupted again: quitting now", file=sys.stderr, flush=True)
        # Rounds, because a pool's supervisor (or a multiprocessing Pool) replaces a killed
        # child within 0.1 s: done after two empty looks 60 ms apart, or after 1.5 s.
        quiet, give_up = 0, time.monotonic() + 1.5
        while quiet < 2 and time.monotonic() < give_up:
            children = _children_to_end()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)  # only processes this process started
                except OSError:
                    pass
            for pid in children:
                try:
                    os.waitpid(pid, 0)  # reaped here: no zombie left for init to find
                except OSError:
                    pass
            quiet = 0 if children else quiet + 1
            time.sleep(0.06)
        # Last the resource tracker, which unlinks the clients' semaphores (and says so).
        helpers = threading.Thread(target=_stop_multiprocessing_helpers, daemon=True)
        helpers.start()
        helpers.join(0.5)  # it may be waiting for a lock the main thread holds: not for long
        os._exit(INTERRUPTED)

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            self._closing = True
            signal.pthread_kill(self._watcher.ident, signal.SIGINT)  # wakes its sigwait
            self._watcher.join()
        _stop_multiprocessing_helpers(spare=self._helpers_before)
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)  # type: ignore[arg-type]
            signal.signal(signal.SIGINT, self._old_int)  # type: ignore[arg-type]


def _children_to_end() -> list[int]:
    """This process's children, except multiprocessing's resource tracker.

    The tracker is spared because it is what removes the named semaphores of
    the client processes from /dev/shm once this process is gone.  On Linux
    the children are read from /proc, which also sees a process forked a
    moment ago; elsewhere multiprocessing's own list is used.
    """
    from multiprocessing import resource_tracker

    tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    me, pids = os.getpid(), []
    if os.path.isdir("/proc/self/task"):
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and int(Path(entry.path, "stat").read_text()
                                                .rsplit(")", 1)[1].split()[1]) == me:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    else:
        try:
            pids = [child.pid for child in multiprocessing.active_children()]
        except Exception:  # the main thread may be changing that list this very moment
            pids = []
    return [pid for pid in pids if pid != tracker]


def _multiprocessing_helpers() -> list:
    """multiprocessing's helper processes of this process, as objects that can ``_stop()``.

    ``_stop`` is CPython's own (its tests use it); where it is missing, nothing is stopped.
    """
    from multiprocessing import forkserver, resource_tracker

    helpers = [getattr(resource_tracker, "_resource_tracker", None),
               getattr(forkserver, "_forkserver", None)]
    return [helper for helper in helpers if hasattr(helper, "_stop")]


def _running(helper: object) -> bool:
    return (getattr(helper, "_pid", None) or getattr(helper, "_forkserver_pid", None)) is not None


def _stop_multiprocessing_helpers(spare: Sequence[object] = ()) -> None:
    """Stop and reap the resource tracker and forkserver, except those in ``spare``."""
    for helper in _multiprocessing_helpers():
        if helper not in spare:
            try:
                helper._stop()
            except (OSError, ChildProcessError):
                pass  # already gone


# -- the parser ----------------------------------------------------------------------------------

_BLOCKS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(add: Callable[[argparse._SubParsersAction], None]):
    """Register one sub-command's ``_add_<name>``; they appear in the help in this order."""
    _BLOCKS.append(add)
    return add


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="acceptlab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"acceptlab {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _BLOCKS:
        add(commands)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported with the usage of the sub-command it was given to."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = _subparsers(parser).get(args.command, parser)
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("thread", "process", "hybrid"), default="process",
                        help="workers are threads, processes, or processes of --threads "
                             "threads each (hybrid) (default: process)")
    parser.add_argument("--workers", "-n", type=int, default=4,
                        help="how many (processes, for hybrid) (default: 4)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per process with --kind hybrid (default: 2)")
    parser.add_argument("--strategy", choices=tuple(STRATEGIES), default="blocking",
                        help="how each worker waits for a connection (default: blocking)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                        help="what the workers speak (default: zen, the book's)")
    parser.add_argument("--work", default="none", help="none, sleep:MS or spin:MS per request")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                        help="how processes are started (default: the platform's)")
    parser.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout,
                        help="seconds a silent client may hold a worker")
    parser.add_argument("--max-request", type=int, default=Limits.max_request,
                        help="bytes a request may take")


def _add_load_options(parser: argparse.ArgumentParser, connections: int) -> None:
    parser.add_argument("--connections", "-c", type=int, default=connections,
                        help=f"connections to make (default: {connections})")
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


def _add_out_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", help=f"directory for the files (default: {default}, or "
                        f"{default}-2, -3... if that one holds results already)")
    parser.add_argument("--force", action="store_true",
                        help="replace the results already in --out")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_request=args.max_request, idle_timeout=args.idle_timeout)


def _threads(args: argparse.Namespace) -> int:
    """--threads, defaulting to 2 for hybrid workers (1 thread each would just be processes)."""
    if args.threads is None:
        return 2 if args.kind == "hybrid" else 1
    return args.threads


def _slots(args: argparse.Namespace) -> int:
    """How many event-log slots the pool has: one per thread of a hybrid worker."""
    return args.workers * _threads(args)


# -- main ----------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parse(build_parser(), argv)
    logging.basicConfig(format="acceptlab: %(message)s", level=logging.INFO)
    try:
        _check_values(args)
        with Interrupts() as stop:
            return args.handler(args, stop)
    except (UsageError, Unavailable, ValueError, RuntimeError) as exc:  # RuntimeError: a
        print(f"acceptlab: {exc}", file=sys.stderr)                   # worker died at birth
        return 2
    except OSError as exc:  # a taken port, an address this machine lacks, too many files...
        print(f"acceptlab: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # only where SIGINT could not be blocked (not POSIX, not main)
        _say_interrupted("nothing kept")
        return INTERRUPTED


# -- serve ---------------------------------------------------------------------------------------

@_command
def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve until Ctrl-C",
                                description="Serve on a port until Ctrl-C or SIGTERM, then "
                                            "print who served what.")
    _add_pool_options(serve)
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
    serve.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop the pool and print per-worker counts."""
    from .views import analysis
    from .server.pool import WorkerPool

    _check_host(args.host, args.allow_remote)
    pool = WorkerPool(workers=args.workers, kind=args.kind, strategy=args.strategy,
                      protocol=args.protocol, work=args.work, host=args.host, port=args.port,
                      start_method=args.start_method, limits=_limits(args),
                      record=not args.no_record, join=args.join, threads=_threads(args))
    with pool:
        print(f"listening on {show_address(*pool.address[:2])}", flush=True)
        while not stop.wait(0.5):
            states = pool.status()
            if all(slot.state == "down" for slot in states):  # nobody left to serve
                raise states[0].error  # one line, exit code 2 (a RuntimeError)
    print(_show_table(analysis.per_worker(pool.events(), _slots(args))))
    return 0


# -- load ----------------------------------------------------------------------------------------

@_command
def _add_load(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser("load", help="fire connections at a server",
                               description="Fire connections at any server on this machine "
                                           "(the kit's, the book's, nginx) and report.")
    load.add_argument("--host", default="127.0.0.1",
                      help="server address, on this machine (default: 127.0.0.1)")
    load.add_argument("--port", type=int, default=BOOK_PORT,
                      help="server port (default: 1060, the book's)")
    load.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                      help="what the server speaks (default: zen)")
    _add_load_options(load, connections=1000)
    load.set_defaults(handler=_cmd_load)


def _cmd_load(args: argparse.Namespace, stop: threading.Event) -> int:
    """Fire load at any server and print connections/s, latency and errors by cause."""
    from .client.load import fire

    if not _is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    client = fire((args.host, args.port), protocol=args.protocol, connections=args.connections,
                  concurrency=args.concurrency, rate=args.rate, processes=args.processes,
                  duration=args.duration, gap=args.gap, retries=args.retries,
                  progress=not args.json, stop=stop)
    summary = _load_summary(client)
    if args.json:
        print(json.dumps({**summary, "interrupted": stop.is_set()}))
    else:
        print(f"load on {show_address(args.host, args.port)} ({args.protocol}):")
        print("\n".join(_client_lines(summary)))
        print(f"{summary['seconds']:.2f} s, {summary['connections_per_s']:.2f} connections/s")
    if stop.is_set():
        _say_interrupted(f"stopped the load after {len(client)} connections")
        return INTERRUPTED
    return 0 if summary["ok"] else 1


# -- run -----------------------------------------------------------------------------------------

@_command
def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="serve + load on an ephemeral port, save the run",
                              description="Serve, fire the load, stop; save the run's files "
                                          "and print who served what and what the client saw.")
    _add_pool_options(run)
    _add_load_options(run, connections=200)
    run.add_argument("--sample-queue", action="store_true", help="record accept-queue depth")
    run.add_argument("--trace", action="store_true",
                     help="also record the kernel's wakeups and TCP states (root, tracefs)")
    run.add_argument("--restart-every", type=float, metavar="SECONDS",
                     help="restart one worker after another every SECONDS during the load, "
                          "and count what each restart cost the clients")
    run.add_argument("--graceful", action=argparse.BooleanOptionalAction, default=True,
                     help="with --restart-every: let each worker finish its conversation "
                          "(default), or --no-graceful to kill it")
    _add_out_options(run, "out/run")
    run.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve, fire, stop; save the run under --out and print the per-worker table."""
    from .views import analysis
    from .lab.experiment import run_experiment

    out = OutputDirectory(args.out, "out/run", args.force)
    try:
        run = run_experiment(workers=args.workers, kind=args.kind, strategy=args.strategy,
                             protocol=args.protocol, work=args.work,
                             connections=args.connections, concurrency=args.concurrency,
                             rate=args.rate, client_processes=args.processes, gap=args.gap,
                             duration=args.duration, retries=args.retries,
                             start_method=args.start_method, limits=_limits(args),
                             sample_queue=args.sample_queue, progress=not args.json, stop=stop,
                             trace=args.trace, threads=_threads(args),
                             restart_every=args.restart_every, graceful=args.graceful)
    except BaseException:
        out.discard()
        raise
    _say_if_untraced(run)
    run.save(out.path)
    table = analysis.per_worker(run.events, run.workers)
    client = _load_summary(run.client)
    losses = _restart_losses(run)
    if args.json:
        summary = analysis.summary(run.events, run.client, run.workers)
        summary.update(per_worker=table["accepts"].astype(int).tolist(),
                       client_errors=len(run.client) - int(summary["client_ok"]),
                       client_errors_by_kind=client["errors"], max_ms=client["max_ms"],
                       out=str(out.path), interrupted=run.interrupted)
        if losses is not None:
            summary["restarts"] = losses.to_dict(orient="records")
        print(json.dumps({key: _plain(value) for key, value in summary.items()}))
    else:
        print(f"{run.label}: {args.workers} workers, {len(run.client)} connections "
              f"-> {out.path}/")
        print(_show_table(table))
        print("\n".join(_client_lines(client)))
        if losses is not None:
            print("restarts (connections that ended in each restart's window):")
            print(_show_table(losses))
    if run.interrupted:
        _say_interrupted(f"kept the {len(run.client)} connections that completed in {out.path}/")
        return INTERRUPTED
    return 0


def _restart_losses(run) -> "pd.DataFrame | None":
    """What each restart of ``run --restart-every`` cost, or None for a run without restarts."""
    if "restarts" not in run.meta:
        return None
    from .lab.restarts import restart_losses

    return restart_losses(run.client, run.meta["restarts"])


# -- compare -------------------------------------------------------------------------------------

@_command
def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="strategies side by side, with figures",
                                  description="Run the strategies side by side; write the "
                                              "runs, a summary table and figures.")
    compare.add_argument("--strategies", nargs="+", default=None, metavar="S",
                         choices=tuple(STRATEGIES),
                         help="default: every strategy this machine supports")
    compare.add_argument("--kinds", nargs="+", default=["process", "thread"],
                         choices=("thread", "process"),
                         help="worker kinds to compare (default: process thread)")
    compare.add_argument("--workers", "-n", type=int, default=4,
                         help="workers per run (default: 4)")
    compare.add_argument("--connections", "-c", type=int, default=200,
                         help="connections per run (default: 200)")
    compare.add_argument("--protocol", choices=tuple(PROTOCOLS), default="zen",
                         help="what the workers speak (default: zen)")
    _add_out_options(compare, "out/compare")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run strategies side by side; write runs, figures and a summary table under --out."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works headless
    from .lab.report import write_comparison

    out = OutputDirectory(args.out, "out/compare", args.force)
    try:
        result = write_comparison(out.path, strategies=args.strategies, kinds=args.kinds,
                                  workers=args.workers, connections=args.connections,
                                  protocol=args.protocol, stop=stop)
    except BaseException:
        out.discard()
        raise
    if result.table is not None:
        print(_show_table(result.table))
    if result.slow_worker is not None:
        print()
        print("one slow worker (30/10/10 ms per request), 12 clients:")
        print(_show_table(result.slow_worker))
    for path in result.written:
        print(f"wrote {path}")
    if result.interrupted:
        _say_interrupted(f"kept the {len(result.written)} files of what completed in "
                         f"{out.path}/")
        return INTERRUPTED
    return 0


# -- doctor --------------------------------------------------------------------------------------

@_command
def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="what this machine supports",
                                 description="What this machine supports, and which "
                                             "strategies run for which kind of worker.")
    doctor.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print what this machine supports, and which strategies run for which kind."""
    from .linux.support import format_report

    print(format_report())
    return 0


# -------------------------------------------------------- real servers (inspect, observe, real)
# Each command is one _add_* (which names its handler with set_defaults) and one _cmd_*(args,
# stop).


@_command
def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect_ = commands.add_parser("inspect", help="any server's accept topology, from /proc")
    inspect_.add_argument("pid", type=int, help="a master or any worker process")
    inspect_.add_argument("--json", action="store_true", help="print one JSON object")
    inspect_.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print a server's listeners, how each thread waits, the matching strategy and prediction."""
    from .real.topology import format_topology, topology

    try:
        found = topology(args.pid)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(found.to_json()) if args.json else format_topology(found))
    return 0


@_command
def _add_observe(commands: argparse._SubParsersAction) -> None:
    observe = commands.add_parser("observe", help="load any running server and attribute each "
                                                  "connection to the worker that accepted it")
    observe.add_argument("pid", type=int, help="the server's master process")
    observe.add_argument("--port", type=int, help="default: the one port the server listens on")
    observe.add_argument("--host", default="127.0.0.1",
                         help="the server's loopback address (default: 127.0.0.1)")
    observe.add_argument("--protocol", choices=tuple(PROTOCOLS), default="http",
                         help="what the server speaks (default: http)")
    _add_load_options(observe, connections=200)
    observe.add_argument("--attribution", choices=("auto", "after-reply", "before-request"),
                         default="auto",
                         help="look at a connection after its reply (servers that keep it "
                              "open) or hold its request back until a worker holds it; auto "
                              "(default) tries one connection to choose")
    observe.add_argument("--no-baseline", action="store_true",
                         help="skip the second, unobserved pass (switches and latency without "
                              "attribution)")
    observe.add_argument("--out", help="directory for the run's files")
    observe.set_defaults(handler=_cmd_observe)


def _cmd_observe(args: argparse.Namespace, stop: threading.Event) -> int:
    """Observe a running server under load: who accepted what, switches, coverage."""
    from .views import analysis
    from .real.observe import observe

    if args.processes != 1 or args.retries:
        raise UsageError("observe fires from one client process without retries "
                         "(--processes 1, --retries 0)")
    if not _is_loopback(args.host):
        raise UsageError(f"{args.host} is not a loopback address: the kit only loads this machine")
    try:
        run = observe(args.pid, port=args.port, host=args.host, protocol=args.protocol,
                      connections=args.connections, concurrency=args.concurrency,
                      rate=args.rate, duration=args.duration, gap=args.gap,
                      baseline=not args.no_baseline, attribution=args.attribution)
    except ProcessLookupError as exc:
        raise UsageError(str(exc)) from None
    out = run.save(args.out) if args.out else None
    table = analysis.per_worker(run.events, run.workers)
    table.insert(0, "pid", run.meta["worker_pids"])
    table = table[["pid", "accepts", "share", "wakeups"]]
    covered = run.meta["coverage"]
    baseline = run.meta.get("baseline", {})
    switches = analysis.cost_per_accept(run.events)["wakeups_per_accept"]
    summary = {"strategy": run.meta["strategy"] or None,
               "per_worker": table["accepts"].astype(int).tolist(),
               "worker_pids": run.meta["worker_pids"], "attribution": run.meta["attribution"],
               **covered,
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
          f"({covered['coverage']:.1%}, {run.meta['attribution']}); "
          f"the reply named a pid for {covered['named']}: "
          f"{covered['agree']} agree, {covered['disagree']} disagree")
    print(f"voluntary context switches per connection: "
          f"{summary['switches_per_connection']:.2f} observed"
          + (f", {baseline['switches_per_connection']:.2f} unobserved" if baseline else ""))
    if out:
        print(f"run written to {out}/")
    return 0


@_command
def _add_real(commands: argparse._SubParsersAction) -> None:
    from .real.servers import SERVERS

    real = commands.add_parser("real", help="start a real server (gunicorn, uvicorn, nginx, node) "
                                            "on a free loopback port until Ctrl-C")
    real.add_argument("name", choices=tuple(SERVERS), metavar="NAME",
                      help=", ".join(SERVERS))
    real.add_argument("--workers", "-n", type=int, default=4, help="how many (default: 4)")
    real.add_argument("--slow-ms", type=float, default=0.0,
                      help="every reply waits this long (not nginx)")
    real.set_defaults(handler=_cmd_real)


def _cmd_real(args: argparse.Namespace, stop: threading.Event) -> int:
    """Start a real server, print where it listens and what inspect sees, stop it on Ctrl-C."""
    from .basics import show_address
    from .real.servers import ServerMissing, real_server, reference_run_path
    from .real.topology import format_topology, settled_topology

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



# -- replay (and run --trace's one line) ---------------------------------------------------------

def _say_if_untraced(run) -> None:
    """One line when ``--trace`` was asked for and could not be had; the run goes on."""
    note = run.meta.get("trace")
    if isinstance(note, str) and note.startswith("unavailable"):
        print(f"acceptlab: tracing {note}; the run went on untraced", file=sys.stderr)


@_command
def _add_replay(commands: argparse._SubParsersAction) -> None:
    replay = commands.add_parser("replay", help="animate a saved run (the wait queue as a film)",
                                 description="Write a saved run's film: the accept queue, the "
                                             "sleeping workers in the kernel's order, who is "
                                             "woken and who wins.")
    replay.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `run`")
    replay.add_argument("--out", default="film.html", help="film.html (offline) or film.gif")
    replay.add_argument("--connections", type=int, default=24,
                        help="how many connections to show (default 24)")
    replay.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace, stop: threading.Event) -> int:
    """Write a saved run's film as offline HTML or a GIF."""
    from .lab.experiment import Run
    from .views.film import replay, save_film

    source = Path(args.run_dir)
    if not (source / "meta.json").is_file():
        raise UsageError(f"{source} is not a saved run (no meta.json in it)")
    if Path(args.out).suffix.lower() not in (".html", ".htm", ".gif"):
        raise UsageError(f"--out must end in .html or .gif, not {args.out!r}")
    if args.connections < 1:
        raise UsageError(f"--connections must be at least 1, not {args.connections}")
    film = replay(Run.load(source), max_connections=args.connections)
    print(f"wrote {save_film(film, args.out)}")
    return 0


# -- sweep ---------------------------------------------------------------------------------------

@_command
def _add_sweep(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="every strategy over a grid of conditions",
                                description="Which strategy wins where: every strategy under "
                                            "each condition (connection lifetime, clients, "
                                            "work, one slow worker); a table, heatmaps and "
                                            "the winners per condition.")
    sweep.add_argument("--quick", action="store_true",
                       help="three conditions and fewer connections (about half a minute)")
    sweep.add_argument("--strategies", nargs="+", default=None, metavar="S",
                       choices=tuple(STRATEGIES),
                       help="default: every strategy this machine runs with processes")
    sweep.add_argument("--workers", "-n", type=int, default=4,
                       help="worker processes per run (default: 4)")
    sweep.add_argument("--seconds", type=float, default=None,
                       help="bound on each run's load (default: 1.5, or 0.8 with --quick)")
    sweep.add_argument("--restarts", action="store_true",
                       help="also compare what a graceful restart costs: shared socket, "
                            "reuseport, reuseport with tcp_migrate_req (private network "
                            "namespaces, as root)")
    _add_out_options(sweep, "out/sweep")
    sweep.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run the grid with a progress bar; write sweep.csv, winners.md and the heatmaps."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    from tqdm.auto import tqdm

    from .views import plots
    from .lab.sweep import GRID, QUICK, run_sweep, winners

    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds {args.seconds}: must be more than 0")
    out = OutputDirectory(args.out, "out/sweep", args.force)
    conditions = QUICK if args.quick else GRID
    seconds = args.seconds or (0.8 if args.quick else 1.5)
    with tqdm(total=None, unit="run", desc="sweep") as bar:
        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.set_postfix_str(label)
            bar.update(done - bar.n)

        table = run_sweep(args.strategies, conditions=conditions, workers=args.workers,
                          seconds=seconds, progress=progress, stop=stop)
    for line in table.attrs["skipped"]:
        print(f"skipped {line}")
    table.to_csv(out.path / "sweep.csv", index=False)
    best = winners(table)
    (out.path / "winners.md").write_text(best.to_markdown() + "\n")
    plots.sweep_heatmaps(table).savefig(out.path / "sweep-heatmaps.png", dpi=110)
    meta = {"conditions": [c.name for c in conditions], "seconds": seconds,
            "workers": args.workers, "skipped": table.attrs["skipped"],
            "interrupted": table.attrs["interrupted"]}
    print(_show_table(table.set_index(["strategy", "condition"])))
    print()
    print(best.to_string())
    if args.restarts and not stop.is_set():
        meta["restarts"] = _sweep_restarts(out.path, stop)
    (out.path / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"-> {out.path}/ (sweep.csv, winners.md, sweep-heatmaps.png"
          f"{', restarts.csv, restart-losses.png' if args.restarts else ''})")
    if table.attrs["interrupted"]:
        _say_interrupted(f"kept the {len(table)} cells that completed in {out.path}/")
        return INTERRUPTED
    return 0


def _sweep_restarts(out: Path, stop: threading.Event) -> dict:
    """The restart comparison of ``sweep --restarts``: a table, a figure, and notes."""
    import pandas as pd

    from .views import plots
    from .lab.restarts import restart_losses
    from .lab.sweep import compare_restarts

    runs = compare_restarts(graceful=True)
    losses, notes = {}, {}
    for design, run in runs.items():
        if isinstance(run, str):
            print(f"restarts, {design}: {run}")
            notes[design] = run
            continue
        losses[design] = restart_losses(run.client, run.meta["restarts"])
        notes[design] = f"{len(losses[design])} restarts"
    if losses:
        table = pd.concat(losses, names=["design", "restart"])
        table.to_csv(out / "restarts.csv")
        print("\nwhat each graceful restart cost:")
        print(_show_table(table.groupby(level="design", sort=False)[
            ["refused", "reset", "other_errors", "delayed"]].sum()))
        plots.restart_losses(losses).savefig(out / "restart-losses.png", dpi=110)
    return notes


if __name__ == "__main__":
    sys.exit(main())
