"""acceptlab.specs: what a run is, as frozen values checked once; shortcuts build the same specs."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from acceptlab import fire, run_experiment
from acceptlab.lab.experiment import Run
from acceptlab.server.pool import WorkerPool
from acceptlab.specs import Limits, LoadSpec, PoolSpec, RunOptions, build_specs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("cls, field, value, words", [
    (PoolSpec, "workers", 0, "workers=0"),
    (PoolSpec, "kind", "fibre", "kind='fibre'"),
    (PoolSpec, "threads", 3, "threads=3"),
    (PoolSpec, "strategy", "spinlock", "strategy='spinlock'"),
    (PoolSpec, "protocol", "gopher", "protocol='gopher'"),
    (PoolSpec, "work", "nap:3", "work='nap:3'"),
    (PoolSpec, "port", 70000, "port=70000"),
    (PoolSpec, "boot_attempts", 0, "boot_attempts=0"),
    (PoolSpec, "start_method", "clone", "start_method='clone'"),
    (LoadSpec, "concurrency", 0, "concurrency=0"),
    (LoadSpec, "rate", -5, "rate=-5"),
    (LoadSpec, "gap", -1, "gap=-1"),
    (LoadSpec, "duration", 0, "duration=0"),
    (LoadSpec, "retries", -1, "retries=-1"),
    (LoadSpec, "timeout", 0, "timeout=0"),
    (RunOptions, "restart_every", 0, "restart_every=0"),
    (Limits, "idle_timeout", 0, "idle_timeout=0"),
])
def test_a_bad_value_is_one_line_naming_the_field(cls, field, value, words):
    with pytest.raises(ValueError) as caught:
        cls(**{field: value})
    message = str(caught.value)
    assert message.startswith(words) and "\n" not in message, message


def test_replace_checks_again():
    with pytest.raises(ValueError, match="workers=0"):
        dataclasses.replace(PoolSpec(), workers=0)


def test_a_strategy_takes_only_its_own_options_and_fills_in_the_defaults():
    assert PoolSpec(strategy="reorder").settings == {"every": 16}
    assert PoolSpec(strategy="reorder", strategy_options={"every": 8}).settings == {"every": 8}
    assert PoolSpec(strategy="timeout").settings == {"accept_timeout": 1.0}
    with pytest.raises(ValueError, match="blocking has no option 'every'"):
        PoolSpec(strategy="blocking", strategy_options={"every": 8})


def test_each_default_is_written_once():
    """The defaults the README and the CLI quote come from the specs themselves."""
    assert PoolSpec().backlog == 128 and LoadSpec().duration == 60.0
    from acceptlab.cli import build_parser

    run = build_parser().parse_args(["run"])
    assert run.duration == LoadSpec().duration
    assert run.idle_timeout == Limits().idle_timeout and run.max_request == Limits().max_request


def test_shortcuts_build_the_same_specs_as_the_specs_themselves():
    pool, load, options = build_specs(workers=2, kind="thread", gap=0.001, protocol="http",
                                      label="x", strategy_options={})
    assert pool == PoolSpec(workers=2, kind="thread", protocol="http")
    assert load == LoadSpec(gap=0.001, protocol="http")
    assert options == RunOptions(label="x")
    # a given load keeps its own protocol; without one, the load speaks the pool's
    assert build_specs(PoolSpec(protocol="http"))[1].protocol == "http"
    with pytest.raises(TypeError, match="unexpected keyword argument 'wrokers'"):
        build_specs(wrokers=2)
    with pytest.raises(TypeError, match=r"client_processes=\.\.\.\) is now processes"):
        build_specs(client_processes=2)


def test_a_spec_survives_its_dict_and_json():
    pool = PoolSpec(workers=3, work=["sleep:30", "sleep:10"], limits=Limits(idle_timeout=None),
                    strategy="reorder", strategy_options={"every": 4})
    assert pool.work == ("sleep:30", "sleep:10")
    assert PoolSpec.from_dict(json.loads(json.dumps(pool.as_dict()))) == pool
    load = LoadSpec(rate=50.0, seed=7)
    assert LoadSpec.from_dict(json.loads(json.dumps(load.as_dict()))) == load


@pytest.mark.parametrize("function", [run_experiment, WorkerPool, fire])
def test_the_entry_points_take_at_most_four_parameters(function):
    assert len(inspect.signature(function).parameters) <= 4


@pytest.mark.system
def test_meta_records_the_specs_whole_and_the_specs_come_back():
    run = run_experiment(workers=2, kind="thread", connections=10, rate=500.0, label="seeded")
    assert run.meta["pool"]["workers"] == 2 and run.meta["load"]["rate"] == 500.0
    assert run.meta["load"]["seed"] is not None  # drawn and recorded: the run can be repeated
    assert run.pool_spec.kind == "thread" and run.pool_spec.start_method  # the one used
    assert run.load_spec == LoadSpec(connections=10, rate=500.0, seed=run.meta["load"]["seed"])
    assert run.options.label == "seeded"
    assert run.meta["strategy"] == "blocking" and run.meta["kind"] == "thread"


def test_every_reference_run_in_data_still_loads_with_its_specs():
    for meta in sorted((ROOT / "data").glob("**/meta.json")):
        if not (meta.parent / "events.csv").exists():
            continue  # a sweep's or a benchmark's meta, not a run
        run = Run.load(meta.parent)
        assert run.load_spec.connections >= 0, meta
        if not run.meta.get("observed"):
            assert run.pool_spec is not None and run.pool_spec.strategy == run.meta["strategy"]


@pytest.mark.system
def test_rerun_repeats_a_saved_run_with_the_same_specs_seed_included(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    cli = [sys.executable, "-m", "acceptlab"]
    made = subprocess.run([*cli, "run", "--workers", "2", "-c", "12", "--rate", "400", "--seed",
                           "11", "--strategy", "reorder", "--strategy-option", "every=2",
                           "--json", "--out", str(first)], capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    again = subprocess.run([*cli, "rerun", str(first), "--out", str(second), "--json"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    old, new = (json.loads((path / "meta.json").read_text()) for path in (first, second))
    for part in ("pool", "load", "options"):
        assert old[part] == new[part], part
    assert new["load"]["seed"] == 11 and new["pool"]["strategy_options"] == {"every": 2}


@pytest.mark.system
def test_rerun_reads_an_old_flat_run_too(tmp_path):
    out = tmp_path / "again"
    done = subprocess.run([sys.executable, "-m", "acceptlab", "rerun",
                           str(ROOT / "data" / "blocking-thread-light"), "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["pool"]["kind"] == "thread" and meta["load"]["gap"] == 0.001
