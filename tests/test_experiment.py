"""run_experiment end to end: the client and server logs reconcile; runs save and load."""

import ast
import inspect
import os
import sys
import threading
import time
from pathlib import Path

import pytest

import acceptlab
from acceptlab import analysis
from acceptlab.lab.experiment import Run, compare, run_experiment


@pytest.mark.system
def test_thousands_of_connections_reconcile_exactly():
    """Every accepted connection is one event; every client success joins exactly one event."""
    run = run_experiment(workers=4, kind="process", connections=3000, concurrency=8)
    accepted = (run.events["outcome"] == "accepted").sum()
    assert run.client["ok"].all(), run.client["error"].value_counts()
    assert accepted == len(run.client) == 3000
    check = analysis.reconcile(run.client, run.events)
    assert check.ok, check
    assert check.joined == 3000 and check.duplicate_matches == 0


@pytest.mark.system
def test_thread_workers_reconcile_too():
    run = run_experiment(workers=4, kind="thread", connections=1000, concurrency=4)
    assert analysis.reconcile(run.client, run.events).ok


@pytest.mark.system
def test_run_saves_and_loads_the_same_tables(tmp_path):
    run = run_experiment(workers=2, kind="thread", connections=50, protocol="http",
                         sample_queue=sys.platform.startswith("linux"))
    loaded = Run.load(run.save(tmp_path / "run"))
    assert loaded.meta == {**run.meta}
    assert len(loaded.events) == len(run.events) and len(loaded.client) == 50
    assert (analysis.accepted(loaded.events)["worker"].tolist()
            == analysis.accepted(run.events)["worker"].tolist())
    assert loaded.client["worker"].dtype == "Int64"
    # The http reply names its worker: the client saw who served it, the server agrees.
    joined = analysis.join_client_events(loaded.client, loaded.events)
    assert (joined["worker_client"] == joined["worker_event"]).all()
    for key in ("python", "kernel", "cpus", "strategy", "workers", "acceptlab"):
        assert key in loaded.meta


@pytest.mark.system
def test_a_loaded_run_has_the_live_runs_column_types_and_exact_nanoseconds(tmp_path):
    """Times with gaps must come back as exact integers: as floats they round past 2**53 ns."""
    run = run_experiment(workers=2, kind="thread", connections=20)
    big = 2**53 + 1  # about 104 days of monotonic clock, the first value a float cannot hold
    run.events.loc[0, "t_wake_ns"] = big
    loaded = Run.load(run.save(tmp_path / "run"))
    for table in ("events", "client"):
        live, back = getattr(run, table), getattr(loaded, table)
        mismatched = {column: (str(live[column].dtype), str(back[column].dtype))
                      for column in live if live[column].dtype == "Int64"
                      and back[column].dtype != "Int64"}
        assert not mismatched, f"{table}: {mismatched}"
    assert loaded.events.loc[0, "t_wake_ns"] == big
    assert (loaded.client["error"] == "").all()  # no error is "", as in a live run


@pytest.mark.system
@pytest.mark.serial
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")
def test_queue_grows_when_connections_arrive_faster_than_workers_serve():
    # 2 workers x (3 questions x 5 ms) serve ~130 connections/s; 600/s arrive.
    run = run_experiment(workers=2, kind="process", work="sleep:5", connections=150, rate=600,
                         sample_queue=True)
    assert run.meta["queue"] == "sampled"
    assert run.queue["queue_len"].max() > 5
    assert run.queue["queue_len"].iloc[-1] == 0 or run.queue["queue_len"].tail(5).min() == 0


@pytest.mark.system
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")
def test_queue_is_empty_at_rest():
    run = run_experiment(workers=2, kind="thread", connections=20, gap=0.005, sample_queue=True)
    assert run.queue["queue_len"].max() <= 1  # a connection may be caught between SYN-ACK and accept
    assert (run.queue["queue_len"] == 0).mean() > 0.9


@pytest.mark.system
def test_compare_runs_the_grid_and_skips_what_cannot_run():
    runs = compare(strategies=["blocking", "shared-epoll"], kinds=["process", "thread"],
                   connections=20, workers=2)
    assert set(runs) == {"blocking/process", "blocking/thread", "shared-epoll/thread"}
    skipped = runs["blocking/process"].meta["skipped_in_comparison"]
    assert len(skipped) == 1 and skipped[0].startswith("shared-epoll/process")


def test_run_experiment_takes_specs_and_documents_every_parameter():
    signature = inspect.signature(run_experiment)
    assert len(signature.parameters) <= 4
    assert signature.parameters["options"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match="unexpected keyword argument 'wrokers'"):
        run_experiment(wrokers=2)  # type: ignore[call-arg]
    doc = inspect.getdoc(run_experiment)
    assert "Args:" in doc
    args_block = doc.split("Args:")[1]
    undocumented = [name for name in signature.parameters if name not in args_block]
    assert not undocumented, undocumented


@pytest.mark.system
def test_trace_says_in_meta_whether_it_was_recorded():
    """With trace=True the run says 'recorded', or why not; the run goes on either way."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without tracefs: a TracingUnavailableWarning
        run = run_experiment(workers=1, kind="thread", connections=3, trace=True)
    assert run.meta["trace"] == "recorded" or run.meta["trace"].startswith("unavailable")
    assert (run.trace is not None) == (run.meta["trace"] == "recorded")
    assert run.meta["interrupted"] is False and not run.interrupted
    assert run.client["ok"].all()


@pytest.mark.system
@pytest.mark.serial
def test_a_stop_event_ends_the_run_early_and_keeps_what_completed(tmp_path):
    stop = threading.Event()
    stopped_at: list[float] = []

    def press_ctrl_c() -> None:
        stopped_at.append(time.monotonic())
        stop.set()

    timer = threading.Timer(1.5, press_ctrl_c)
    timer.start()
    try:
        run = run_experiment(workers=2, kind="thread", connections=10_000_000, gap=0.001,
                             duration=120, stop=stop)
        after_stop = time.monotonic() - stopped_at[0]
    finally:
        timer.cancel()
    # README: Ctrl-C stops the load, and then every worker, "within a second" each: the run
    # returns within 3x those 2 s (without the stop it would run for its 120 s)
    assert after_stop < 3 * 2.0, f"the run ended {after_stop:.1f} s after it was asked to"
    assert run.interrupted and run.meta["interrupted"] is True
    assert 0 < len(run.client) < 10_000_000 and run.client["ok"].all()
    assert analysis.reconcile(run.client, run.events).ok  # what completed is whole
    loaded = Run.load(run.save(tmp_path / "run"))
    assert loaded.interrupted and "interrupted" in repr(loaded)


def test_compare_starts_nothing_once_stopped():
    stop = threading.Event()
    stop.set()
    assert compare(["blocking"], ["thread"], connections=5, stop=stop) == {}


def _imports(module: str) -> set[str]:
    tree = ast.parse((Path(acceptlab.__file__).parent / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {node.module or ""} | {f"{node.module or ''}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def _calls(module: str) -> set[str]:
    tree = ast.parse((Path(acceptlab.__file__).parent / f"{module}.py").read_text())
    return {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}


def test_the_arrows_point_one_way_experiment_does_not_import_analysis():
    assert not {name for name in _imports("lab/experiment") if "analysis" in name or "plots" in name}


def test_report_neither_prints_nor_picks_a_matplotlib_backend():
    calls = _calls("views/report")
    assert "print" not in calls and "matplotlib.use" not in calls, calls


def test_a_runs_slots_count_every_thread_of_a_hybrid_pool():
    import pandas as pd

    empty = pd.DataFrame()
    assert Run(empty, empty, meta={"workers": 2, "kind": "hybrid", "threads": 3}).workers == 6
    assert Run(empty, empty, meta={"workers": 4, "kind": "process", "threads": 1}).workers == 4
    # an observed server's meta lists its threads: its slots are its worker processes
    assert Run(empty, empty, meta={"workers": 4, "threads": [{"pid": 1, "tid": 1}]}).workers == 4


@pytest.mark.system
def test_every_run_records_how_busy_other_work_kept_the_machine(tmp_path):
    """Issue 26: ``machine_busy`` (cores other work used while the load ran) is in every run's
    meta.json, so a verdict can say when a run was disturbed."""
    run = run_experiment(workers=2, kind="thread", connections=20)
    saved = Run.load(run.save(tmp_path / "run"))
    if sys.platform.startswith("linux"):
        assert 0 <= saved.meta["machine_busy"] <= (os.cpu_count() or 1)
        assert saved.meta["machine_busy_seconds"] > 0
    else:
        assert saved.meta["machine_busy"] is None
