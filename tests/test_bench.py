"""The benchmark package's own plumbing: no leaked child, no division by zero, no lost step.

These test the bench's code paths, not performance (performance is measured
only by ``python -m bench.run_all``, in alternating rounds).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

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


# -- the course's timings: bench/bench_notebooks.py and tools/timing_table.py -----------------

def _runs(seconds: dict[str, list[float]], status: str = "ok") -> list[dict]:
    """Rows as bench_notebooks writes them: lesson -> its seconds in rounds 1, 2, ..."""
    return [{"round": r + 1, "notebook": lesson, "seconds": value, "status": status,
             "load_average": 1.5, "date": "2026-12-07T08:00:00", "machine": "Linux 6.18, 2 cores",
             "error": ""}
            for lesson, values in seconds.items() for r, value in enumerate(values)]


def test_the_course_figures_are_medians_and_ranges_against_the_goals():
    from bench.bench_notebooks import figures_of

    runs = _runs({"00_a": [10.0, 12.0, 30.0], "01_b": [40.0, 44.0, 41.0]})
    course, first, second = figures_of(runs, lesson_goal=15, course_goal=60)
    assert course.spread.values == [50.0, 56.0, 71.0] and course.met  # median 56 <= 60
    assert (first.spread.median, first.spread.low, first.spread.high) == (12.0, 10.0, 30.0)
    assert first.met and not second.met  # 12 <= 15; 41 > 15
    failed = figures_of(_runs({"00_a": [1.0]}, status="error"), lesson_goal=15, course_goal=60)
    assert not failed[0].met and not failed[1].met and "FAILED" in failed[0].note


GUIDE = """# Guide

## Timings

{begin}
| notebook | run all (s) | class time with discussion |
|---|---|---|
| 00 setup check | 2.8–4.5 | 5 min (at home) |
| 01 one server | 3 | 10 min |
{end}

Prose after the table, someone else's.
"""


def _guide(tmp_path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from timing_table import BEGIN, END

    guide = tmp_path / "guide.md"
    guide.write_text(GUIDE.format(begin=BEGIN, end=END))
    return guide


def test_the_timing_table_is_written_between_its_markers_from_every_run(tmp_path):
    from bench.rows import write_csv

    guide = _guide(tmp_path)
    runs = write_csv(tmp_path / "notebooks.csv",
                     _runs({"00_setup_check": [3.0, 2.0, 4.0], "01_one_server": [20.0, 16.0, 17.0]}))
    from timing_table import main

    assert main(["--csv", str(runs), "--guide", str(guide)]) == 0
    text = guide.read_text()
    assert text.startswith("# Guide\n\n## Timings\n\n") and text.endswith(
        "\n\nProse after the table, someone else's.\n")  # nothing outside the markers moved
    assert "| 00 setup check | 3.0 (2.0–4.0) | yes | 5 min (at home) |" in text
    assert "| 01 one server | 17.0 (16.0–20.0) | **no** | 10 min |" in text
    assert "| the whole course | 21.0 (18.0–23.0) | within 60 s: yes | |" in text
    assert "3 rounds" in text and "load average 1.5–1.5" in text
    assert main(["--csv", str(runs), "--guide", str(guide), "--check"]) == 0
    assert main(["--csv", str(runs), "--guide", str(guide)]) == 0 and guide.read_text() == text
    # a run that changes a figure makes --check fail
    runs.write_text(runs.read_text().replace(",20.0,", ",25.0,"))
    assert main(["--csv", str(runs), "--guide", str(guide), "--check"]) == 1


def test_the_timing_table_refuses_an_old_csv_and_a_guide_without_markers(tmp_path, capsys):
    guide = _guide(tmp_path)
    old = tmp_path / "old.csv"
    old.write_text("notebook,seconds,status,error\n00_a.ipynb,2.2,ok,\n")
    from timing_table import main

    assert main(["--csv", str(old), "--guide", str(guide)]) == 2
    assert "predates the three-round bench" in capsys.readouterr().err
    from bench.rows import write_csv

    runs = write_csv(tmp_path / "n.csv", _runs({"00_a": [1.0]}))
    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n")
    assert main(["--csv", str(runs), "--guide", str(bare)]) == 2
    assert "markers" in capsys.readouterr().err


def test_the_teaching_guides_timing_table_is_that_of_the_last_bench_run():
    """docs/teaching-guide.md's table is generated: it must be the committed CSV's, unless that
    CSV predates the three-round bench (then the table awaits the next `make bench`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import timing_table

    try:
        runs = timing_table.read_runs(timing_table.CSV)
    except timing_table.StaleResults as exc:
        pytest.skip(f"THE GUIDE'S TIMING TABLE WAS NOT CHECKED: {exc}")
    text = timing_table.GUIDE.read_text(encoding="utf-8")
    assert timing_table.rewrite(text, runs) == text, "run python tools/timing_table.py"


@pytest.mark.system
def test_the_notebook_bench_runs_each_lesson_once_per_round_in_a_fresh_kernel(tmp_path):
    """Two tiny lessons, two rounds: four runs, in course order round by round."""
    import nbformat

    from bench.bench_notebooks import run_lessons

    paths = []
    for name in ("00_first", "01_second"):
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}\n\n**Goal:** be timed."),
            nbformat.v4.new_code_cell("import os\nprint(os.getpid())")])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        paths.append(tmp_path / f"{name}.ipynb")
        nbformat.write(notebook, paths[-1])
    rows = run_lessons(paths, rounds=2)
    assert [(row["round"], row["notebook"]) for row in rows] == [
        (1, "00_first"), (1, "01_second"), (2, "00_first"), (2, "01_second")]
    assert all(row["status"] == "ok" and row["seconds"] > 0 for row in rows)


# -- issue 21's goals: each computed from its rounds, each labelled met or NOT MET -------------

def _server_sample(rate: float, cpu: float) -> Sample:
    return Sample("s", rate, int(rate), 0, 1.0, cpu, cpu / 3, 2 * cpu / 3, 40.0)


def test_the_servers_step_reports_its_three_goals_from_per_round_ratios():
    from bench import bench_servers

    samples = {"nginx": [_server_sample(20_000, 30.0), _server_sample(22_000, 30.0)],
               "on": [_server_sample(19_000, 33.0), _server_sample(18_000, 37.5)],
               "off": [_server_sample(19_500, 31.0), _server_sample(20_000, 32.0)],
               "minimal": [_server_sample(21_000, 30.0), _server_sample(21_000, 30.0)]}
    goals = {f.name: f for f in bench_servers.summarise(samples, "2 rounds") if f.goal}
    assert len(goals) == 3
    minimal = goals["4. kit (log on) / minimal Python server: CPU per connection"]
    assert minimal.spread.values == pytest.approx([1.10, 1.25]) and minimal.target == "<= 1.15"
    assert minimal.met is False  # the median, 1.175, is above 1.15
    log = goals["1. event log on / off: connections/s"]
    assert log.spread.values == pytest.approx([19_000 / 19_500, 0.9]) and log.met is False
    nginx = goals["2. kit (log on) / nginx: connections/s"]
    assert nginx.spread.median == pytest.approx((0.95 + 18 / 22) / 2) and nginx.met is False


def test_the_client_step_reports_the_lean_client_goal_against_wrk():
    from bench import bench_client

    def run(rate: float):
        return bench_client.ClientRun(rate, int(rate), 0, 50.0)

    kept = [{"wrk": run(20_000), bench_client.LEAN: run(17_000), bench_client.CLASSIC: run(8_000)},
            {"wrk": run(20_000), bench_client.LEAN: run(15_000), bench_client.CLASSIC: run(8_000)}]
    (goal,) = [f for f in bench_client.summarise(kept, "2 rounds") if f.goal]
    assert goal.target == ">= 0.80" and goal.spread.median == pytest.approx(0.8) and goal.met


def test_the_summary_lists_the_goals_together_with_their_verdicts_and_the_load(monkeypatch,
                                                                               tmp_path):
    met = Figure("servers", "a goal met", Spread([0.97, 0.99]), "ratio", ">= 0.95", True,
                 goal="issue 21")
    unmet = Figure("client", "a goal missed", Spread([0.7]), "ratio", ">= 0.80", False,
                   goal="issue 21")
    other = Figure("servers", "not a goal", Spread([1.0]), "ratio")
    block = "\n".join(run_all.goals_block([met, other, unmet],
                                          {"servers": (1.5, 2.5), "client": (3.0, 3.5)}))
    assert "a goal met | 0.98 (0.97–0.99, n=2) | >= 0.95 | **met** | servers, load average " \
           "1.5 -> 2.5" in block
    assert "**NOT MET**" in block and "not a goal" not in block
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    run_all.write_summary([met, other, unmet], {"date": "d", "machine": "m", "python": "3",
                                                "nginx": "n", "wrk": "w"}, {}, {}, {},
                          loads={"servers": (1.5, 2.5)})
    summary = (tmp_path / "summary.md").read_text()
    assert summary.index("## Goals") < summary.index("## Every figure")
    assert "bench.run_all --only servers client" in summary


# -- bench_profile's arithmetic ------------------------------------------------------------------

def test_nested_parts_come_out_of_their_enclosing_part_and_the_rest_is_the_loop():
    from bench.bench_profile import _nested

    parts = _nested({"total": 100.0, "wait": 30.0, "accept": 20.0, "conversation": 25.0,
                     "protocol": 5.0, "event log": 10.0})
    assert parts["wait"] == 10.0 and parts["conversation"] == 20.0
    assert parts["loop"] == pytest.approx(100 - (10 + 20 + 20 + 5 + 10))
    minimal = _nested({"total": 50.0, "accept": 30.0, "conversation": 10.0, "close": 5.0})
    assert minimal["loop"] == 5.0 and "wait" not in minimal


def test_the_cpu_timer_takes_its_own_cost_off_each_part_and_off_the_part_around_it(monkeypatch):
    from bench import profile_worker

    ticks = iter(range(0, 10_000, 10))  # every clock reading is 10 ns after the last
    monkeypatch.setattr(profile_worker.time, "thread_time_ns", lambda: next(ticks))
    timer = profile_worker.CpuTimer()
    inner = timer.wrap("inner", lambda: None)
    outer = timer.wrap("outer", lambda: inner())
    timer.inside_ns, timer.whole_ns = 10, 20  # as calibrate() would find with this clock
    outer()
    totals = timer.totals()
    assert totals["inner"] == {"ns": 0, "calls": 1}  # read 10 ns apart: all of it the wrapper's
    # outer read 0 and 30: 10 its own wrapper's, 20 the inner wrapper's whole cost: 0 left
    assert totals["outer"] == {"ns": 0, "calls": 1}


def test_verdict_lines_lists_the_answers_a_lesson_printed_in_order():
    import nbformat

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from verdict_lines import answers

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text="score 0.97\n  The answer: round-robin 0.97, inside\n")]),
        nbformat.v4.new_markdown_cell("The answer: prose is not an output"),
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "execute_result", data={"text/plain": "The answer: busiest share 0.8, outside"})]),
    ])
    assert answers(notebook) == ["The answer: round-robin 0.97, inside",
                                 "The answer: busiest share 0.8, outside"]


def test_rejudging_a_validation_judges_its_kept_live_values_with_this_models_bands(tmp_path):
    """The kept verdicts come back as kept; the new ones are this model's, from the kept
    calibration (here the documented default): a value the kept band missed is inside
    today's band, and one far outside is judged outside."""
    from acceptlab.model import default, save
    from bench import bench_model

    save(default(), tmp_path / "model-calibration-1.json")
    band = bench_model._predict("blocking", "process", {"gap": 0.001}, default())["rr_score"]
    header = "round,cell,strategy,metric,live,low,high,inside,calibrated_shape,load1"
    cell = "0,blocking/process/gap=0.001,blocking"
    rows = [f"{cell},rr_score,{band[0]},{band[1]},{band[1]},False,True,0.5",
            f"{cell},p50_ms,1000.0,0.0,2000.0,True,True,0.5"]
    (tmp_path / "model.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "model-done-when.csv").write_text(
        "\n".join([header + ",repeat", *(row + ",0" for row in rows)]) + "\n")

    result = bench_model.rejudge(tmp_path)
    assert [row["inside"] for row in result["kept"]] == [False, True]
    assert [row["inside"] for row in result["now"]] == [True, False]
    lines = "\n".join(bench_model._rejudge_lines(result))
    assert "| all | 50% | 50% |" in lines and "kept 1; this model's 1" in lines
