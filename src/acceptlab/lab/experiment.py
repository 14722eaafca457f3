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

``meta`` records the run's specs whole (``meta['pool']``, ``meta['load']``,
``meta['options']``: :mod:`acceptlab.specs`), the machine, and what happened
(port, duration, queue note, replacements, restarts, trace).  ``label``,
``strategy``, ``kind`` and ``workers`` also sit at its top level, where tables
and figures look for a run's name, as in the flat ``meta`` of older runs
(the reference runs in ``data/``); :attr:`Run.pool_spec` and
:attr:`Run.load_spec` read either layout.

Resource handling: the pool, the tracer and the sampler are entered on one
:class:`contextlib.ExitStack`, so an exception or a KeyboardInterrupt (the
notebook's stop button) leaves no worker behind.  A caller that wants to end
a run early *and keep it* (the CLI on Ctrl-C) passes a ``stop`` Event: the
load ends, the pool stops, and the run comes back with
``meta['interrupted'] = True``.

This module sits below :mod:`acceptlab.analysis` in the layers and does not
import it: a :class:`Run` holds tables, analysis reads them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import __version__
from ..server import eventlog
from ..linux.busy import BusySampler, BusyUnavailable
from ..linux.kernel import QUEUE_COLUMNS, QueueSampler, Unsupported
from ..client.load import CLIENT_COLUMNS, CLIENT_NULLABLE, fire
from ..server.pool import WorkerPool
from .restarts import RollingRestart
from ..server.strategies import STRATEGIES
from ..specs import RENAMED, LoadSpec, PoolSpec, RunOptions, build_specs

__all__ = ["Run", "run_experiment", "compare", "machine"]

# Each table's columns, and those that are integers with gaps: read_csv must parse these
# as Int64 itself (reading them as float first would round nanosecond times past 2**53).
_TABLES = {
    "events": (eventlog.COLUMNS, eventlog.NULLABLE),
    "client": (CLIENT_COLUMNS, CLIENT_NULLABLE),
    "queue": (QUEUE_COLUMNS, ("backlog",)),
}


# The pool's parameters an older run recorded flat in its meta (beside the port it was given,
# which is not what it asked for).
_FLAT_POOL = ("workers", "kind", "threads", "strategy", "protocol", "work", "start_method",
              "backlog")


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
        if "pool" in self.meta:
            return PoolSpec.from_dict(self.meta["pool"]).slots
        threads = int(self.meta.get("threads") or 1) if self.meta.get("kind") == "hybrid" else 1
        return int(self.meta["workers"]) * threads

    @property
    def pool_spec(self) -> PoolSpec | None:
        """The pool the run had, from ``meta['pool']`` or an older run's flat ``meta``.

        None for a run the kit did not serve (``acceptlab observe`` of a real server).
        """
        if "pool" in self.meta:
            return PoolSpec.from_dict(self.meta["pool"])
        if self.meta.get("observed") or "strategy" not in self.meta:
            return None
        flat = {key: self.meta[key] for key in _FLAT_POOL if key in self.meta}
        limits = {key: self.meta[key] for key in ("max_request", "idle_timeout") if key in self.meta}
        return PoolSpec.from_dict({**flat, "limits": limits})

    @property
    def load_spec(self) -> LoadSpec:
        """The load the run fired, from ``meta['load']`` or an older run's flat ``meta``."""
        if "load" in self.meta:
            return LoadSpec.from_dict(self.meta["load"])
        flat = {RENAMED.get(key, key): value for key, value in self.meta.items()}
        return LoadSpec.from_dict(flat)

    @property
    def options(self) -> RunOptions:
        """How the run was carried out (label, queue sampling, tracing, restarts)."""
        return RunOptions.from_dict(self.meta.get("options", self.meta))

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


def run_experiment(pool: PoolSpec | None = None, load: LoadSpec | None = None, *,
                   options: RunOptions | None = None, **shortcuts: Any) -> Run:
    """Start a :class:`~acceptlab.server.pool.WorkerPool`, fire a load at it, stop it, return a :class:`Run`.

    One call is one experiment because the three parts only mean something
    together: the events name the workers, the client rows name the
    connections, and ``meta`` records the specs whole, so the run can be made
    again (``acceptlab rerun``).  A load with a ``rate`` and no ``seed`` draws
    a seed and records it.  The pool, the sampler and the tracer are stopped
    whatever happens.

    ``run_experiment(workers=4, gap=0.001)`` and
    ``run_experiment(PoolSpec(workers=4), LoadSpec(gap=0.001))`` make the same
    run: keywords are shortcuts for the fields of the three specs
    (:func:`acceptlab.specs.build_specs`).

    Args:
        pool: the server (:class:`~acceptlab.specs.PoolSpec`).
        load: the client (:class:`~acceptlab.specs.LoadSpec`; by default it
            speaks the pool's protocol).
        options: label, queue sampling, tracing, rolling restarts, progress bar
            and stop Event (:class:`~acceptlab.specs.RunOptions`).  A stop Event
            that is set ends the run early: the load stops starting
            connections, the pool stops, and the run holds what completed,
            with ``meta['interrupted']`` true.
        **shortcuts: fields of any of the three specs, replacing theirs.

    Returns:
        A :class:`Run` with ``events``, ``client``, ``queue`` and ``meta``
        (and ``trace``, when ``options.trace`` could be honoured).
    """
    pool, load, options = build_specs(pool, load, options, **shortcuts)
    if load.rate is not None and load.seed is None:  # an open loop repeats only with its seed
        load = replace(load, seed=random.SystemRandom().randrange(2**31))
    label = options.label or pool.label
    started = time.time()
    with contextlib.ExitStack() as running:
        workers = running.enter_context(WorkerPool(pool, label=label))  # stopped last
        tracer, trace_note = _start_tracer(workers, running) if options.trace else (None, "")
        sampler, queue_note = (_start_sampler(workers, options.queue_interval, running)
                               if options.sample_queue else (None, "not sampled"))
        if options.restart_every:
            restarts = running.enter_context(
                RollingRestart(workers, every=options.restart_every, graceful=options.graceful))
        crowd = _crowd_meter()  # how much of the machine other work took while the load ran
        client = fire(workers.address, load, options=options)
        busy = crowd.stop().as_meta() if crowd is not None else {"machine_busy": None}
    queue = sampler.to_frame() if sampler is not None else pd.DataFrame(columns=QUEUE_COLUMNS)
    meta = {**machine(), "label": label, "strategy": pool.strategy, "kind": pool.kind,
            "workers": pool.workers,
            "pool": workers.spec.as_dict(), "load": load.as_dict(), "options": options.as_dict(),
            "port": workers.address[1], "started": started, "seconds": time.time() - started,
            "queue": queue_note, "replacements": len(workers.replacements),
            "interrupted": options.stop is not None and options.stop.is_set(), **busy}
    if options.restart_every:
        meta["restarts"] = restarts.as_records()
    if options.trace:
        meta["trace"] = trace_note
        if tracer is not None:
            meta.update(trace_lost=tracer.lost, trace_tids=tracer.tids)
    return Run(workers.events(), client, queue, meta, tracer.table if tracer is not None else None)


def _crowd_meter() -> BusySampler | None:
    """Start measuring the cores other work uses (``meta['machine_busy']``); None off Linux.

    The run's own processes are this one and everything below it: the pool's
    workers and the client processes.  Another pool of the same notebook
    kernel counts as the run's own, not as other work.
    """
    try:
        return BusySampler().start()
    except BusyUnavailable:
        return None


def _start_tracer(pool: WorkerPool, running: contextlib.ExitStack):
    """Trace the kernel's account of ``pool`` (after start: its workers' ids are known).

    Returns the tracer (None when tracing is unavailable) and ``meta['trace']``'s note;
    ``running`` stops the tracer (reads its buffer, removes the instance) before the pool.
    """
    from ..linux.tracing import trace_pool

    tracer, note = trace_pool(pool)
    if tracer is not None:
        running.callback(tracer.stop)
    return tracer, note


def _start_sampler(pool: WorkerPool, interval: float,
                   running: contextlib.ExitStack) -> tuple[QueueSampler | None, str]:
    """Sample the shared socket, or for ``reuseport`` every worker's own socket by port."""
    try:
        if STRATEGIES[pool.strategy].own_socket:  # one queue per worker: find them by port
            sampler = QueueSampler(port=pool.address[1], interval=interval)
        else:
            sampler = QueueSampler(sockets=[pool.listening_socket], interval=interval)
        running.callback(sampler.stop)
        return sampler.start(), "sampled"
    except Unsupported as exc:
        return None, f"unavailable: {exc}"


def compare(
    strategies: Iterable[str] = ("blocking", "poll", "epoll-exclusive", "reuseport"),
    kinds: Iterable[str] = ("process",),
    *,
    pool: PoolSpec | None = None,
    load: LoadSpec | None = None,
    loads: Iterable[LoadSpec | Mapping[str, Any]] = ({},),
    options: RunOptions | None = None,
    **shortcuts: Any,
) -> dict[str, Run]:
    """Run every strategy x kind x load and return the runs by label (``strategy/kind[/load]``).

    A grid, because a lesson's question is nearly always "which of these
    behaves how": the runs come back together, keyed by a readable label.
    Each cell's specs are the base specs with the cell's strategy, kind and
    load replaced (:func:`dataclasses.replace`).  Combinations the platform or
    kind cannot run (``shared-epoll`` with processes, say) are skipped, and
    listed in every run's ``meta['skipped_in_comparison']``.

    Args:
        strategies: strategy names (:data:`acceptlab.registry.STRATEGY_RECORDS`).
        kinds: ``'process'``, ``'thread'``, ...
        pool, load: the base specs every cell starts from.
        loads: one column of the grid each: a :class:`~acceptlab.specs.LoadSpec`,
            or shortcuts applied to the base specs (e.g.
            ``[{"connections": 200}, {"concurrency": 8}]``).
        options: as for :func:`run_experiment`, except that ``progress`` shows
            one bar over the runs and ``stop`` also keeps further runs from
            starting (the run in progress is kept, interrupted).
        **shortcuts: fields of the specs, for every cell.
    """
    from ..linux.support import Unavailable, check_strategy

    pool, load, options = build_specs(pool, load, options, caller="compare", **shortcuts)
    columns = list(loads)
    grid = list(itertools.product(strategies, kinds, columns))
    runs: dict[str, Run] = {}
    skipped: list[str] = []
    stop = options.stop
    with contextlib.ExitStack() as bars:
        bar = None
        if options.progress:
            from tqdm.auto import tqdm

            bar = bars.enter_context(tqdm(total=len(grid), unit="run", desc="experiments"))
        for strategy, kind, column in grid:
            if stop is not None and stop.is_set():
                break
            name = "/".join([strategy, kind] + ([_describe(column)] if len(columns) > 1 else []))
            try:
                check_strategy(strategy, kind)
            except Unavailable as exc:
                skipped.append(f"{name}: {exc}")
            else:
                cell = replace(pool, strategy=strategy, kind=kind)
                given = column if isinstance(column, Mapping) else {}
                cell, cell_load, _ = build_specs(
                    cell, column if isinstance(column, LoadSpec) else load, caller="compare",
                    **given)
                runs[name] = run_experiment(cell, cell_load,
                                            options=replace(options, label=name, progress=False))
            if bar is not None:
                bar.update()
    for run in runs.values():
        run.meta["skipped_in_comparison"] = skipped
    return runs


def _describe(load: LoadSpec | Mapping[str, Any]) -> str:
    """A short label for a grid column: ``{'concurrency': 8}`` -> ``'concurrency=8'``."""
    if isinstance(load, LoadSpec):
        changed = {key: value for key, value in load.as_dict().items()
                   if value != getattr(LoadSpec(), key)}
        return ",".join(f"{key}={value}" for key, value in sorted(changed.items())) or "load"
    return ",".join(f"{key}={value}" for key, value in sorted(load.items()))
