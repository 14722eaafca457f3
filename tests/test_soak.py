"""Load held: a short soak at full speed, with no error, no descriptor leak, no heap growth.

The long version is ``bench/soak.py`` (60 s per kind); this runs the very same
function for a fixed number of connections per kind (``ACCEPTLAB_SOAK_CONNECTIONS``,
default 8000: a few seconds at full speed), so the suite checks what the benchmark
reports, on a count rather than a clock: how fast the load ran is the benchmark's
(``python -m bench.soak`` prints connections per second), and a busy machine only makes
this test slower, never makes it fail.  Checked: every connection made and answered,
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

CONNECTIONS = int(os.environ.get("ACCEPTLAB_SOAK_CONNECTIONS", "8000"))
HANG_GUARD_S = 120.0  # a load that cannot finish its connections ends here (count < CONNECTIONS)


@pytest.mark.timeout(HANG_GUARD_S + 60)
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_short_soak_at_full_speed_leaks_nothing(kind):
    """The fastest closed loop for CONNECTIONS connections: no error, no fd leak, heap bounded."""
    result = soak.soak(kind, duration=HANG_GUARD_S, warmup=1.0, max_connections=CONNECTIONS)
    print(f"\nsoak {kind}: {json.dumps(result.summary())}")
    assert result.connections == CONNECTIONS, "the load did not make every connection"
    assert result.ok == result.connections, result.errors
    assert result.reconciled and result.accepted_events >= result.connections
    assert result.fd_change == [0] * len(result.before), (
        [s.fds for s in result.before], [s.fds for s in result.after])
    assert max(result.anon_growth) <= soak.ANON_GROWTH_LIMIT, result.anon_growth
    assert result.failures == []
