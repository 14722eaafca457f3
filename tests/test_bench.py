"""The benchmark package's own plumbing: no leaked child, no division by zero, no lost step.

These test the bench's code paths, not performance (performance is measured
only by ``python -m bench.run_all``, in alternating rounds).
"""

from __future__ import annotations

import sys
import types

import pytest

from bench import run_all, servers
from bench.rows import Figure
from bench.stats import Spread
from bench.wrk import Sample
from helpers import process_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the bench reads /proc")


@pytest.mark.system
def test_a_child_server_whose_first_line_is_not_json_is_stopped_not_leaked():
    chatty = servers.ChildServer(
        ["-c", "import sys, time; print('about to sleep', file=sys.stderr, flush=True); "
               "print('hello, not json', flush=True); time.sleep(60)"],
        "a chatty server")
    with pytest.raises(RuntimeError, match="printed 'hello, not json") as caught:
        chatty.start()
    assert "about to sleep" in str(caught.value)  # its stderr is in the message
    assert chatty.process.poll() is not None and process_gone(chatty.process.pid)


@pytest.mark.system
def test_a_child_server_that_exits_at_once_says_so():
    dead = servers.ChildServer(["-c", "import sys; sys.exit('no port for you')"], "a dead server")
    with pytest.raises(RuntimeError, match="exited instead of its port.*no port for you"):
        dead.start()


@pytest.mark.system
def test_a_child_server_that_prints_its_port_and_pids_starts():
    fine = servers.ChildServer(
        ["-c", "import json, os, time; print(json.dumps({'port': 1, 'pids': [os.getpid()]}), "
               "flush=True); time.sleep(60)"], "a fine server")
    with fine:
        assert fine.port == 1 and fine.pids == [fine.process.pid]
    assert process_gone(fine.process.pid)


def sample(requests: int, seconds: float, cpu: float = 10.0) -> Sample:
    return Sample("s", requests / seconds, requests, 0, seconds, cpu, cpu / 2, cpu / 2, 20.0,
                  others_cores=0.5)


def test_merging_samples_weights_by_time_and_connections():
    merged = sample(100, 1.0, cpu=10.0).merge(sample(300, 2.0, cpu=30.0))
    assert merged.rate == pytest.approx(400 / 3.0) and merged.seconds == 3.0
    assert merged.server_cpu_us == pytest.approx((100 * 10 + 300 * 30) / 400)


def test_merging_a_run_that_served_nothing_divides_by_no_zero():
    served_nothing = sample(0, 1.0)
    assert served_nothing.rate == 0
    merged = served_nothing.merge(sample(0, 1.0))
    assert merged.rate == 0 and merged.requests == 0 and merged.server_cpu_us == 0
    assert sample(0, 1.0).merge(sample(200, 1.0)).rate == pytest.approx(100)


def test_run_all_reports_a_failed_step_and_runs_the_others(monkeypatch, tmp_path, capsys):
    def broken(**_):
        raise OSError("nginx would not start")

    def fine(**_):
        return [Figure("client", "3. a figure", Spread([1.0, 2.0, 3.0]), "ratio")]

    steps = {"bench.bench_servers": broken, "bench.bench_client": fine}
    monkeypatch.setattr(run_all.importlib, "import_module",
                        lambda name: types.SimpleNamespace(run=steps[name]))
    monkeypatch.setattr(run_all, "ensure_tools", lambda allow_install: {
        name: True for name in run_all.PACKAGES})
    monkeypatch.setattr(run_all, "versions", lambda: {
        "date": "today", "machine": "m", "python": "3", "nginx": "n", "wrk": "w"})
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_all", "--only", "servers", "client", "--no-install"])
    assert run_all.main() == 1
    summary = (tmp_path / "summary-partial.md").read_text()
    assert "Failed: servers (OSError: nginx would not start)" in summary
    assert "3. a figure" in summary and "2.00 (1.00–3.00, n=3)" in summary
    assert "FAILED servers" in capsys.readouterr().out


def test_an_observer_window_counts_both_loads_and_merges_by_time():
    from bench.bench_observe import Window

    one = Window(load=900, side=100, seconds=1.0, nginx_cpu=0.03, nginx_served=1000,
                 coverage=1.0, ours_cpu_s=2.0, others_cores=0.1)
    two = Window(load=1800, side=200, seconds=3.0, nginx_cpu=0.06, nginx_served=2000,
                 coverage=0.99, ours_cpu_s=6.0, others_cores=0.3)
    assert (one.rate, one.load_rate) == (1000.0, 900.0) and one.cpu_us == pytest.approx(30.0)
    both = one.merge(two)
    assert (both.rate, both.load_rate, both.coverage) == (750.0, 675.0, 0.99)
    assert both.others_cores == pytest.approx(0.25)  # weighted by each run's seconds
    empty = Window(0, 0, 0.0, 0.0, 0, float("nan"), 0.0)
    assert (empty.rate, empty.load_rate, empty.cpu_us) == (0.0, 0.0, 0.0)
