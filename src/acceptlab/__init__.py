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

_WHERE = {
    "WorkerPool": "pool",
    "PortInUse": "pool",
    "fire": "load",
    "run_experiment": "experiment",
    "compare": "experiment",
    "Run": "experiment",
    "Limits": "conversation",
    "STRATEGIES": "strategies",
    "Unavailable": "support",
    "analysis": None,
    "plots": None,
    "kernel": None,
}

__all__ = ["__version__", *_WHERE]


def __dir__() -> list[str]:
    """What tab completion offers: the lazy names too, though none is imported yet."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    """Import ``acceptlab.<module>`` when one of its names is first asked for (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'acceptlab' has no attribute {name!r}")
    module = _WHERE[name]
    if module is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module}", __name__), name)
