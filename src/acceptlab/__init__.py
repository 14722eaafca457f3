"""acceptlab: watch the kernel hand out TCP connections to workers that share one socket.

The names a learner needs are available here: ``WorkerPool``, ``fire``,
``run_experiment``, ``compare``, ``Run``, and the ``analysis`` and ``plots``
modules.  They are imported on first use, not here, because every worker
process imports this package too, and a worker must not pay for pandas and
matplotlib before it can accept its first connection.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if os.name != "posix":  # the one place the kit says so (pyproject.toml's classifiers agree)
    raise ImportError(f"acceptlab runs on POSIX systems (Linux; macOS without the epoll and "
                      f"SO_REUSEPORT lessons): it relies on fork, signals, flock and poll, "
                      f"which {sys.platform} lacks. On Windows, use WSL 2.")

__version__ = "0.1.0"

# Each lazy name and the module it lives in; a name mapped to None is itself a module.
_WHERE = {
    "WorkerPool": "server.pool",
    "PortInUse": "server.pool",
    "fire": "client.load",
    "run_experiment": "lab.experiment",
    "compare": "lab.experiment",
    "Run": "lab.experiment",
    "Limits": "specs",
    "PoolSpec": "specs",
    "LoadSpec": "specs",
    "RunOptions": "specs",
    "STRATEGIES": "server.strategies",
    "Unavailable": "linux.support",
}
# Modules a lesson imports by their short name: ``from acceptlab import analysis, plots``.
_MODULES = {
    "analysis": "analysis",
    "plots": "views.plots",
    "kernel": "linux.kernel",
    "support": "linux.support",
    "tracing": "linux.tracing",
    "strategies": "server.strategies",
}

__all__ = ["__version__", *_WHERE, *_MODULES]


def __dir__() -> list[str]:
    """What tab completion offers: the lazy names too, though none is imported yet."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first asked for (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f".{_MODULES[name]}", __name__)
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'acceptlab' has no attribute {name!r}")
