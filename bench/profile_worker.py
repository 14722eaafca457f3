"""One worker, the kit's or the minimal server's, with its per-connection parts made countable.

    python -m bench.profile_worker kit [--no-record] [--count PART | --time]
    python -m bench.profile_worker minimal [--count PART | --time]

It listens on a free loopback port, prints ``{"port": P, "pids": [its own pid]}``
(the handshake of :class:`bench.servers.ChildServer`) and serves until SIGTERM,
as ONE worker: the kit's through ``process_main`` (the code path of every kit
worker process: its signals, its orphan watchdog, :func:`serve`), the minimal
server's through ``bench.minimal_server.worker``.  Nothing of either is copied
here: the parts are the real functions, wrapped from the outside.

Which functions make up each part is :data:`PARTS`.  Two ways to look at them:

* ``--count PART`` routes that part's functions through ``operator.call``, a
  C function the rest of the program never calls, so that
  ``valgrind --tool=callgrind --toggle-collect=_operator_call`` counts the
  instructions executed inside the part and nothing else (one part per run:
  a part nested in another would switch the count off on its way out).
* ``--time`` wraps every part at once with a clock of this thread's CPU time
  (``time.thread_time_ns``: a preempted worker's clock stands still, so a busy
  machine inflates it far less than wall time).  The wrappers' own cost is
  measured at start-up and subtracted (:class:`CpuTimer`).

SIGUSR2 writes the totals so far (the parts' times, or the calls counted) to
the file named by ``--out``: the driver reads them before and after a measured
run and takes the difference.

Either way the worker does exactly what it does when nothing watches, plus the
wrapping.
"""

from __future__ import annotations

import argparse
import inspect
import json
import operator
import os
import signal
import socket
import sys
import tempfile
import time
from typing import Callable

# Which functions make up each part of a connection's path.  Each entry is
# (owner, attribute): the wrapper replaces owner.attribute.  "kit" parts are
# resolved lazily (the strategy's and the protocol's classes depend on the run).
KIT_PARTS = ("wait", "accept", "conversation", "protocol", "close", "event log", "bookkeeping")
MINIMAL_PARTS = ("accept", "conversation", "close")
PART_NOTES = {
    "wait": "the strategy's wait() around accept (Blocking: the Wakeup, the clock)",
    "accept": "socket.accept(): accept4, the socket object, the peer's address",
    "conversation": "reading and answering, with the socket timeouts (protocol excluded)",
    "protocol": "parsing the request and building the reply",
    "close": "socket.close()",
    "event log": "the Recorder: clocks, getrusage, the record's writes",
    "bookkeeping": "Control (stop, retire, crash injection) and waiter.finished()",
    "loop": "serve()'s own lines: what the parts leave over",
}


def targets(server: str, strategy: str, protocol: str) -> dict[str, list[tuple[object, str]]]:
    """Each part's functions, as (owner, attribute name) pairs."""
    sock = socket.socket
    if server == "minimal":
        return {"accept": [(sock, "accept")], "conversation": [(sock, "recv"), (sock, "sendall")],
                "close": [(sock, "close")]}
    from acceptlab.server import conversation, worker
    from acceptlab.server.protocol import get_protocol
    from acceptlab.server.strategies import STRATEGIES

    waiter = STRATEGIES[strategy]
    return {
        "wait": [(waiter, "wait")],
        "accept": [(sock, "accept")],
        "conversation": [(worker, "converse")],
        "protocol": [(conversation, "split_requests"), (type(get_protocol(protocol)), "answer")],
        "close": [(sock, "close")],
        "event log": [(worker.Recorder, name) for name in ("waiting", "woke", "failed", "served")],
        "bookkeeping": [(worker.Control, name) for name in ("may_wait", "take", "release")]
                       + [(waiter, "finished")],
    }


COUNTED = {"python": 0, "c": 0}  # calls made through operator.call so far, by kind of target


def through_call(function: Callable) -> Callable:
    """``function``, called through ``operator.call`` (callgrind counts inside that C function).

    Calling a Python function from C costs more than calling it from Python
    (a new C-level evaluation of its frame): :func:`calibrate` measures that
    cost per call, and the calls are counted here, by kind, so the driver can
    take it off.
    """
    call = operator.call
    kind = "python" if inspect.isfunction(function) else "c"

    def counted(*args, **kwargs):
        COUNTED[kind] += 1
        return call(function, *args, **kwargs)
    return counted


def calibrate(kind: str, repeat: int) -> None:
    """Call a function that does nothing through operator.call ``repeat`` times (under callgrind:
    the instructions per call are what a wrapped call adds beyond its target's own work)."""
    target = (lambda: None) if kind == "python" else socket.socket().gettimeout
    counted = through_call(target)
    for _ in range(repeat):
        counted()


class CpuTimer:
    """Wraps functions with a clock of this thread's CPU time; totals per part, wrappers' cost off.

    A wrapper reads the clock before and after the call.  What it adds to its
    own reading (``inside``: half of each clock call, the call itself) and
    what it adds to an enclosing part's reading (``whole``: everything) are
    measured once, on a function that does nothing, and subtracted.
    """

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.nested: dict[str, int] = {}  # wrapper calls made inside each part's calls
        self.wrapper_calls = 0
        self.inside_ns = self.whole_ns = 0.0

    def wrap(self, part: str, function: Callable) -> Callable:
        clock = time.thread_time_ns
        self.ns.setdefault(part, 0)
        self.calls.setdefault(part, 0)
        self.nested.setdefault(part, 0)
        timer = self

        def timed(*args, **kwargs):
            timer.wrapper_calls += 1
            before = timer.wrapper_calls
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                timer.ns[part] += clock() - started
                timer.calls[part] += 1
                timer.nested[part] += timer.wrapper_calls - before
        return timed

    def calibrate(self, repeat: int = 20_000) -> None:
        """Measure the wrappers' own cost on a function that does nothing (best of 5)."""
        probe = CpuTimer()
        nothing = probe.wrap("nothing", lambda: None)
        inside, whole = [], []
        for _ in range(5):
            probe.ns["nothing"] = 0
            started = time.thread_time_ns()
            for _ in range(repeat):
                nothing()
            whole.append((time.thread_time_ns() - started) / repeat)
            inside.append(probe.ns["nothing"] / repeat)
        self.inside_ns, self.whole_ns = min(inside), min(whole)

    def totals(self) -> dict:
        """Per part: CPU ns with the wrappers' cost taken off, and the calls."""
        return {part: {"ns": self.ns[part] - self.calls[part] * self.inside_ns
                       - self.nested[part] * self.whole_ns, "calls": self.calls[part]}
                for part in self.ns} | {"_wrapper": {"inside_ns": self.inside_ns,
                                                     "whole_ns": self.whole_ns}}


def wrap_parts(server: str, strategy: str, protocol: str, *, count: str | None,
               timer: CpuTimer | None) -> None:
    """Replace the parts' functions: ``count``'s through operator.call, or all of them timed."""
    if count is None and timer is None:
        return  # nothing watched: the worker as it is
    for part, places in targets(server, strategy, protocol).items():
        if count is not None and part != count:
            continue
        for owner, name in places:
            original = getattr(owner, name)
            wrapped = through_call(original) if count is not None else timer.wrap(part, original)
            setattr(owner, name, wrapped)


def _signals_to_the_main_thread(process) -> None:
    """Start the orphan watchdog with SIGUSR2 blocked, so the kernel delivers it to the main
    thread: Python runs a handler in the main thread only, and only once that thread's
    blocking call returns, which a signal that went to the watchdog would not make it do."""
    start = process._watch_pool

    def watch(pool_pid: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        try:
            start(pool_pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
    process._watch_pool = watch


def main() -> int:
    if sys.argv[1:2] == ["calibrate"]:  # calibrate {python,c} REPEAT
        calibrate(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=("kit", "minimal"))
    parser.add_argument("--no-record", action="store_true", help="kit: event log off")
    parser.add_argument("--strategy", default="blocking")
    parser.add_argument("--protocol", default="http")
    parser.add_argument("--count", help="the part whose functions go through operator.call")
    parser.add_argument("--time", action="store_true", help="time every part (thread CPU)")
    parser.add_argument("--out", help="where SIGUSR2 writes the totals so far (JSON): the parts' "
                                      "times (--time) or the calls counted (--count)")
    args = parser.parse_args()
    parts = KIT_PARTS if args.server == "kit" else MINIMAL_PARTS
    if args.count is not None and args.count not in parts:
        parser.error(f"--count: {args.count!r} is not a part of {args.server}: {parts}")
    timer = CpuTimer() if args.time else None
    if timer is not None:
        timer.calibrate()
    if args.out:
        def report(*_: object) -> None:
            totals = timer.totals() if timer is not None else {"calls": COUNTED}
            with open(args.out + ".tmp", "w") as file:
                json.dump(totals, file)
            os.replace(args.out + ".tmp", args.out)
        signal.signal(signal.SIGUSR2, report)
    wrap_parts(args.server, args.strategy, args.protocol, count=args.count, timer=timer)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(json.dumps({"port": listener.getsockname()[1], "pids": [os.getpid()]}), flush=True)
    if args.server == "minimal":
        from bench.minimal_server import worker

        worker(listener)  # SIGTERM (the default action) ends it
        return 0
    import multiprocessing

    from acceptlab.server import process
    from acceptlab.server.process import process_main
    from acceptlab.server.worker import WorkerSpec
    from acceptlab.specs import Limits

    log_dir = tempfile.mkdtemp(prefix="acceptlab-profile-")
    spec = WorkerSpec(slot=0, generation=0, strategy=args.strategy, protocol=args.protocol,
                      work="none", limits=Limits(), log_dir=log_dir, record=not args.no_record,
                      parent_pid=os.getppid())
    _, ready = multiprocessing.Pipe(duplex=False)
    _signals_to_the_main_thread(process)
    try:
        process_main(listener, spec, ready)  # SIGTERM: SystemExit, as in every kit worker
    finally:
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
