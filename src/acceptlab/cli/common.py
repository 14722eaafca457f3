"""What every command shares: its one-line errors, its checks, its output directory and tables."""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DESCRIPTION = "Watch the kernel hand out TCP connections to workers that share one socket."
BOOK_PORT = 1060  # the port every server in the book listens on
MAX_WORKERS = 256  # far past where 2 cores stop gaining; a typo of 100000 should not fork a storm
NOTHING = "—"  # what a table shows where nothing ran (instead of NaN or <NA>)
INTERRUPTED = 130  # the shell's code for "ended by SIGINT" (128 + 2)


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Loopback unless the user insists: a teaching server should not face the network by accident."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise UsageError(f"{host} is not a loopback address; add --allow-remote if you mean it")
    print(f"warning: listening on {host}: anyone who can reach this machine can connect",
          file=sys.stderr)


def check_values(args: argparse.Namespace) -> None:
    """Refuse what the specs would let through but the command line bounds, before anything starts.

    Everything else is checked once, by the specs the commands build
    (:mod:`acceptlab.specs`): their one-line ``ValueError`` is the message.
    """
    def bad(message: str) -> None:
        raise UsageError(message)

    port = getattr(args, "port", None)
    if port is not None and not 0 <= port <= 65535:
        bad(f"--port {port} is not a TCP port (0-65535; 0 means any free one)")
    workers = getattr(args, "workers", None)
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        bad(f"--workers {workers}: choose 1 to {MAX_WORKERS}")
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= MAX_WORKERS:
        bad(f"--threads {threads}: choose 1 to {MAX_WORKERS}")
    connections = getattr(args, "connections", None)
    if connections is not None and connections < 1:
        bad(f"--connections {connections}: must be at least 1")


class OutputDirectory:
    """Where a run's files go, claimed BEFORE the run so a bad directory costs no measurement.

    A file in the way, a directory that cannot be written, or one that already
    holds results (and no ``--force``) is a :class:`UsageError`.  Without an
    explicit ``--out`` the default name is used, or the first free
    ``<default>-2``, ``-3``... so running twice never overwrites anything.
    """

    RESULTS = ("meta.json", "summary.csv", "runs")  # what a run or a comparison leaves

    def __init__(self, given: str | None, default: str, force: bool) -> None:
        self.path = Path(given) if given is not None else self._fresh(Path(default))
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path}: a file is in the way (it must be a directory)")
        if self._holds_results(self.path) and not force:
            raise UsageError(f"--out {self.path} already holds a run; add --force to replace "
                             f"it, or choose another --out")
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass  # proof that files can be created there (read-only mounts, permissions)
        except OSError as exc:
            self.discard()
            raise UsageError(f"--out {self.path}: cannot write there "
                             f"({exc.strerror or exc})") from None

    @classmethod
    def _holds_results(cls, path: Path) -> bool:
        return path.is_dir() and any((path / name).exists() for name in cls.RESULTS)

    @classmethod
    def _fresh(cls, default: Path) -> Path:
        candidate, number = default, 1
        while cls._holds_results(candidate) or (candidate.exists() and not candidate.is_dir()):
            number += 1
            candidate = default.with_name(f"{default.name}-{number}")
        return candidate

    def discard(self) -> None:
        """Remove the directory again if this command created it and nothing was written."""
        if self.created:
            try:
                self.path.rmdir()
            except OSError:
                pass  # not empty, or already gone: leave it


def cell(value: object) -> str:
    """One rule for every number a person reads: 2 decimals, and "—" where nothing ran."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NA:
        return NOTHING
    if isinstance(value, (float, np.floating)):
        return NOTHING if math.isnan(value) else f"{value:.2f}"
    return str(value)


def show_table(table: "pd.DataFrame") -> str:
    """A table as text, every cell by :func:`cell`."""
    return table.astype(object).apply(lambda column: column.map(cell)).to_string()


def errors_by_kind(client: "pd.DataFrame") -> dict[str, int]:
    failed = client.loc[~client["ok"].astype(bool), "error"]
    return {str(kind): int(count) for kind, count in failed.value_counts().items()}


def load_summary(client: "pd.DataFrame") -> dict:
    """Throughput, latency percentiles and errors by cause from a client table."""
    from .. import analysis

    ok = int(client["ok"].sum())
    span = (client["t_done_ns"].max() - client["t_start_ns"].min()) / 1e9 if len(client) else 0
    times = analysis.latency(client).iloc[0]
    return {
        "connections": len(client),
        "ok": ok,
        "errors": errors_by_kind(client),
        "seconds": round(float(span), 3),
        "connections_per_s": round(ok / span, 1) if span else 0.0,
        **{name: plain(round(float(times[name]), 3))
           for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }


def client_lines(summary: dict) -> list[str]:
    """What the client saw, for people: errors by kind and the latency percentiles."""
    errors = ", ".join(f"{kind} {count}" for kind, count in summary["errors"].items())
    return [f"client: {summary['connections']} connections, {summary['ok']} ok, "
            f"errors: {errors or 'none'}",
            "latency (ms): " + "  ".join(f"{name[:-3]} {cell(summary[name])}"
                                          for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))]


def plain(value: object) -> object:
    """A value JSON can hold: numpy and pandas numbers as Python's, NaN as null."""
    if value is None or isinstance(value, (bool, str, list, dict)):
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN: JSON has no such number
        return None
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def say_interrupted(what: str) -> None:
    print(f"acceptlab: interrupted: {what}", file=sys.stderr, flush=True)


def saved_run(directory: str) -> Path:
    """The directory of a saved run (``Run.save``), or a :class:`UsageError` saying it is not one."""
    source = Path(directory)
    if not (source / "meta.json").is_file():
        raise UsageError(f"{source} is not a saved run (no meta.json in it)")
    return source
