"""What a restart costs: replace workers one at a time under load, and count what clients lost.

Servers restart their workers all the time (a deploy, ``max_requests``, a
memory limit).  Whether clients notice depends on where the waiting
connections live:

* **one shared socket** (``blocking`` and friends): the accept queue belongs
  to the socket, and the socket outlives any one worker.  A worker that stops
  gracefully (stops accepting, finishes its conversation, exits) loses
  nothing: the queue waits for the others.
* **one SO_REUSEPORT socket per worker** (``reuseport``): each worker's queue
  is its own.  When the worker closes its socket, the connections already
  queued there are reset, unless the kernel may move them to a sibling socket
  (``net.ipv4.tcp_migrate_req = 1``, Linux >= 5.14).  granian reverted its
  move to per-worker sockets for exactly this (granian #849; reflex #7114
  counted 21-22 refused probes per reload).

:class:`RollingRestart` restarts one slot after another every ``every``
seconds while a load runs (the experiment starts and stops it), and
:func:`restart_losses` counts, per restart, the client connections that
failed (by kind) or were delayed in the window that restart opened.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..basics import now

if TYPE_CHECKING:
    import pandas as pd

    from ..server.pool import WorkerPool

__all__ = ["Restart", "RollingRestart", "restart_losses"]


@dataclass(frozen=True)
class Restart:
    """One restart made on purpose: which slot, how, and when it began and ended."""

    slot: int
    graceful: bool
    t_begin_ns: int
    t_end_ns: int  # the replacement was ready (or the attempt failed)
    error: str = ""  # '' unless the restart itself failed


class RollingRestart:
    """Restart slot 0, then 1, ... (round and round) every ``every`` seconds, in a thread.

    Args:
        pool: a started :class:`~acceptlab.server.pool.WorkerPool`.
        every: seconds between the start of one restart and the next.
        graceful: True: the worker stops accepting, finishes its conversation
            and exits (a deploy); False: it is killed (a crash, the OOM killer).

    Use it as a context manager around the load; :attr:`restarts` lists what
    was done.  Stopping waits for a restart under way to finish.
    """

    def __init__(self, pool: "WorkerPool", *, every: float, graceful: bool = True) -> None:
        if every <= 0:
            raise ValueError(f"restarts need a positive interval, not {every}")
        self.pool, self.every, self.graceful = pool, every, graceful
        self.restarts: list[Restart] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acceptlab-restarts", daemon=True)

    def __enter__(self) -> "RollingRestart":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        slot = 0
        while not self._stop.wait(self.every):
            begin, error = now(), ""
            try:
                self.pool.restart(slot, graceful=self.graceful)
            except Exception as exc:  # a restart that failed is a result, not a crash
                error = f"{type(exc).__name__}: {exc}"
            self.restarts.append(Restart(slot, self.graceful, begin, now(), error))
            slot = (slot + 1) % self.pool.workers

    def as_records(self) -> list[dict]:
        """The restarts as plain dicts (for ``meta.json``)."""
        return [asdict(restart) for restart in self.restarts]


def restart_losses(client: "pd.DataFrame", restarts: list[dict],
                   *, delayed_factor: float = 5.0) -> "pd.DataFrame":
    """Per restart: the connections that failed, by kind, and those delayed, in its window.

    A restart's window runs from its beginning to the next restart's
    beginning (the last one's, to the end of the load).  A connection
    belongs to the window in which it *ended*: a connection queued before a
    restart and reset by it fails after the restart began.  "Delayed" means
    it succeeded but took more than ``delayed_factor`` times the median
    latency of the connections that ended before the first restart (the
    undisturbed baseline).

    Returns one row per restart: ``slot``, ``graceful``, ``restart_ms`` (how
    long the restart took), ``ended`` (connections that ended in the window),
    ``refused``, ``reset``, ``other_errors``, ``delayed``.
    """
    import numpy as np
    import pandas as pd

    columns = ["slot", "graceful", "restart_ms", "ended", "refused", "reset",
               "other_errors", "delayed"]
    if not restarts:
        return pd.DataFrame(columns=columns)
    start = client["t_start_ns"].astype("int64").to_numpy()
    done = pd.to_numeric(client["t_done_ns"]).astype("Float64").to_numpy(na_value=np.nan)
    ok = client["ok"].astype(bool).to_numpy()
    error = client["error"].fillna("").astype(str).to_numpy()
    took = done - start
    first = restarts[0]["t_begin_ns"]
    baseline = took[ok & (done < first)]
    threshold = delayed_factor * float(np.median(baseline)) if len(baseline) else np.inf
    edges = [r["t_begin_ns"] for r in restarts] + [np.iinfo(np.int64).max]
    rows = []
    for restart, low, high in zip(restarts, edges, edges[1:]):
        inside = (done >= low) & (done < high)
        rows.append({
            "slot": restart["slot"],
            "graceful": restart["graceful"],
            "restart_ms": (restart["t_end_ns"] - restart["t_begin_ns"]) / 1e6,
            "ended": int(inside.sum()),
            "refused": int((inside & (error == "refused")).sum()),
            "reset": int((inside & np.isin(error, ["reset", "closed"])).sum()),
            "other_errors": int((inside & ~ok & ~np.isin(error, ["refused", "reset",
                                                                  "closed"])).sum()),
            "delayed": int((inside & ok & (took > threshold)).sum()),
        })
    return pd.DataFrame(rows, columns=columns)
