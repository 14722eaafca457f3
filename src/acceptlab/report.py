"""The kit's main job: run the strategies side by side and write what a learner looks at.

:func:`write_comparison` is what ``acceptlab compare`` and ``make demo`` run:

1. every available strategy, for each kind, with 4 workers and sequential
   connections 1 ms apart (light load: the kernel's wake order, undisturbed);
2. one slow worker among three (requests taking 30/10/10 ms) under a closed
   loop of 12 clients, ``blocking`` against ``reuseport``: the latency tail
   that hashing connections to per-worker queues gives a slow worker.

It writes every run (``runs/<label>/``), a summary table (``summary.csv`` and
``summary.md``) and PNG figures, and returns the paths it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no window, works headless

from . import analysis, plots  # noqa: E402
from .experiment import Run, compare  # noqa: E402
from .strategies import STRATEGIES  # noqa: E402
from .support import Unavailable, strategy_support  # noqa: E402

__all__ = ["write_comparison", "summary_table", "SLOW_WORKER"]

SLOW_WORKER = dict(workers=3, connections=150, concurrency=12,
                   work=["sleep:30", "sleep:10", "sleep:10"])


def available_strategies(kinds: Sequence[str]) -> list[str]:
    """Strategies that run here for at least one of ``kinds``."""
    support = strategy_support()
    return [name for name in STRATEGIES if any(support[name][kind] is None for kind in kinds)]


COLUMNS = ["accepted", "busiest_share", "jain", "rr_score", "mean_rank", "nvcsw_per_accept",
           "eagain_per_accept", "p50_ms", "p99_ms", "reconciled"]


def summary_table(runs: dict[str, Run]):
    """One row per run: accepted, busiest share, fairness, round robin, rank, wakeups, latency.

    ``mean_rank`` is the winner's wake-order rank (0: the longest waiter won,
    1: the most recent one); ``nvcsw_per_accept`` the real wakeups per
    connection, ``eagain_per_accept`` the ones a worker could see.
    """
    table = analysis.summarize_runs(runs)
    table.index.name = "run"
    return table[COLUMNS]


def write_comparison(
    out: Path,
    strategies: Sequence[str] | None = None,
    kinds: Sequence[str] = ("process", "thread"),
    workers: int = 4,
    connections: int = 200,
    protocol: str = "zen",
    slow_worker: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Run the comparison, save runs, table and figures under ``out``; return the files written."""
    strategies = list(strategies or available_strategies(kinds))
    support = strategy_support()
    if not any(support[name][kind] is None for name in strategies for kind in kinds):
        raise Unavailable(f"nothing to compare: none of {', '.join(strategies)} runs here "
                          f"with {' or '.join(kinds)} workers (acceptlab doctor says why)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = compare(strategies, kinds, progress=progress, workers=workers,
                   connections=connections, protocol=protocol, gap=0.001)
    written: list[Path] = []
    for label, run in runs.items():
        run.save(out / "runs" / label.replace("/", "-"))

    table = summary_table(runs)
    table.to_csv(out / "summary.csv")
    (out / "summary.md").write_text(table.to_markdown(floatfmt=".2f") + "\n")
    written += [out / "summary.csv", out / "summary.md"]
    print(table.to_string(float_format=lambda x: f"{x:.2f}"))

    for kind in kinds:
        of_kind = {label.split("/")[0]: (run.events, run.workers)
                   for label, run in runs.items() if run.meta["kind"] == kind}
        if of_kind:
            written.append(_save(plots.compare_strategies(of_kind),
                                 out / f"compare-{kind}.png"))
    written.append(_save(plots.wakeups_by_strategy(table), out / "wakeups-per-connection.png"))

    if slow_worker and "reuseport" in strategies and "process" in kinds:
        slow = compare(["blocking", "reuseport"], ["process"], progress=progress,
                       protocol=protocol, **SLOW_WORKER)
        for label, run in slow.items():
            run.save(out / "runs" / ("slowworker-" + label.replace("/", "-")))
        written.append(_save(plots.latency_cdf({label: run.client for label, run in slow.items()}),
                             out / "slow-worker-latency.png"))
        print()
        print("one slow worker (30/10/10 ms per request), 12 clients:")
        print(summary_table(slow).to_string(float_format=lambda x: f"{x:.2f}"))
    return written


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

