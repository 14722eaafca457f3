"""The kit's main job: run the strategies side by side and write what a learner looks at.

:func:`write_comparison` is what ``acceptlab compare`` and ``make demo`` run:

1. every available strategy, for each kind, with 4 workers and sequential
   connections 1 ms apart (light load: the kernel's wake order, undisturbed);
2. one slow worker among three (requests taking 30/10/10 ms) under a closed
   loop of 12 clients, ``blocking`` against ``reuseport``: the latency tail
   that hashing connections to per-worker queues gives a slow worker.

It writes every run (``runs/<label>/``), a summary table (``summary.csv`` and
``summary.md``) and PNG figures (``strategy-map.png`` first: every strategy by cost and
sharing against its prediction), and returns a :class:`Comparison` naming the
files and holding the tables.  It prints nothing and leaves the matplotlib
backend to its caller (the CLI picks the file-only ``Agg``; a notebook keeps
its inline one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import analysis
from ..lab.experiment import Run, compare
from . import plots
from .strategy_map import strategy_map
from ..server.strategies import STRATEGIES
from ..linux.support import Unavailable, strategy_support

__all__ = ["write_comparison", "summary_table", "Comparison", "SLOW_WORKER"]

SLOW_WORKER = analysis.SLOW_WORKER  # one slow worker among three: defined once, in analysis


def available_strategies(kinds: Sequence[str]) -> list[str]:
    """Strategies that run here for at least one of ``kinds``."""
    support = strategy_support()
    return [name for name in STRATEGIES if any(support[name][kind] is None for kind in kinds)]


COLUMNS = ["accepted", "busiest_share", "jain", "rr_score", "mean_rank", "wakeups_per_accept",
           "returns_per_accept", "eagain_per_accept", "p50_ms", "p99_ms", "reconciled"]


def summary_table(runs: dict[str, Run]):
    """One row per run: accepted, busiest share, fairness, round robin, rank, wakeups, latency.

    ``mean_rank`` is the winner's wake-order rank (0: the longest waiter won,
    1: the most recent one); ``wakeups_per_accept`` the real wakeups (context
    switches) per connection, ``returns_per_accept`` the waits that came back
    to Python, ``eagain_per_accept`` the ones that found nothing to accept.
    """
    table = analysis.summarize_runs(runs)
    table.index.name = "run"
    return table[COLUMNS]


@dataclass
class Comparison:
    """What :func:`write_comparison` produced: the files, and the tables to show a reader."""

    written: list[Path] = field(default_factory=list)
    table: pd.DataFrame | None = None  # one row per strategy/kind (light load)
    slow_worker: pd.DataFrame | None = None  # blocking vs reuseport with one slow worker
    interrupted: bool = False  # stopped early: the files hold the runs that completed


def write_comparison(
    out: Path,
    *,
    strategies: Sequence[str] | None = None,
    kinds: Sequence[str] = ("process", "thread"),
    workers: int = 4,
    connections: int = 200,
    protocol: str = "zen",
    slow_worker: bool = True,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> Comparison:
    """Run the comparison and save runs, tables and figures under ``out``.

    Writing files (not showing them) because this is what ``make demo`` leaves
    for a learner to open, and what the README's figures are made from.

    Args:
        out: the directory to write into (created if missing).
        strategies: default: every strategy this machine runs for one of ``kinds``.
        kinds: worker kinds to compare.
        workers, connections, protocol: for every light-load run.
        slow_worker: also run the one-slow-worker comparison (``SLOW_WORKER``).
        progress: a progress bar over the runs.
        stop: an Event that ends the comparison early; the runs that completed
            (the last one marked interrupted) are still written.

    Returns:
        A :class:`Comparison`: the paths written and the summary tables.
    """
    strategies = list(strategies or available_strategies(kinds))
    support = strategy_support()
    if not any(support[name][kind] is None for name in strategies for kind in kinds):
        raise Unavailable(f"nothing to compare: none of {', '.join(strategies)} runs here "
                          f"with {' or '.join(kinds)} workers (acceptlab doctor says why)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = compare(strategies, kinds, progress=progress, stop=stop, workers=workers,
                   connections=connections, protocol=protocol, gap=0.001)
    result = Comparison(interrupted=_set(stop))
    written = result.written
    for label, run in runs.items():
        written.append(run.save(out / "runs" / label.replace("/", "-")))
    if not runs:
        return result

    table = result.table = summary_table(runs)
    table.to_csv(out / "summary.csv")
    readable = table.astype(object).where(table.notna(), None)  # tabulate's "missing"
    (out / "summary.md").write_text(readable.to_markdown(floatfmt=".2f", missingval="—") + "\n")
    written += [out / "summary.csv", out / "summary.md"]

    written.append(_save(strategy_map(runs), out / "strategy-map.png"))  # the answer, first
    for kind in kinds:
        of_kind = {label.split("/")[0]: (run.events, run.workers)
                   for label, run in runs.items() if run.meta["kind"] == kind}
        if of_kind:
            written.append(_save(plots.compare_strategies(of_kind),
                                 out / f"compare-{kind}.png"))
    written.append(_save(plots.wakeups_by_strategy(table), out / "wakeups-per-connection.png"))

    if slow_worker and "reuseport" in strategies and "process" in kinds and not _set(stop):
        slow = compare(["blocking", "reuseport"], ["process"], progress=progress, stop=stop,
                       protocol=protocol, **SLOW_WORKER)
        for label, run in slow.items():
            written.append(run.save(out / "runs" / ("slowworker-" + label.replace("/", "-"))))
        written.append(_save(plots.latency_cdf({label: run.client for label, run in slow.items()}),
                             out / "slow-worker-latency.png"))
        result.slow_worker = summary_table(slow)
    result.interrupted = _set(stop)
    return result


def _set(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)  # plots make Figure objects without pyplot: nothing to close
    return path

