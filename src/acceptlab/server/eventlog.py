"""The event log: one fixed-size record per wakeup, in a memory-mapped file per worker.

Theory of operation
-------------------
Each worker (one slot, one generation) owns one file and is its only writer,
so there are no locks and no messages between processes.  The file is mapped
into memory with ``MAP_SHARED``: a record is written with ``struct.pack_into``,
which is a plain memory store, with no system call on the hot path.  The pages
belong to the kernel's page cache, not to the worker, so what a worker wrote
survives its ``SIGKILL``: the next reader finds it.  (A ``multiprocessing.Queue``
instead pickles and sends every event through a pipe and loses what is still in
its feeder thread when a worker dies.)

A record is *committed* by writing its ``seq`` field last (it is the record's
last field, and one ``pack_into`` stores the fields in order); a reader keeps
only records whose ``seq`` is set, so a worker killed half-way through a
record leaves no torn row.  The conversation's end time is written into the same
record later; a worker killed mid-conversation leaves it empty, which is
itself worth seeing.

What can be lost: a connection that ``accept()`` returned in the few
microseconds before its record was stored, if the worker is killed exactly
then.  Its client sees a reset and no reply, so the client log shows it.

Resource handling: :class:`EventWriter` is a context manager; the file grows by
doubling when full.  :func:`read_events` reads every file in a directory into
one pandas DataFrame.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from ..basics import missing_as_na

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTCOMES", "COLUMNS", "NULLABLE", "EventWriter", "read_events", "log_path"]

# How a wait ended, stored as a small integer; "waiting" until it ends.
OUTCOMES = ("accepted", "eagain", "timeout", "error", "waiting")
_CODE = {name: code for code, name in enumerate(OUTCOMES)}

# The record: twelve little-endian signed 64-bit integers; -1 means "none".  The fields are
# laid out in the order they are written, so that each moment is ONE store of neighbouring
# fields: begin_wait writes the whole record (seq last: the commit), woke writes the wait's
# end (outcome last), done writes t_done_ns.
_FIELDS = (
    "worker", "generation", "pid", "tid", "t_wait_ns", "t_done_ns",
    "t_wake_ns", "t_accept_ns", "peer_port", "nvcsw", "outcome",
    "seq",
)
_RECORD = struct.Struct("<" + "q" * len(_FIELDS))
_WAKE = struct.Struct("<qqqqq")  # t_wake_ns, t_accept_ns, peer_port, nvcsw, outcome
_WAKE_OFFSET = 8 * _FIELDS.index("t_wake_ns")
_DONE = struct.Struct("<q")
_DONE_OFFSET = 8 * _FIELDS.index("t_done_ns")
_SEQ_OFFSET = 8 * _FIELDS.index("seq")
_WAITING = _CODE["waiting"]
_INITIAL_RECORDS = 4096


def log_path(directory: str | os.PathLike, worker: int, generation: int) -> Path:
    """Where slot ``worker``'s ``generation``-th incarnation writes its events."""
    return Path(directory) / f"worker{worker:03d}-gen{generation:04d}.events"


class EventWriter:
    """Appends wakeup records for ONE worker; only that worker may write.

    Per wait: :meth:`begin_wait` when the worker starts waiting, :meth:`woke`
    when the wait returns, and :meth:`done` when a connection's conversation
    is over.  Each is one ``struct.pack_into`` into shared memory.

    Args:
        path: the file (see :func:`log_path`); created, or emptied if it exists.
        worker: the slot, written into every record.
        generation: the slot's generation, written into every record.
    """

    def __init__(self, path: str | os.PathLike, worker: int, generation: int) -> None:
        self.path = Path(path)
        self._ids = (worker, generation, os.getpid())
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._capacity = 0
        self._map: mmap.mmap | None = None
        self._count = 0
        self._grow(_INITIAL_RECORDS)

    def _grow(self, capacity: int) -> None:
        """Make room for ``capacity`` records: extend the file, map it afresh."""
        if self._map is not None:
            self._map.close()
        os.ftruncate(self._fd, capacity * _RECORD.size)  # sparse: costs nothing until used
        self._map = mmap.mmap(self._fd, capacity * _RECORD.size, mmap.MAP_SHARED)
        self._capacity = capacity

    def begin_wait(self, tid: int, t_wait_ns: int) -> int:
        """Record that the worker starts waiting now; return the row's index.

        The row says ``waiting`` until :meth:`woke` fills it in, so a worker
        that never wakes (one starved by EPOLLEXCLUSIVE, one killed or stopped
        while waiting) still shows when it began to wait.
        """
        index = self._count
        if index == self._capacity:
            self._grow(2 * self._capacity)
        worker, generation, pid = self._ids
        # One store, in field order: seq, the commit, is written last.
        _RECORD.pack_into(self._map, index * _RECORD.size, worker, generation, pid, tid,
                          t_wait_ns, -1, -1, -1, -1, -1, _WAITING, index + 1)
        self._count = index + 1
        return index

    def woke(self, index: int, t_wake_ns: int, outcome: str, t_accept_ns: int = -1,
             peer_port: int = -1, nvcsw: int = -1) -> None:
        """Fill in how row ``index``'s wait ended (one store; the outcome is written last)."""
        _WAKE.pack_into(self._map, index * _RECORD.size + _WAKE_OFFSET, t_wake_ns, t_accept_ns,
                        peer_port, nvcsw, _CODE[outcome])

    def done(self, index: int, t_done_ns: int) -> None:
        """Fill in when record ``index``'s conversation ended."""
        _DONE.pack_into(self._map, index * _RECORD.size + _DONE_OFFSET, t_done_ns)

    def close(self) -> None:
        """Unmap and close; the records stay in the file."""
        if self._map is not None:
            self._map.close()
            self._map = None
            os.close(self._fd)

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Columns that may have no value (stored as -1, read as <NA>): integers with gaps.
NULLABLE = ("t_wake_ns", "t_accept_ns", "t_done_ns", "peer_port", "nvcsw")
COLUMNS = (
    "run", "worker", "generation", "pid", "tid", "kind", "strategy", "seq",
    "t_wait_ns", "t_wake_ns", "t_accept_ns", "t_done_ns", "outcome", "peer_port", "nvcsw",
)


def read_events(directory: str | os.PathLike, **constants: object) -> pd.DataFrame:
    """Read every worker's file in ``directory`` into one DataFrame, ordered by wait start.

    ``constants`` become columns with one value for the whole run (``run``,
    ``kind``, ``strategy``).  Missing values (still waiting, no connection,
    conversation cut short, counter unavailable) are ``<NA>``.  A row whose
    outcome is ``waiting`` is a wait that had not ended when the worker
    stopped or died: not a wakeup, but it says since when the worker waited.

    Args:
        directory: the pool's ``log_dir``.
        **constants: columns with one value for every row (``run``, ``kind``, ``strategy``).
    """
    # Imported here, not at the top: workers write events and must not pay for numpy and pandas.
    import numpy as np
    import pandas as pd

    dtype = np.dtype([(name, "<i8") for name in _FIELDS])
    arrays = []
    for path in sorted(Path(directory).glob("*.events")):
        records = np.fromfile(path, dtype=dtype)
        arrays.append(records[records["seq"] > 0])  # committed records only
    records = np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)
    frame = pd.DataFrame({name: records[name] for name in _FIELDS})
    frame["seq"] -= 1
    frame["outcome"] = pd.Categorical.from_codes(frame["outcome"].to_numpy(), OUTCOMES)
    missing_as_na(frame, NULLABLE)
    for name in ("run", "kind", "strategy"):
        frame[name] = constants.get(name, "")
    frame = frame.sort_values(["t_wait_ns", "worker"], kind="stable").reset_index(drop=True)
    return frame[list(COLUMNS)]
