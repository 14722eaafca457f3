"""What each strategy predicts (its record in acceptlab.registry); open counts per process."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .. import registry
from ..registry import Prediction
from .columns import ns
from .shares import accepted

__all__ = ["expected_share", "Prediction", "TAKE_TURNS", "ONE_WORKER", "RECENT_WAITERS", "HERD",
           "HASHED", "IN_BLOCKS", "BY_CPU", "REORDER_EVERY", "open_per_process",
           "busy_while_idle"]


def expected_share(strategy: str, workers: int, connections: int,
                   options: Mapping[str, float] | None = None) -> Prediction:
    """What ``strategy`` predicts for how ``connections`` are spread over ``workers``.

    These are the light-load predictions of each strategy's mechanism (under
    saturation every shared-queue strategy follows each worker's service
    rate instead), one model per strategy, written in its record
    (:data:`acceptlab.registry.STRATEGY_RECORDS`):

    * taking turns (``blocking``, ``locked``, ``handoff``, ``handoff-least-busy``):
      every count is connections/workers (``kind='exact'``; ``low``/``high``
      differ by one when it does not divide).  For ``locked`` that holds only
      if the lock wakes its waiters in order: measure it.
    * a fair die (``reuseport``): each count is Binomial(connections,
      1/workers); the band is its central 99 % interval (``kind='binomial'``).
    * a race (``timeout``, ``poll``, ``epoll``, and ``busy-sleep`` and
      ``exact`` while no process is busy): roughly even, nothing guarantees it
      (``kind='racy'``; the die's band is a guide).
    * one worker takes most (``epoll-exclusive``): no per-worker share,
      ``share`` is NaN and the band is 0..connections (``kind='one-worker'``).
    * uneven (``shared-epoll``: the most recent waiter is woken first;
      ``reuseport-cpu`` and ``reuseport-incoming-cpu``: the client's CPU
      decides): no per-worker count is predicted (``kind='uneven'``).
    * blocks in turn (``reorder``): blocks of ``every`` connections (16, as
      nginx), each block to the next worker (``kind='exact'``).

    An unknown strategy raises ``ValueError``.

    Args:
        strategy: the strategy's name.
        workers: the pool size.
        connections: how many connections were (or will be) accepted.
        options: the strategy's options, if the run changed its defaults
            (``{"every": 8}`` for ``reorder``).
    """
    return registry.expected_share(strategy, workers, connections, options)


def _predicted_by(model: type[registry.Model]) -> tuple[str, ...]:
    return tuple(name for name, record in registry.STRATEGY_RECORDS.items()
                 if type(record.prediction) is model)


# The strategies grouped by what they predict under light load (a lesson's "which of these").
TAKE_TURNS = _predicted_by(registry.Turns)  # a FIFO of waiters, or a dealer: strict turns
ONE_WORKER = _predicted_by(registry.OneWorker)  # the first registered idle waiter takes most
RECENT_WAITERS = _predicted_by(registry.RecentWaiters)  # LIFO-ish: uneven, recent waiters win
HERD = _predicted_by(registry.Herd)  # every idle worker wakes and races for the connection
HASHED = _predicted_by(registry.FairDie)  # a hash of the 4-tuple picks the socket: a fair die
IN_BLOCKS = _predicted_by(registry.InBlocks)  # one worker at a time, handing over every N
BY_CPU = _predicted_by(registry.ByCpu)  # the CPU the connection arrived on decides
REORDER_EVERY = int(registry.STRATEGY_RECORDS["reorder"].options["every"])  # nginx's 16


def open_per_process(events: pd.DataFrame, *, threads: int) -> list[int]:
    """How many connections each worker process held open right after the last accept.

    Why: a fix for long-lived connections (Envoy's exact balance, a
    least-busy dealer) promises even *open* counts per process, not even
    accept totals; with ``kind='hybrid'`` a process is ``threads`` slots
    (slot ``p * threads + t`` is thread ``t`` of process ``p``).

    Args:
        events: a run's event log.
        threads: threads per process (1 for ``kind='process'``).
    """
    taken = accepted(events)
    if taken.empty:
        return []
    moment = taken["t_accept_ns"].max()
    still_open = taken[ns(taken["t_done_ns"]) > moment]
    groups = (still_open["worker"].astype(int) // threads).value_counts()
    processes = int(events["worker"].max()) // threads + 1
    return [int(groups.get(group, 0)) for group in range(processes)]


def busy_while_idle(events: pd.DataFrame, *, threads: int) -> float:
    """The share of accepts that went to a process already serving while another process sat idle.

    Why: in a server of processes x threads (gunicorn gthread, Puma) an idle
    thread of a busy process takes a connection as readily as a thread of an
    idle process; the request then shares a CPU (and a GIL) it need not
    share.  Puma's busy sleep exists to bring this share down.

    Args:
        events: a run's event log (``kind='hybrid'``).
        threads: threads per process.
    """
    taken = accepted(events)
    if taken.empty:
        return float("nan")
    start = ns(taken["t_accept_ns"])
    end = ns(taken["t_done_ns"])
    group = taken["worker"].to_numpy(dtype=int) // threads
    processes = range(int(events["worker"].max()) // threads + 1)
    doubled = 0
    for moment, own in zip(start, group):
        open_now = [int(((group == g) & (start < moment) & (end > moment)).sum()) for g in processes]
        doubled += open_now[own] >= 1 and min(open_now) == 0
    return doubled / len(taken)
