"""Issue 26: a class on one JupyterHub, measured: N students run lessons 02, 05 and 06 at once.

    python -m bench.run_all --only class                 # N = 1, 4, 8, 16 (for the record)
    python -m bench.bench_class --students 1 2           # small N, to see that it works

For each N, a fresh JupyterHub on 127.0.0.1 (bench/hub.py) starts N students' servers at
once; every student then runs the lessons one after the other, each in a fresh kernel of
their own server, driven over its websocket as JupyterLab drives it, while bench/watch.py
samples /proc.  Per N it reports:

* **lessons completed**: lessons with no error output, of N x lessons;
* **the verdicts' agreement with the quiet run**: each live run a lesson made (found by
  the probe of bench/hub.py) is judged on the lesson's own claims, and the judgement is
  compared with that of the same run in the quiet run, N = 1, measured first:

  - *round-robin score* of strategies that take turns (``analysis.TAKE_TURNS``): turns
    held (score >= 0.9) or blurred;
  - *busiest share* of the one-worker strategies (``analysis.ONE_WORKER``): one worker
    took most (share > 0.5) or not;
  - *wakeups per connection* of the herd, wake-one and hashed strategies: a herd
    (> 1.5) or one wakeup.

  Agreement is the share of (student, run) judgements equal to the quiet run's;
* **wall time per lesson** (median and slowest over the students), from asking for a
  kernel to the last cell's reply;
* **processes, threads and memory per student**: peaks over the students of what the
  watcher saw in a student's tree (server, kernels, workers, clients) every 0.1 s; memory
  is the sum of PSS (shared pages divided among their sharers), taken every second;
* **CPU seconds per student**: the CPU time of this process's tree (the hub, its proxy, the
  students' servers, kernels, workers and clients, and this harness) over the class,
  divided by the students;
* **other work**: cores used by everything outside the class while it ran
  (acceptlab.linux.busy: the machine's busy time less this process's tree, which holds
  the hub), and the load average before the class started.

The quiet run is only as quiet as the machine: take the table on a machine with nothing
else running (``other work`` says how far it was from that).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from acceptlab.linux.busy import BusySampler
from acceptlab.analysis import HASHED, HERD, ONE_WORKER, TAKE_TURNS

from . import RESULTS
from .hub import Hub, HubUnavailable, LessonResult, install_node_tools, lessons, run_lesson
from .rows import Figure, banner, loud_skip, markdown_table, write_csv
from .stats import Spread
from .watch import Watcher

STEP = "class"
STUDENTS = (1, 4, 8, 16)
LESSONS = ("02", "05", "06")

TURNS_HELD = 0.9  # round-robin score at or above: the turns held
ONE_TOOK_MOST = 0.5  # busiest share above: one worker took most
HERD_WAKEUPS = 1.5  # wakeups per connection above: a herd


def judge(run: dict) -> dict[str, str]:
    """The lesson's claims about one run, judged: {'rr': 'held'|'blurred', ...}."""
    strategy, verdicts = run.get("strategy"), {}
    score, share, wakeups = run.get("rr_score"), run.get("busiest_share"), \
        run.get("wakeups_per_accept")
    if strategy in TAKE_TURNS and score is not None:
        verdicts["rr"] = "held" if score >= TURNS_HELD else "blurred"
    if strategy in ONE_WORKER and share is not None:
        verdicts["busiest"] = "one took most" if share > ONE_TOOK_MOST else "spread"
    counted = wakeups is not None and not math.isnan(wakeups)  # NaN: wakeups not counted here
    if strategy in TAKE_TURNS + ONE_WORKER + HERD + HASHED and counted:
        verdicts["wakeups"] = "herd" if wakeups > HERD_WAKEUPS else "one"
    return verdicts


def judgements(results: list[LessonResult]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(lesson, run name) -> metric -> every student's verdict."""
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    for result in results:
        for run in result.probe.get("runs", []):
            per_metric = found.setdefault((result.lesson, run["name"]), {})
            for metric, verdict in judge(run).items():
                per_metric.setdefault(metric, []).append(verdict)
    return found


def agreement(quiet: dict, crowd: dict, metric: str) -> tuple[int, int]:
    """(agreeing, compared) verdicts on ``metric``: each crowd verdict against the quiet one."""
    agree = compared = 0
    for key, per_metric in crowd.items():
        reference = quiet.get(key, {}).get(metric)
        if not reference:
            continue  # the quiet run made no such run (or its lesson failed)
        for verdict in per_metric.get(metric, []):
            compared += 1
            agree += verdict == reference[0]
    return agree, compared


def _students_day(student, paths: list[Path]) -> list[LessonResult]:
    return [run_lesson(student, path) for path in paths]


def one_class(size: int, paths: list[Path]) -> dict:
    """Run one class of ``size`` students; return its raw results."""
    names = [f"student{n:02d}" for n in range(1, size + 1)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="acceptlab-class-") as scratch:
        hub = Hub(Path(scratch) / "hub", users=names).start()
        try:
            with ThreadPoolExecutor(size) as pool:
                students = list(pool.map(hub.start_server, names))
            watcher = Watcher({s.name: s.server_pid for s in students}, also=[hub.process.pid])
            busy = BusySampler().start()  # this process's tree: the hub and the whole class
            watcher.start()
            started = time.monotonic()
            with ThreadPoolExecutor(size) as pool:
                days = list(pool.map(lambda s: _students_day(s, paths), students))
            seconds = time.monotonic() - started
            other = busy.stop()
        finally:
            hub.stop()
        watcher.stop()
    return {"size": size, "results": [r for day in days for r in day], "watcher": watcher,
            "other": other, "seconds": seconds, "load_before": load_before}


def _fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def row(klass: dict, quiet: dict | None, lesson_names: list[str]) -> dict:
    results, watcher = klass["results"], klass["watcher"]
    done = sum(r.ok for r in results)
    line = {"students": klass["size"], "lessons completed": f"{done}/{len(results)}"}
    for name in lesson_names:
        line[f"{name[:2]} s (median / max)"] = _fmt([r.seconds for r in results
                                                     if r.lesson == name and r.ok])
    crowd = judgements(results)
    for metric, title in (("rr", "round-robin"), ("busiest", "busiest share"),
                          ("wakeups", "wakeups/conn")):
        if quiet is None:
            line[f"{title} agrees"] = "(quiet run)"
            continue
        agree, compared = agreement(quiet, crowd, metric)
        line[f"{title} agrees"] = f"{agree}/{compared}" if compared else "n/a"
    costs = list(watcher.cost.values())
    line["processes/student (max)"] = max(c.processes for c in costs)
    line["threads/student (max)"] = max(c.threads for c in costs)
    line["PSS MB/student (median / max)"] = _fmt([c.pss_mb for c in costs], 0)
    busy = [r["machine_busy"] for res in results for r in res.probe.get("runs", [])
            if r.get("machine_busy") is not None]
    used = klass["other"]
    line["CPU s/student"] = round(used.own * used.seconds / klass["size"], 1)
    line["runs' machine_busy (median / max)"] = _fmt(busy, 2)
    line["other work, cores"] = f"{klass['other'].other:.2f} of {klass['other'].cpus}"
    line["load avg before"] = f"{klass['load_before']:.2f}"
    line["class s"] = round(klass["seconds"], 1)
    return line


def run(students: tuple[int, ...] = STUDENTS, lesson_numbers: tuple[str, ...] = LESSONS
        ) -> list[Figure]:
    banner(f"{STEP}: {' / '.join(map(str, students))} students on one JupyterHub, each running "
           f"lessons {', '.join(lesson_numbers)}")
    try:
        install_node_tools()
        paths = lessons(*lesson_numbers)
        if importlib.util.find_spec("jupyterhub") is None:
            raise HubUnavailable("jupyterhub is not installed (pip install 'acceptlab[hub]')")
    except (HubUnavailable, FileNotFoundError) as exc:
        loud_skip(STEP, str(exc))
        return []
    names = [path.stem for path in paths]
    rows, figures, quiet = [], [], None
    for size in sorted(students):
        print(f"  {size} student(s)...", flush=True)
        klass = one_class(size, paths)
        line = row(klass, quiet, names)
        if quiet is None:
            quiet = judgements(klass["results"])  # the smallest class is the reference
        rows.append(line)
        print("    " + "; ".join(f"{k}: {v}" for k, v in line.items()), flush=True)
        results = klass["results"]
        figures.append(Figure(STEP, f"class of {size}: lessons completed",
                              Spread([sum(r.ok for r in results) / len(results)]), "share",
                              note=f"other work {klass['other'].other:.2f} cores"))
        figures.append(Figure(STEP, f"class of {size}: seconds per lesson",
                              Spread([r.seconds for r in results if r.ok]), "s", digits=1))
        figures.append(Figure(STEP, f"class of {size}: PSS per student",
                              Spread([c.pss_mb for c in klass["watcher"].cost.values()]), "MB",
                              digits=0))
    # only the full table is the record; a smaller class must not replace it
    name = "class" if tuple(sorted(students)) == STUDENTS else "class-partial"
    write_csv(RESULTS / f"{name}.csv", rows)
    (RESULTS / f"{name}.md").write_text(
        "# A class on one JupyterHub (bench/bench_class.py)\n\n"
        f"Lessons {', '.join(lesson_numbers)}, run by every student one after the other, all "
        "students at once; agreement is with the smallest class (the quiet run).\n\n"
        + markdown_table(rows))
    print(f"\n{markdown_table(rows)}\n  -> bench/results/{name}.md", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=list(STUDENTS),
                        help="class sizes; the smallest is the quiet reference")
    parser.add_argument("--lessons", nargs="+", default=list(LESSONS),
                        help="lesson numbers, e.g. 02 05 06")
    args = parser.parse_args()
    run(tuple(args.students), tuple(args.lessons))


if __name__ == "__main__":
    main()
