"""Target 5 (issue 20): how long the course takes, each lesson in a fresh kernel, three times.

A class waits for every second of "Run all": the goals are each lesson within
``LESSON_GOAL`` (15 s) and the whole course within ``COURSE_GOAL`` (60 s), with default
parameters, on a 2-core machine (tools/notebook_runner.py holds both).  Each round runs
every lesson once, in course order, each in a fresh kernel started by
tools/notebook_runner.py (the runner the tests and the book use); the figures are the median
and range over the rounds, per lesson and for the course (a round's lessons added up), each
"met" when its median is within the goal.

Every run is a row of ``results/notebooks.csv`` (round, lesson, seconds, status, the load
average when it started, the date and the machine), which
``tools/timing_table.py`` turns into docs/teaching-guide.md's timing table.

tools/ is a folder of scripts, not a package, so the runner is driven in a child Python
started in that folder (``python -c`` imports from its working directory), which prints
one JSON line per lesson run.

    .venv/bin/python -m bench.run_all --only notebooks        # three rounds
    .venv/bin/python -m bench.bench_notebooks --rounds 1      # one, to try it out
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess

from . import PYTHON, RESULTS, ROOT
from .rows import Figure, banner, check, loud_skip, write_csv
from .stats import Spread

STEP = "notebooks"
CSV = RESULTS / "notebooks.csv"

RUNNER = """
import json, os, sys
from notebook_runner import run_notebook
for path in sys.argv[1:]:
    load = os.getloadavg()[0]
    result = run_notebook(path)
    print(json.dumps({"seconds": result.seconds, "ok": result.ok, "load_average": load,
                      "error": (result.error or "; ".join(result.error_outputs))[:200]}),
          flush=True)
"""


def _goals() -> tuple[float, float]:
    """(LESSON_GOAL, COURSE_GOAL) from tools/notebook_runner.py, read in a child as it runs."""
    done = subprocess.run([PYTHON, "-c", "import notebook_runner as r; "
                           "print(r.LESSON_GOAL, r.COURSE_GOAL)"], cwd=ROOT / "tools",
                          capture_output=True, text=True, check=True)
    lesson, course = map(float, done.stdout.split())
    return lesson, course


def run_lessons(paths: list, rounds: int) -> list[dict]:
    """Every lesson ``rounds`` times (round by round, in course order): one row per run."""
    machine = f"{platform.system()} {platform.release()}, {os.cpu_count()} cores"
    date = datetime.datetime.now().isoformat(timespec="seconds")
    order = [(round_ + 1, path) for round_ in range(rounds) for path in paths]
    child = subprocess.Popen([PYTHON, "-c", RUNNER, *[str(path) for _, path in order]],
                             cwd=ROOT / "tools", stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        for (round_, path), line in zip(order, child.stdout):
            result = json.loads(line)
            row = {"round": round_, "notebook": path.stem, "seconds": round(result["seconds"], 2),
                   "status": "ok" if result["ok"] else "error",
                   "load_average": round(result["load_average"], 2), "date": date,
                   "machine": machine, "error": result["error"]}
            print(f"  round {round_}: {path.stem:<36} {row['seconds']:6.1f} s  {row['status']}"
                  f"  (load average {row['load_average']:.1f})", flush=True)
            rows.append(row)
    finally:
        child.stdout.close()
        child.wait()
    if len(rows) < len(order):
        raise RuntimeError(f"tools/notebook_runner.py stopped after {len(rows)} of "
                           f"{len(order)} lesson runs (exit code {child.returncode})")
    return rows


def figures_of(rows: list[dict], lesson_goal: float, course_goal: float) -> list[Figure]:
    """Per lesson and for the course: median and range over the rounds, against the goals."""
    lessons = list(dict.fromkeys(row["notebook"] for row in rows))
    rounds = sorted({row["round"] for row in rows})
    failed = sorted({row["notebook"] for row in rows if row["status"] != "ok"})
    totals = Spread([sum(row["seconds"] for row in rows if row["round"] == r) for r in rounds])
    course_target = f"<= {course_goal:g}"
    figures = [Figure(STEP, "5. the course, every lesson in a fresh kernel", totals, "s",
                      course_target, check(totals, course_target) and not failed, digits=1,
                      note=f"{len(lessons)} lessons, {len(rounds)} rounds"
                           + (f"; FAILED: {', '.join(failed)}" if failed else ""))]
    lesson_target = f"<= {lesson_goal:g}"
    for lesson in lessons:
        spread = Spread([row["seconds"] for row in rows if row["notebook"] == lesson])
        ok = lesson not in failed
        figures.append(Figure(STEP, f"5. lesson {lesson}", spread, "s", lesson_target,
                              check(spread, lesson_target) and ok, digits=1,
                              note="" if ok else "FAILED in a round"))
    return figures


def run(rounds: int = 3) -> list[Figure]:
    lesson_goal, course_goal = _goals()
    banner(f"{STEP}: every lesson in a fresh kernel, {rounds} rounds (goals: each lesson "
           f"<= {lesson_goal:g} s, the course <= {course_goal:g} s)")
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        loud_skip("notebook timing", "there are no notebooks (notebooks/NN_*.ipynb) yet")
        return []
    rows = run_lessons(paths, rounds)
    write_csv(CSV, rows)
    figures = figures_of(rows, lesson_goal, course_goal)
    print(f"\n  {'':<44} {'median (min-max, n)':>24}  goal")
    for figure in figures:
        verdict = "met" if figure.met else "NOT MET"
        print(f"  {figure.name.removeprefix('5. '):<44} {figure.spread.fmt(1):>24}  "
              f"{figure.target} s: {verdict}{'  ' + figure.note if 'FAILED' in figure.note else ''}")
    print(f"  (every run: {CSV.relative_to(ROOT)}; the teaching guide's table: "
          f"python tools/timing_table.py)")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: %(default)s)")
    run(rounds=parser.parse_args().rounds)
