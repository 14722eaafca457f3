"""Write docs/teaching-guide.md's timing table from the bench's runs of the course.

    .venv/bin/python -m bench.run_all --only notebooks    # three rounds -> bench/results/notebooks.csv
    .venv/bin/python tools/timing_table.py                # rewrites the table in the guide
    .venv/bin/python tools/timing_table.py --check        # exit 1 if the guide's table is stale

The table lives between two marker comments in the guide; only that region is rewritten,
so the prose around it stays whoever wrote it.  Its "run all" column is computed from every
run in the CSV (median and range per lesson, and for the course: each round's lessons added
up), against the goals of tools/notebook_runner.py; its last column, the class time a
teacher plans with discussion, is a suggestion, not a measurement, and is carried over from
the table already there (matched by lesson number).  So the timings cannot drift from the
measurements: they are never typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebook_runner as runner  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "teaching-guide.md"
CSV = ROOT / "bench" / "results" / "notebooks.csv"
BEGIN = ("<!-- timing-table begin: written by tools/timing_table.py from "
         "bench/results/notebooks.csv; edit the class-time column only -->")
END = "<!-- timing-table end -->"
COLUMNS = {"round", "notebook", "seconds", "status", "load_average", "date", "machine"}


class StaleResults(ValueError):
    """The CSV is not a run of bench/bench_notebooks.py as it is now (or has no rows)."""


def read_runs(path: Path) -> list[dict]:
    """Every lesson run of the CSV; raises StaleResults for an older format."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    missing = COLUMNS - set(rows[0]) if rows else COLUMNS
    if missing:
        raise StaleResults(f"{path} has no {', '.join(sorted(missing))} column: it predates "
                           "the three-round bench; run `python -m bench.run_all --only "
                           "notebooks` first")
    for row in rows:
        row["round"], row["seconds"] = int(row["round"]), float(row["seconds"])
        row["load_average"] = float(row["load_average"])
    return rows


def spread(values: list[float]) -> str:
    """'12.3 (11.8–13.0)': median and range, one decimal."""
    if len(values) == 1:
        return f"{values[0]:.1f} (one run)"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def lesson_name(stem: str) -> str:
    """'04_firing_load' -> '04 firing load'."""
    return stem.replace("_", " ")


def class_times(region: str) -> dict[str, str]:
    """The class-time column of the table in ``region``, by two-digit lesson number."""
    times = {}
    for line in region.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"\d\d", cells[0][:2]) and not cells[0][2:3].isdigit():
            times[cells[0][:2]] = cells[-1]
    return times


def table(runs: list[dict], times: dict[str, str]) -> str:
    """The region's text (without the markers) for these runs."""
    lessons = list(dict.fromkeys(row["notebook"] for row in runs))
    rounds = sorted({row["round"] for row in runs})
    failed = sorted({row["notebook"] for row in runs if row["status"] != "ok"})
    loads = [row["load_average"] for row in runs]
    first = runs[0]
    lines = [
        f"Measured with `python -m bench.run_all --only notebooks` on {first['date'][:10]} "
        f"({first['machine']}; load average {min(loads):.1f}–{max(loads):.1f} while it ran): "
        f"every lesson run top to bottom in a fresh kernel with its default parameters, "
        f"{len(rounds)} rounds of the whole course; the median and, in brackets, the range. "
        f"The goals are {runner.LESSON_GOAL:g} s per lesson and {runner.COURSE_GOAL:g} s for "
        "the course; `python tools/timing_table.py` writes this table from those runs.",
        "",
        f"| notebook | run all (s) | within {runner.LESSON_GOAL:g} s | class time with discussion |",
        "|---|---|---|---|",
    ]
    for lesson in lessons:
        seconds = [row["seconds"] for row in runs if row["notebook"] == lesson]
        verdict = ("FAILED in a run" if lesson in failed
                   else "yes" if statistics.median(seconds) <= runner.LESSON_GOAL else "**no**")
        lines.append(f"| {lesson_name(lesson)} | {spread(seconds)} | {verdict} | "
                     f"{times.get(lesson[:2], '')} |")
    totals = [sum(row["seconds"] for row in runs if row["round"] == r) for r in rounds]
    verdict = "yes" if statistics.median(totals) <= runner.COURSE_GOAL and not failed else "**no**"
    lines.append(f"| the whole course | {spread(totals)} | within {runner.COURSE_GOAL:g} s: "
                 f"{verdict} | |")
    return "\n".join(lines)


def rewrite(guide: str, runs: list[dict]) -> str:
    """``guide`` with the text between the markers replaced by the table of ``runs``."""
    if guide.count(BEGIN) != 1 or guide.count(END) != 1:
        raise ValueError(f"the guide must hold the markers once each:\n{BEGIN}\n{END}")
    head, rest = guide.split(BEGIN)
    region, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table(runs, class_times(region))}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=CSV, help="the bench's runs (default: %(default)s)")
    parser.add_argument("--guide", type=Path, default=GUIDE, help="default: %(default)s")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the guide's table is not the CSV's")
    args = parser.parse_args(argv)
    try:
        runs = read_runs(args.csv)
        text = args.guide.read_text(encoding="utf-8")
        new = rewrite(text, runs)
    except (OSError, ValueError) as exc:
        print(f"timing_table: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"timing_table: the table in {args.guide} is not that of {args.csv}: run "
                  "python tools/timing_table.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.guide.write_text(new, encoding="utf-8")
        print(f"wrote the timing table of {args.guide} from {args.csv}")
    else:
        print(f"the timing table of {args.guide} is already that of {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
