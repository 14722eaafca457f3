"""acceptlab's benchmarks: the kit measured side by side with nginx, wrk and a minimal server.

Run from the repository's root, with the kit installed (``make bench`` does both)::

    python -m bench.run_all                    # every step; bench/results/summary.md
    python -m bench.run_all --only servers     # some steps
    python -m bench.soak --duration 10         # the long soak

The modules, one concern each:

* :mod:`bench.procfs`: CPU time of processes and of the machine, from /proc;
* :mod:`bench.wrk`: running wrk, and one measured wrk run against a server;
* :mod:`bench.servers`: the servers under test as child processes (the kit,
  the minimal Python server), ports, and stopping our own children;
* :mod:`bench.nginx`: nginx as the reference server;
* :mod:`bench.stats`: medians with their range;
* :mod:`bench.rows`: the summary table's rows, CSV and markdown, loud skips;
* :mod:`bench.rounds`: alternating rounds on a shared machine;
* ``bench_*``: the steps; :mod:`bench.run_all` runs them.

The paths every module shares are defined here.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
