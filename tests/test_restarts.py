"""What a restart costs: shared socket vs SO_REUSEPORT, with and without tcp_migrate_req.

The expected shape (granian #849, reflex #7114): restarting a worker
gracefully loses nothing when the accept queue belongs to one shared socket;
with one SO_REUSEPORT socket per worker, the connections queued on the
leaving worker's socket are reset, unless ``net.ipv4.tcp_migrate_req = 1``
lets the kernel move them to a sibling socket (Linux >= 5.14).
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from acceptlab.lab import sweep
from acceptlab.linux.netns import read_sysctl
from acceptlab.lab.restarts import restart_losses
from helpers import best_of

MIGRATE = "net.ipv4.tcp_migrate_req"


def _lost(run) -> int:
    losses = restart_losses(run.client, run.meta["restarts"])
    return int(losses[["refused", "reset", "other_errors"]].to_numpy().sum())


def test_restart_losses_counts_by_the_window_a_connection_ended_in():
    ms = 1_000_000
    client = pd.DataFrame({
        "t_start_ns": [0, 1 * ms, 2 * ms, 5 * ms, 6 * ms, 7 * ms, 11 * ms],
        "t_done_ns": [1 * ms, 2 * ms, 3 * ms, 12 * ms, 7 * ms, 8 * ms, 12 * ms],
        "ok": [True, True, True, True, False, False, True],
        "error": ["", "", "", "", "reset", "refused", ""],
    })
    restarts = [{"slot": 0, "graceful": True, "t_begin_ns": 4 * ms, "t_end_ns": 5 * ms},
                {"slot": 1, "graceful": True, "t_begin_ns": 10 * ms, "t_end_ns": 11 * ms}]
    table = restart_losses(client, restarts, delayed_factor=5)
    assert table["ended"].tolist() == [2, 2]
    assert table["reset"].tolist() == [1, 0] and table["refused"].tolist() == [1, 0]
    # baseline median 1 ms: the 7 ms connection that ended at 12 ms was delayed
    assert table["delayed"].tolist() == [0, 1]
    assert table["restart_ms"].tolist() == [1.0, 1.0]


def _needs_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("the restart comparison sets tcp_migrate_req in private network "
                    "namespaces, which needs root (CI runs as root)")
    if read_sysctl(MIGRATE) is None:
        pytest.skip(f"{MIGRATE} needs Linux >= 5.14; this is {os.uname().release}")


@pytest.mark.system
@pytest.mark.serial  # what a restart loses depends on when the kernel runs whom
def test_graceful_restarts_lose_nothing_on_a_shared_socket_and_reuseport_needs_migration():
    """Best of three: shared socket 0 lost, reuseport > 0, reuseport + migrate 0."""
    _needs_namespaces()

    def measure():
        runs = sweep.compare_restarts(graceful=True, seconds=1.6, every=0.3)
        return runs, {design: _lost(run) for design, run in runs.items()}

    tries = best_of(3, measure, lambda result: (
        result[1]["shared socket"] == 0 and result[1]["reuseport"] > 0
        and result[1]["reuseport + migrate"] == 0))
    assert tries.ok, f"lost per design in three tries: {[lost for _, lost in tries.values]}"
    runs, _ = tries.last
    assert all(len(run.meta["restarts"]) >= 3 for run in runs.values())
    assert {run.meta[MIGRATE] for run in runs.values()} >= {0, 1}


@pytest.mark.system
def test_without_namespaces_the_design_that_needs_one_says_why():
    """isolate=False runs on the host: a design needing another tcp_migrate_req is a reason."""
    host = read_sysctl(MIGRATE)
    if host is None:
        pytest.skip(f"{MIGRATE} needs Linux >= 5.14")
    runs = sweep.compare_restarts(graceful=True, seconds=0.8, every=0.3, isolate=False)
    other = "reuseport + migrate" if host == "0" else "reuseport"
    assert isinstance(runs[other], str) and "namespace" in runs[other]
    assert not isinstance(runs["shared socket"], str)
    assert len(runs["shared socket"].meta["restarts"]) >= 1
