"""Load held: a short soak at full speed, with no error, no descriptor leak, no heap growth.

The long version is ``bench/soak.py`` (60 s per kind); this runs the very same
function for a few seconds per kind (``ACCEPTLAB_SOAK_SECONDS``, default 3),
so the suite checks what the benchmark reports: every connection answered,
the client and event logs reconciled, the same number of open descriptors in
every worker before and after, and each worker's anonymous memory (its heap)
grown by no more than ``ANON_GROWTH_LIMIT`` once warmed up.  The event log's
mapped pages grow by design (96 bytes per wakeup) and are only reported.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="counts descriptors and memory in /proc")

SECONDS = float(os.environ.get("ACCEPTLAB_SOAK_SECONDS", "3"))


def load_bench():
    """bench/soak.py is a script, not a package module: load it from its path."""
    path = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("acceptlab_bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_short_soak_at_full_speed_leaks_nothing(kind):
    """A few seconds of the fastest closed loop: no error, no fd leak, heap within the bound."""
    bench = load_bench()
    result = bench.soak(kind, duration=SECONDS, warmup=1.0)
    print(f"\nsoak {kind}: {json.dumps(result.summary())}")
    assert result.connections > 1000 * SECONDS, "the load did not run at speed"
    assert result.ok == result.connections, result.errors
    assert result.reconciled and result.accepted_events >= result.connections
    assert result.fd_change == [0] * len(result.before), (
        [s.fds for s in result.before], [s.fds for s in result.after])
    assert max(result.anon_growth) <= bench.ANON_GROWTH_LIMIT, result.anon_growth
    assert result.failures == []
