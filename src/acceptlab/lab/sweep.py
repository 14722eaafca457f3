"""Which strategy wins where: every strategy over a grid of conditions, one table.

Each fix the ecosystem invented for uneven accept distribution was measured,
if at all, on its inventor's own benchmark.  :func:`run_sweep` puts them under
one harness: every strategy this machine supports, under each
:class:`Condition` (how long a connection lives, how many clients, what the
work costs, whether one worker is slow), and for each cell the numbers that
decide "best": how fair the split was, how long the tail, how many
connections per second, and how much CPU each connection cost the server.

The grid is small on purpose.  Every cell is one short run bounded by
``seconds`` and a connection count, so the default grid finishes in about
three minutes on two cores and :data:`QUICK` in about half a minute.  Numbers
from one short run are noisy: the sweep shows which strategy is far better or
worse, not which is 5 % better (``bench/`` does that, in alternating rounds).

CPU per connection is the workers' CPU time (user + system), read with
``getrusage(RUSAGE_CHILDREN)`` around each run: the worker processes are this
process's children and are reaped by :meth:`WorkerPool.stop`, and the client
runs in this process's threads, so it is not counted.  That is why the sweep
uses process workers started with ``fork`` (a forkserver's children are not
ours to count).
"""

from __future__ import annotations

import math
import resource
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .. import analysis
from .experiment import Run, run_experiment
from ..linux.support import Unavailable, check_strategy
from ..registry import STRATEGY_RECORDS
from ..specs import LoadSpec, PoolSpec, RunOptions, build_specs

__all__ = ["Condition", "GRID", "QUICK", "METRICS", "run_sweep", "winners"]


@dataclass(frozen=True)
class Condition:
    """One column of the grid: a load and a work model, named for what it stresses.

    Args:
        name: short label for tables and heatmaps.
        question: what this condition asks, in one line.
        load: fields of the specs, as shortcuts of
            :func:`acceptlab.lab.experiment.run_experiment` (protocol,
            connections, concurrency, work, ...).
    """

    name: str
    question: str
    load: dict = field(default_factory=dict)


GRID: tuple[Condition, ...] = (
    Condition("few-short", "one request per connection, 2 clients: does anyone but one worker serve?",
              dict(protocol="http", concurrency=2, connections=1500)),
    Condition("many-short", "one request per connection, 32 clients: the herd and the queue",
              dict(protocol="http", concurrency=32, connections=3000)),
    Condition("keepalive", "three requests per connection, 1 ms each: I/O-bound work",
              dict(protocol="zen", concurrency=8, connections=1200, work="sleep:1")),
    Condition("long-lived", "a few connections that each take 30 ms: do they spread out?",
              dict(protocol="zen", concurrency=6, connections=240, work="sleep:10")),
    Condition("cpu-bound", "CPU-bound work (2 ms per request), 8 clients",
              dict(protocol="zen", concurrency=8, connections=400, work="spin:2")),
    Condition("slow-worker", "one worker 4x slower than the rest, 12 clients: who pays?",
              dict(protocol="zen", concurrency=12, connections=600,
                   work=["sleep:8", "sleep:2", "sleep:2", "sleep:2"])),
)
"""The default grid (about three minutes on two cores)."""

QUICK: tuple[Condition, ...] = (
    Condition("few-short", GRID[0].question, dict(GRID[0].load, connections=400)),
    Condition("many-short", GRID[1].question, dict(GRID[1].load, connections=800)),
    Condition("slow-worker", GRID[5].question, dict(GRID[5].load, connections=200)),
)
"""Three conditions with fewer connections, for a notebook (about half a minute)."""

METRICS: dict[str, tuple[str, bool]] = {
    # column: (what it is, True if higher is better)
    "busiest_share": ("the busiest worker's share of connections", False),
    "jain": ("Jain's fairness index (1 = perfectly even)", True),
    "p50_ms": ("median latency, ms", False),
    "p99_ms": ("99th-percentile latency, ms", False),
    "max_ms": ("worst latency, ms", False),
    "conn_per_s": ("connections per second", True),
    "cpu_us_per_conn": ("server CPU per connection, µs", False),
}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cell(run: Run, cpu_seconds: float) -> dict[str, Any]:
    """The metrics of one run, as one flat row."""
    summary = analysis.summary(run.events, run.client, run.workers)
    times = analysis.latency(run.client).iloc[0]
    ok = run.client[run.client["ok"].astype(bool)]
    span_ns = (ok["t_done_ns"].max() - ok["t_start_ns"].min()) if len(ok) else 0
    accepted = summary["accepted"] or 0
    return {
        "accepted": accepted,
        "client_ok": len(ok),
        "errors": int((~run.client["ok"].astype(bool)).sum()),
        "busiest_share": summary["busiest_share"],
        "jain": summary["jain"],
        "p50_ms": float(times["p50_ms"]),
        "p99_ms": float(times["p99_ms"]),
        "max_ms": float(times["max_ms"]),
        "conn_per_s": len(ok) / (float(span_ns) / 1e9) if span_ns else math.nan,
        "cpu_us_per_conn": cpu_seconds / accepted * 1e6 if accepted else math.nan,
    }


def run_sweep(
    strategies: Iterable[str] | None = None,
    *,
    conditions: Sequence[Condition] = GRID,
    pool: PoolSpec | None = None,
    seconds: float = 1.5,
    progress: Callable[[int, int, str], None] | None = None,
    stop: threading.Event | None = None,
    **shortcuts: Any,
) -> pd.DataFrame:
    """Run every strategy under every condition; return one row per cell.

    Args:
        strategies: names from :data:`acceptlab.server.strategies.STRATEGIES`; None
            means every one that runs with process workers here.  One that
            cannot run here is left out and named in the table's
            ``attrs['skipped']``.
        conditions: the grid's columns (:data:`GRID`, :data:`QUICK`, or your own).
        pool: the pool every cell starts from (default: 4 process workers;
            each cell sets its strategy, ``kind='process'`` and
            ``start_method='fork'``, and its condition's fields).  The
            slow-worker condition's work list gives each slot its own service
            time, cycling if shorter.
        seconds: the bound on each run's load; a cell ends at its connection
            count or after this long, whichever comes first.
        progress: called as ``progress(done, total, label)`` after each cell
            (the CLI passes a tqdm bar's update; the library prints nothing).
        stop: an Event that ends the sweep early (Ctrl-C in the CLI): the cell
            under way keeps what completed, no further cell starts, and the
            table's ``attrs['interrupted']`` is True.
        **shortcuts: fields of :class:`~acceptlab.specs.PoolSpec` (``workers=4``)
            replacing those of ``pool``.

    Returns:
        A DataFrame with columns ``strategy``, ``condition`` and the
        :data:`METRICS` (plus ``accepted``, ``client_ok``, ``errors``).
    """
    base, _, _ = build_specs(pool, caller="run_sweep", only=(PoolSpec,), **shortcuts)
    base = replace(base, kind="process", start_method="fork")  # see the module docstring
    names = list(STRATEGY_RECORDS) if strategies is None else list(strategies)
    runnable, skipped = [], []
    for name in names:
        try:
            check_strategy(name, "process")
        except Unavailable as exc:
            skipped.append(f"{name}: {exc}")
        else:
            runnable.append(name)
    cells = [(name, condition) for condition in conditions for name in runnable]
    rows = []
    for done, (name, condition) in enumerate(cells, start=1):
        if stop is not None and stop.is_set():
            break
        before = _children_cpu_seconds()
        run = run_experiment(replace(base, strategy=name), LoadSpec(duration=seconds),
                             options=RunOptions(label=f"{name}/{condition.name}", stop=stop),
                             **condition.load)
        rows.append({"strategy": name, "condition": condition.name,
                     **_cell(run, _children_cpu_seconds() - before)})
        if progress is not None:
            progress(done, len(cells), f"{name} / {condition.name}")
    table = pd.DataFrame(rows, columns=["strategy", "condition", "accepted", "client_ok",
                                        "errors", *METRICS])
    table.attrs["skipped"] = skipped
    table.attrs["interrupted"] = stop is not None and stop.is_set()
    return table


def winners(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition: the fairest strategy, the shortest tail, and the cheapest.

    "Fairest" is the highest Jain index, "best tail" the lowest p99 latency,
    "cheapest" the least server CPU per connection.  Ties go to the first in
    the table's order.  Cells that served nothing are ignored.
    """
    def best(cells: pd.DataFrame, column: str, highest: bool) -> str:
        values = cells[column]
        if not values.notna().any():
            return "—"
        return cells.loc[values.idxmax() if highest else values.idxmin(), "strategy"]

    rows = {}
    for condition, cells in table.groupby("condition", sort=False):
        served = cells[cells["client_ok"] > 0]
        rows[condition] = {"fairest": best(served, "jain", highest=True),
                           "best tail (p99)": best(served, "p99_ms", highest=False),
                           "cheapest (CPU/conn)": best(served, "cpu_us_per_conn", highest=False)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "condition"
    return frame


# --------------------------------------------------------------------------- what a restart costs

RESTART_DESIGNS: dict[str, tuple[str, int | None]] = {
    # design: (strategy, net.ipv4.tcp_migrate_req in its namespace; None: not relevant)
    "shared socket": ("blocking", None),
    "reuseport": ("reuseport", 0),
    "reuseport + migrate": ("reuseport", 1),
}
MIGRATE = "net.ipv4.tcp_migrate_req"


def _restart_run(pool: PoolSpec, load: LoadSpec, options: RunOptions) -> Run:
    """One load with rolling restarts (module-level: it may run in a forked namespace child)."""
    return run_experiment(pool, load, options=options)


def compare_restarts(
    *,
    graceful: bool = True,
    every: float = 0.4,
    seconds: float = 3.0,
    workers: int = 4,
    concurrency: int = 16,
    work: str = "sleep:2",
    isolate: bool = True,
) -> dict[str, Run | str]:
    """The same load with rolling restarts, for each of :data:`RESTART_DESIGNS`.

    ``tcp_migrate_req`` belongs to a network namespace, so each design runs in
    a private namespace of its own with the setting it needs
    (:func:`acceptlab.linux.netns.run_isolated`); the host's setting is never
    changed.  Without the privilege to make namespaces, the designs that do
    not need a setting different from the host's run here, and the others
    map to a one-line reason instead of a Run.

    Args:
        graceful: restart by asking (True) or by killing (False).
        every: seconds between restarts.
        seconds: how long each load lasts (bounded; about seconds/every restarts).
        workers, concurrency, work: the pool and the closed-loop load. The
            default keeps every worker busy, so each accept queue holds
            connections when its worker goes: the case that can lose them.
        isolate: False runs everything on the host (tests that are not root).

    Returns:
        ``{design: Run}``; a Run's ``meta['restarts']`` lists the restarts and
        :func:`acceptlab.lab.restarts.restart_losses` counts what each cost.
    """
    from ..linux.netns import NoPrivilege, read_sysctl, run_isolated

    pool = PoolSpec(workers=workers, kind="process", start_method="fork", work=work)
    load = LoadSpec(concurrency=concurrency, duration=seconds, connections=10**6)
    host = read_sysctl(MIGRATE)
    results: dict[str, Run | str] = {}
    for design, (strategy, migrate) in RESTART_DESIGNS.items():
        label = f"{design} ({'graceful' if graceful else 'killed'})"
        specs = (replace(pool, strategy=strategy), load,
                 RunOptions(label=label, restart_every=every, graceful=graceful))
        sysctls = {} if migrate is None or host is None else {MIGRATE: migrate}
        try:
            if isolate:
                run = run_isolated(_restart_run, *specs, sysctls=sysctls, timeout=seconds + 60)
            elif migrate is not None and str(migrate) != host:
                raise NoPrivilege(f"{MIGRATE} is {host} on this host, and this design needs "
                                  f"{migrate}: it needs a private network namespace (root)")
            else:
                run = _restart_run(*specs)
        except NoPrivilege as exc:
            if isolate and (migrate is None or str(migrate) == host):
                run = _restart_run(*specs)  # the host already has what it needs
            else:
                results[design] = str(exc)
                continue
        run.meta[MIGRATE] = migrate if migrate is not None else host
        results[design] = run
    return results
