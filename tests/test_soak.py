"""Load held: a short soak at full speed, with no error, no descriptor leak, no heap growth.

The long version is ``bench/soak.py`` (60 s per kind); this runs the very same
function for a few seconds per kind (``ACCEPTLAB_SOAK_SECONDS``, default 3),
so the suite checks what the benchmark reports: every connection answered,
the client and event logs reconciled, the same number of open descriptors in
every worker before and after, and each worker's anonymous memory (its heap)
grown by no more than ``ANON_GROWTH_LIMIT`` once warmed up.  The event log's
mapped pages grow by design (one record per wait) and are only reported.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from bench import soak

pytestmark = [pytest.mark.system, pytest.mark.serial,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="counts descriptors and memory in /proc")]

SECONDS = float(os.environ.get("ACCEPTLAB_SOAK_SECONDS", "3"))


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_short_soak_at_full_speed_leaks_nothing(kind):
    """A few seconds of the fastest closed loop: no error, no fd leak, heap within the bound."""
    result = soak.soak(kind, duration=SECONDS, warmup=1.0)
    print(f"\nsoak {kind}: {json.dumps(result.summary())}")
    assert result.connections > 1000 * SECONDS, "the load did not run at speed"
    assert result.ok == result.connections, result.errors
    assert result.reconciled and result.accepted_events >= result.connections
    assert result.fd_change == [0] * len(result.before), (
        [s.fds for s in result.before], [s.fds for s in result.after])
    assert max(result.anon_growth) <= soak.ANON_GROWTH_LIMIT, result.anon_growth
    assert result.failures == []
