"""One call per experiment: start the workers, fire the load, stop everything, keep the data.

:func:`run_experiment` returns a :class:`Run`: three DataFrames (``events``
from the workers, ``client`` from the load generator, ``queue`` from the
accept-queue sampler) and ``meta``, a dict saying how the run was made and on
what machine; with ``trace=True`` (root, Linux) a fourth table, ``trace``, the
kernel's own account (see :mod:`acceptlab.linux.tracing`).  :meth:`Run.save` /
:meth:`Run.load` write and read the kit's format (``events.csv``,
``client.csv``, ``queue.csv``, ``meta.json``, and ``trace.csv`` when there is
a trace; every column is described in ``data/README.md``).  :func:`compare` runs a grid of
experiments and returns them together.

Resource handling: the pool and the sampler are stopped in ``finally``
blocks, so an exception or a KeyboardInterrupt (the notebook's stop button)
leaves no worker behind.  A caller that wants to end a run early *and keep
it* (the CLI on Ctrl-C) passes ``stop``, an Event: the load ends, the pool
stops, and the run comes back with ``meta['interrupted'] = True``.

This module sits below :mod:`acceptlab.views.analysis` in the layers and does not
import it: a :class:`Run` holds tables, analysis reads them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .. import __version__
from ..server import eventlog
from ..server.conversation import Limits
from ..linux.kernel import QUEUE_COLUMNS, QueueSampler, Unsupported
from ..client.load import CLIENT_COLUMNS, CLIENT_NULLABLE, fire
from ..server.pool import WorkerPool
from .restarts import RollingRestart
from ..server.strategies import STRATEGIES

__all__ = ["Run", "run_experiment", "compare", "machine"]

# Each table's columns, and those that are integers with gaps: read_csv must parse these
# as Int64 itself (reading them as float first would round nanosecond times past 2**53).
_TABLES = {
    "events": (eventlog.COLUMNS, eventlog.NULLABLE),
    "client": (CLIENT_COLUMNS, CLIENT_NULLABLE),
    "queue": (QUEUE_COLUMNS, ("backlog",)),
}


@dataclass
class Run:
    """What one experiment produced: ``events``, ``client`` and ``queue`` tables, and ``meta``."""

    events: pd.DataFrame
    client: pd.DataFrame
    queue: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUEUE_COLUMNS))
    meta: dict = field(default_factory=dict)
    trace: pd.DataFrame | None = None  # the kernel's account (acceptlab.linux.tracing), if recorded

    @property
    def label(self) -> str:
        """A short name: ``'blocking/process'`` unless the run was given a label."""
        return self.meta.get("label") or f"{self.meta.get('strategy')}/{self.meta.get('kind')}"

    @property
    def workers(self) -> int:
        """How many worker slots the run had: one per thread of a hybrid pool's processes."""
        threads = int(self.meta.get("threads") or 1) if self.meta.get("kind") == "hybrid" else 1
        return int(self.meta["workers"]) * threads

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the run as CSV files plus ``meta.json`` into ``directory``; return it."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.events.to_csv(path / "events.csv", index=False)
        self.client.to_csv(path / "client.csv", index=False)
        self.queue.to_csv(path / "queue.csv", index=False)
        if self.trace is not None:  # trace hook (acceptlab.linux.tracing)
            self.trace.to_csv(path / "trace.csv", index=False)
        (path / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Run":
        """Read a run written by :meth:`save` (or shipped in ``data/``)."""
        path = Path(directory)
        tables = {}
        for name, (columns, nullable) in _TABLES.items():
            file = path / f"{name}.csv"
            tables[name] = (pd.read_csv(file, dtype={column: "Int64" for column in nullable})
                            if file.exists() and file.stat().st_size else
                            pd.DataFrame(columns=list(columns)))
        if "outcome" in tables["events"]:
            tables["events"]["outcome"] = tables["events"]["outcome"].astype(str)
        if "error" in tables["client"]:  # an empty cell is "no error", as in a live run
            tables["client"]["error"] = tables["client"]["error"].astype(object).fillna("").astype(str)
        meta = json.loads((path / "meta.json").read_text())
        return cls(tables["events"], tables["client"], tables["queue"], meta, _load_trace(path))

    @property
    def interrupted(self) -> bool:
        """Was the run stopped early (Ctrl-C), so that its tables hold only what completed?"""
        return bool(self.meta.get("interrupted", False))

    def __repr__(self) -> str:
        accepted = int((self.events["outcome"] == "accepted").sum()) if len(self.events) else 0
        return (f"<Run {self.label}{' (interrupted)' if self.interrupted else ''}: "
                f"{accepted} accepted, "
                f"{int(self.client['ok'].sum()) if len(self.client) else 0}/{len(self.client)} "
                f"client ok, {len(self.queue)} queue samples>")


def _load_trace(path: Path) -> pd.DataFrame | None:
    """The run's ``trace.csv`` (trace hook, see :mod:`acceptlab.linux.tracing`), or None without one."""
    from ..linux.tracing import TRACE_COLUMNS, TRACE_NULLABLE

    file = path / "trace.csv"
    if not file.exists():
        return None
    if not file.stat().st_size:
        return pd.DataFrame(columns=list(TRACE_COLUMNS))
    trace = pd.read_csv(file, dtype={column: "Int64" for column in TRACE_NULLABLE})
    for name in ("state", "old_state"):  # an empty cell is "not this kind of event"
        trace[name] = trace[name].astype(object).fillna("").astype(str)
    return trace


def machine() -> dict:
    """Facts about this machine worth keeping beside any measurement made on it."""
    return {
        "acceptlab": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "system": platform.platform(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }


def run_experiment(
    *,
    workers: int = 4,
    kind: str = "process",
    strategy: str = "blocking",
    protocol: str = "zen",
    work: str | Sequence[str] = "none",
    connections: int = 200,
    concurrency: int = 1,
    rate: float | None = None,
    client_processes: int = 1,
    gap: float = 0.0,
    duration: float = 60.0,
    retries: int = 0,
    start_method: str | None = None,
    backlog: int = 128,
    limits: Limits = Limits(),
    sample_queue: bool = False,
    queue_interval: float = 0.002,
    label: str | None = None,
    progress: bool = False,
    trace: bool = False,
    stop: threading.Event | None = None,
    threads: int = 1,
    restart_every: float | None = None,
    graceful: bool = True,
) -> Run:
    """Start a :class:`~acceptlab.server.pool.WorkerPool`, fire a load at it, stop it, return a :class:`Run`.

    One call is one experiment because the three parts only mean something
    together: the events name the workers, the client rows name the
    connections, and ``meta`` records everything needed to make the run
    again.  The pool and the sampler are stopped whatever happens.

    Args:
        workers, kind, strategy, protocol, work, start_method, backlog, limits:
            the pool, as :class:`~acceptlab.server.pool.WorkerPool` takes them.
        connections, concurrency, rate, gap, duration, retries: the load, as
            :func:`~acceptlab.client.load.fire` takes them.
        client_processes: client processes firing the load (``fire``'s
            ``processes``).
        sample_queue: read the accept-queue depth every ``queue_interval``
            seconds (Linux only; elsewhere ``meta['queue']`` says why it is
            missing).
        label: the run's name in tables and figures (default
            ``'strategy/kind'``).
        progress: show a progress bar while the load runs.
        trace: record the kernel's wakeups and TCP state changes into
            ``Run.trace`` (root and tracefs only; elsewhere a
            :class:`~acceptlab.linux.tracing.TracingUnavailableWarning` and
            ``meta['trace']`` say why, and the run goes on untraced).
        stop: an Event that ends the run early when set (the CLI sets it on
            Ctrl-C): the load stops starting connections, the pool stops, and
            the run holds what completed, with ``meta['interrupted']`` true.
        threads: threads per worker process for ``kind='hybrid'``.
        restart_every: restart one worker after another every this many
            seconds while the load runs (:class:`~acceptlab.lab.restarts.RollingRestart`);
            ``meta['restarts']`` lists them, and
            :func:`~acceptlab.lab.restarts.restart_losses` counts what each cost.
        graceful: restart by asking the worker to finish and leave (True) or
            by killing it (False).

    Returns:
        A :class:`Run` with ``events``, ``client``, ``queue`` and ``meta``.
    """
    parameters = {key: value for key, value in locals().items()
                  if key not in ("limits", "stop")}
    parameters.update(max_request=limits.max_request, idle_timeout=limits.idle_timeout)
    pool = WorkerPool(workers=workers, kind=kind, strategy=strategy, protocol=protocol,
                      work=work, start_method=start_method, backlog=backlog, limits=limits,
                      label=label or f"{strategy}/{kind}", threads=threads)
    restarts = RollingRestart(pool, every=restart_every, graceful=graceful) if restart_every else None
    sampler: QueueSampler | None = None
    tracer, trace_note = None, "not traced"  # trace hook
    queue_note = "not sampled"
    started = time.time()
    try:
        pool.start()
        if trace:  # trace hook: after start (the workers' ids are known), before the load
            from ..linux.tracing import trace_pool

            tracer, trace_note = trace_pool(pool)
        if sample_queue:
            sampler, queue_note = _start_sampler(pool, queue_interval)
        with restarts or contextlib.nullcontext():
            client = fire(pool.address, protocol=protocol, connections=connections,
                          concurrency=concurrency, rate=rate, processes=client_processes,
                          duration=duration, gap=gap, retries=retries, progress=progress,
                          stop=stop)
    finally:
        try:
            if sampler is not None:
                sampler.stop()
        finally:
            try:
                if tracer is not None:  # trace hook: reads the buffer, removes the instance
                    tracer.stop()
            finally:
                pool.stop()  # whatever happened above, no worker is left behind
    queue = sampler.to_frame() if sampler is not None else pd.DataFrame(columns=QUEUE_COLUMNS)
    meta = {**machine(), **parameters, "start_method": pool.start_method,
            "port": pool.address[1], "started": started, "seconds": time.time() - started,
            "queue": queue_note, "replacements": len(pool.replacements),
            "interrupted": stop is not None and stop.is_set()}
    if restarts is not None:
        meta["restarts"] = restarts.as_records()
    if tracer is not None:  # trace hook
        meta.update(trace=trace_note, trace_lost=tracer.lost, trace_tids=tracer.tids)
    elif trace:
        meta["trace"] = trace_note
    return Run(pool.events(), client, queue, meta, tracer.table if tracer is not None else None)


def _start_sampler(pool: WorkerPool, interval: float) -> tuple[QueueSampler | None, str]:
    """Sample the shared socket, or for ``reuseport`` every worker's own socket by port."""
    try:
        if STRATEGIES[pool.strategy].own_socket:  # one queue per worker: find them by port
            sampler = QueueSampler(port=pool.address[1], interval=interval)
        else:
            sampler = QueueSampler(sockets=[pool.listening_socket], interval=interval)
        return sampler.start(), "sampled"
    except Unsupported as exc:
        return None, f"unavailable: {exc}"


def compare(
    strategies: Iterable[str] = ("blocking", "poll", "epoll-exclusive", "reuseport"),
    kinds: Iterable[str] = ("process",),
    *,
    loads: Iterable[dict] = ({},),
    progress: bool = False,
    stop: threading.Event | None = None,
    **common: object,
) -> dict[str, Run]:
    """Run every strategy x kind x load and return the runs by label (``strategy/kind[/load]``).

    A grid, because a lesson's question is nearly always "which of these
    behaves how": the runs come back together, keyed by a readable label.
    Combinations the platform or kind cannot run (``shared-epoll`` with
    processes, say) are skipped, and listed in every run's
    ``meta['skipped_in_comparison']``.

    Args:
        strategies: strategy names (see :mod:`acceptlab.server.strategies`).
        kinds: ``'process'``, ``'thread'``, ...
        loads: keyword sets for :func:`run_experiment`, one column of the grid
            each (e.g. ``[{"connections": 200}, {"concurrency": 8}]``).
        progress: one progress bar over the runs.
        stop: an Event that ends the comparison early: the run in progress is
            kept (interrupted), no further run starts.
        **common: keywords for every :func:`run_experiment` call.
    """
    from ..linux.support import Unavailable, check_strategy

    loads = list(loads)
    grid = list(itertools.product(strategies, kinds, loads))
    runs: dict[str, Run] = {}
    skipped: list[str] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(grid), unit="run", desc="experiments")
    try:
        for strategy, kind, load in grid:
            if stop is not None and stop.is_set():
                break
            name = "/".join([strategy, kind] + ([_describe(load)] if len(loads) > 1 else []))
            try:
                check_strategy(strategy, kind)
            except Unavailable as exc:
                skipped.append(f"{name}: {exc}")
            else:
                runs[name] = run_experiment(strategy=strategy, kind=kind, label=name, stop=stop,
                                            **{**common, **load})
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    for run in runs.values():
        run.meta["skipped_in_comparison"] = skipped
    return runs


def _describe(load: dict) -> str:
    """A short label for a load's keywords: ``{'concurrency': 8}`` -> ``'concurrency=8'``."""
    return ",".join(f"{key}={value}" for key, value in sorted(load.items()))
