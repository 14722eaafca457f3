"""The numbers a lesson talks about, from a run's tables: who got each connection (shares),
who was woken and what it cost (wakeups), how long clients waited (latency), whether every
connection arrived once (reconcile), and what each strategy predicts (predictions).

Every function here reads plain DataFrames (``events``, ``client``, ``queue``;
their columns are described in ``data/README.md``) and returns a number, a
dict or a DataFrame.  Nothing here starts a worker or opens a socket, so each
function can be tried on a table typed in by hand.

Vocabulary
----------
Two counts are easy to confuse, so each has one name everywhere in the kit:

* a **wakeup** is a voluntary context switch: the worker's thread slept in
  the kernel and the kernel woke it (the ``nvcsw`` column of ``events``).
  A thundering herd is many wakeups per connection.
* a **return** is a wait that came back to Python: one row of ``events``
  (less the ``waiting`` rows of waits that never ended).  A woken worker
  that finds the connection gone may go back to sleep inside ``poll()``
  without returning, so returns can hide wakeups.

Theory of operation
-------------------
One row of ``events`` is one *wait*: a worker started waiting at
``t_wait_ns`` and its wait returned at ``t_wake_ns``.  If it then got a
connection, ``outcome`` is ``'accepted'``; if another worker was quicker it
is ``'eagain'``; a wait that ran out is ``'timeout'``.  From those rows we ask
the questions of the lesson:

* **Who got the connections?**  :func:`accepted` gives the accept sequence,
  :func:`per_worker` the counts, :func:`jain_fairness` one number for how even
  they are, :func:`round_robin_score` how much the sequence looks like taking
  turns, and :func:`expected_share` what each strategy predicts.
* **Who was woken?**  :func:`wake_order_ranks` asks, for each connection,
  whether the worker that had waited longest won (FIFO) or the one that
  started waiting last (LIFO).  :func:`cost_per_accept` counts what each
  connection cost: wakeups, returns, EAGAINs and timeouts.  A wake-one queue
  costs one wakeup; a thundering herd about one per idle worker.
* **Did every connection arrive exactly once?**  :func:`join_client_events`
  and :func:`reconcile` match each client connection to the event of the
  worker that accepted it.  Counts that do not reconcile are a bug.
* **How long did clients wait?**  :func:`latency_ms` per connection,
  :func:`latency` as percentiles (the one definition plots use too).
* **Whose queue was it?**  :func:`queue_owners` names the worker behind each
  ``reuseport`` socket of a queue table, where the data can tell.

:func:`summary` and :func:`summarize_runs` put the headline numbers of one or
many runs side by side; :func:`unpack_run` and :func:`single_value` read a
run however it is given.
"""

from __future__ import annotations

from .latency import latency, latency_ms
from .predictions import (BY_CPU, HASHED, HERD, IN_BLOCKS, ONE_WORKER, RECENT_WAITERS,
                          REORDER_EVERY, TAKE_TURNS, Prediction, busy_while_idle,
                          expected_share, open_per_process)
from .queues import queue_owners
from .reconcile import Reconciliation, join_client_events, reconcile
from .shares import accepted, jain_fairness, per_worker, round_robin_score
from .summary import SLOW_WORKER, single_value, summarize_runs, summary, unpack_run
from .wakeups import cost_per_accept, wake_order_ranks, waiting_at

__all__ = [
    "accepted", "per_worker", "jain_fairness", "round_robin_score",
    "wake_order_ranks", "waiting_at", "cost_per_accept",
    "latency_ms", "latency",
    "join_client_events", "reconcile", "Reconciliation",
    "expected_share", "Prediction", "TAKE_TURNS", "ONE_WORKER", "RECENT_WAITERS", "HERD",
    "HASHED", "IN_BLOCKS", "BY_CPU", "REORDER_EVERY", "open_per_process", "busy_while_idle",
    "queue_owners",
    "summary", "summarize_runs", "unpack_run", "single_value", "SLOW_WORKER",
]
