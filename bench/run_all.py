"""``make bench``: every performance comparison of issue 7, side by side, in one run (10-13 min).

    .venv/bin/python -m bench.run_all                 # everything
    .venv/bin/python -m bench.run_all --only servers client
    .venv/bin/python -m bench.run_all --quick         # fewer rounds, for trying things out
    .venv/bin/python -m bench.run_all --only servers client --no-install   # issue 21's four goals

Steps (each prints its own runs as it goes):

    servers    1, 2, 4  the kit's server, event log on / off, vs nginx and a minimal Python server
    client     3        the kit's load generator vs wrk, against the same nginx
    patch      -        proposed patches (bench/patches/*.diff) vs the code as it is (none now;
                        not in the default run)
    profile    -        a connection's cost part by part, kit vs minimal: instructions (callgrind),
                        system calls (strace), CPU time per part (one worker under wrk)
    scale      6        1-16 workers x 1-64 clients, threads and processes: table and plot
    notebooks  5        every lesson three times, each in a fresh kernel: the course's goals
    fixes      -        each fix for the uneven split vs blocking; handoff vs Node's SCHED_RR
    model      25       the model's 90 % bands beside live runs: share inside, per strategy
    timings    -        the kit's time promises (stop, Ctrl-C, durations...) against their goals
    class      -        1, 4, 8, 16 students on one JupyterHub running lessons 02, 05, 06 at once
                        (not in the default run: --only class; needs npm for the hub's proxy)

Every comparison alternates its contestants round by round in one run and reports
medians with their range (min-max), and ratios taken within each round: the
machine is shared, so absolute figures drift; ratios of neighbouring runs drift
much less.  The results go to bench/results/: summary.md and summary.csv (the
table the README links; summary-partial.* after --only or --quick), and one CSV
per step.

Tools: nginx and wrk (Debian: nginx-light, wrk) and strace are looked for and,
when missing, installed with apt-get if this runs as root on Debian (--no-install
to forbid that); a step whose tool is still missing is skipped with a loud reason.
A step that fails is reported (its traceback printed, its name under "Failed" in
the summary) and the others still run; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

from . import RESULTS
from .nginx import nginx_binary
from .rows import SKIPPED, Figure, banner, loud_skip, markdown_table, verdict, write_csv

STEPS = ("servers", "client", "patch", "profile", "scale", "notebooks", "fixes", "model",
         "timings", "class")
# Asked for by name only: the class takes a quarter of an hour on two cores; patch measures
# proposed patches, and there are none at the moment (bench/patches/ is empty).
DEFAULT = tuple(step for step in STEPS if step not in ("patch", "class"))
NEEDS = {"servers": ("nginx", "wrk"), "client": ("nginx", "wrk"), "patch": ("nginx", "wrk"),
         "profile": ("nginx", "wrk", "strace", "valgrind"), "scale": ("wrk",), "notebooks": (),
         "fixes": ("wrk",), "model": (), "timings": (), "class": ()}
PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "strace": "strace", "valgrind": "valgrind"}


def find_tool(name: str) -> str | None:
    return nginx_binary() if name == "nginx" else shutil.which(name)


def ensure_tools(allow_install: bool) -> dict[str, bool]:
    """Which of nginx, wrk, strace are here; try apt-get for the missing ones when allowed."""
    missing = [name for name in PACKAGES if not find_tool(name)]
    if missing and allow_install and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = [PACKAGES[name] for name in missing]
        print(f"!!! installing {' '.join(packages)} with apt-get (run with --no-install to skip)",
              flush=True)
        command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(command, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env)
            subprocess.run(command, env=env)
    return {name: find_tool(name) is not None for name in PACKAGES}


def versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "-"
        text = (done.stdout + done.stderr).strip()
        return text.splitlines()[0] if text else "-"

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.release()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "nginx": first_line([find_tool("nginx") or "nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
    }


def goals_block(figures: list[Figure], loads: dict[str, tuple[float, float]]) -> list[str]:
    """The figures that answer for a goal, together: median (range, rounds), target, verdict,
    and the machine's load average (1 min) when their step began and ended."""
    lines = []
    for figure in figures:
        if not figure.goal:
            continue
        value = figure.spread.fmt(figure.digits) if figure.spread.values else "n/a"
        load = loads.get(figure.step)
        where = f"load average {load[0]:.1f} -> {load[1]:.1f}" if load else ""
        lines.append(f"| {figure.name} | {value} | {figure.target} | **{verdict(figure)}** | "
                     f"{figure.step}, {where} |")
    if not lines:
        return []
    return ["| goal | median (min–max, n) | target | verdict | step, machine |",
            "|---|---|---|---|---|", *lines]


def write_summary(figures: list[Figure], meta: dict, timings: dict[str, float],
                  skipped: dict[str, str], failed: dict[str, str],
                  name: str = "summary", loads: dict | None = None) -> None:
    rows = [f.row() for f in figures]
    write_csv(RESULTS / f"{name}.csv", rows)
    goals = goals_block(figures, loads or {})
    table = [{"figure": f.name,
              "median (min-max, n)": f.spread.fmt(f.digits) if f.spread.values else "n/a",
              "unit": f.unit, "target": f.target,
              "met": "" if f.met is None else ("yes" if f.met else "**NO**"),
              "note": f.note} for f in figures]
    unmet = [f for f in figures if f.met is False]
    lines = [
        "# acceptlab performance, measured side by side",
        "",
        f"`make bench` ({' '.join(sys.argv[1:]) or 'all steps'}) on {meta['date']}: "
        f"{meta['machine']}, Python {meta['python']}, {meta['nginx']}, {meta['wrk']}. "
        "Loopback only; "
        "wrk with `-H 'Connection: close'` (every request a new connection).",
        "",
        "Every comparison alternates its contestants round by round within one run; a ratio is "
        "taken within each round, and the table gives the median of those ratios with their "
        "range (min-max) and the number of rounds. The machine is shared: absolute rates move "
        "with whatever else runs (the `machine` line says how much CPU other processes used "
        "meanwhile), the ratios much less. \"CPU-normalised\" ratios compare connections per "
        "CPU-second of server + wrk, from the OS's accounting: the throughput ratio an idle "
        "machine would show.",
        "",
        *(["## Goals", "", *goals, "",
            "The goals of issue 21 are measured by `python -m bench.run_all --only servers client` "
            "(`make bench-goals`).", "", "## Every figure", ""] if goals else []),
        markdown_table(table),
        "",
        "Targets not met: " + ("none." if not unmet else "; ".join(f.name for f in unmet) +
                               ". See bench/README.md for what limits each."),
        "",
        "Skipped: " + ("nothing." if not skipped else
                       "; ".join(f"{step} ({why})" for step, why in skipped.items())),
        "",
        "Failed: " + ("nothing." if not failed else
                      "; ".join(f"{step} ({why})" for step, why in failed.items())),
        "",
        "Step times: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items())
        + f"; total {sum(timings.values()):.0f} s.",
        "",
        "Files: [servers.csv](servers.csv) (every wrk run), [client.csv](client.csv), "
        "[syscalls.csv](syscalls.csv), [profile_parts.csv](profile_parts.csv), "
        "[profile_kit.csv](profile_kit.csv), [scale.md](scale.md) / [scale.csv](scale.csv) / "
        "[scale.png](scale.png), [notebooks.csv](notebooks.csv), [fixes.csv](fixes.csv), "
        "[timings.csv](timings.csv), [class.md](class.md) / [class.csv](class.csv).",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (not for the record)")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    args = parser.parse_args()
    steps = args.only or list(DEFAULT)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tools = ensure_tools(allow_install=not args.no_install)
    meta = versions()
    banner("acceptlab bench: " + ", ".join(f"{k} {'found' if v else 'MISSING'}"
                                           for k, v in tools.items()))
    rounds = {"servers": 2 if args.quick else 5, "client": 2 if args.quick else 5,
              "patch": 2 if args.quick else 5, "scale": 1 if args.quick else 3,
              "fixes": 2 if args.quick else 5, "timings": 2 if args.quick else 5,
              "notebooks": 1 if args.quick else 3}
    limit = {"max_rounds": 2} if args.quick else {}
    options = {"servers": dict(min_rounds=rounds["servers"], **limit),
               "client": dict(min_rounds=rounds["client"], **limit),
               "patch": dict(min_rounds=rounds["patch"], **limit),
               "profile": dict(rounds=1, connections=200) if args.quick else {},
               "scale": dict(repeats=rounds["scale"]),
               "fixes": dict(min_rounds=rounds["fixes"], **limit),
               "model": dict(repeats=1 if args.quick else 3),
               "timings": dict(rounds=rounds["timings"]),
               "notebooks": dict(rounds=rounds["notebooks"]),
               "class": dict(students=(1, 2) if args.quick else (1, 4, 8, 16))}
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    loads: dict[str, tuple[float, float]] = {}  # the 1-minute load average as each step began, ended
    skipped = SKIPPED  # filled by loud_skip, here and inside the steps
    failed: dict[str, str] = {}
    for step in steps:
        absent = [tool for tool in NEEDS[step] if not tools[tool]]
        if absent:
            why = f"{', '.join(absent)} not installed (Debian: apt-get install " \
                  f"{' '.join(PACKAGES[t] for t in absent)})"
            loud_skip(step, why)
            continue
        step_started, load_before = time.monotonic(), os.getloadavg()[0]
        try:
            module = importlib.import_module(f"{__package__}.bench_{step}")
            figures += module.run(**options.get(step, {}))
        except Exception as exc:  # one broken step must not cost the others' results
            traceback.print_exc()
            failed[step] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            print(f"\n!!! FAILED {step}: {failed[step]}", flush=True)
        timings[step] = time.monotonic() - step_started
        loads[step] = (load_before, os.getloadavg()[0])
        print(f"  ({step}: {timings[step]:.0f} s; load average {load_before:.1f} -> "
              f"{loads[step][1]:.1f})", flush=True)
    # a partial or quick run must not replace the record of the last full one
    name = "summary-partial" if args.only or args.quick else "summary"
    write_summary(figures, meta, timings, skipped, failed, name, loads)
    banner(f"summary ({time.monotonic() - started:.0f} s in all) -> bench/results/{name}.md")
    for figure in figures:
        value = figure.spread.fmt(figure.digits) if figure.spread.values else "n/a"
        said = f"  {verdict(figure).upper()}" if figure.target else ""
        target = f"  [target {figure.target}]" if figure.target else ""
        print(f"  {figure.name:<52} {value:>30} {figure.unit:<6}{target}{said}")
    goals = goals_block(figures, loads)
    if goals:
        print("\n  goals:\n  " + "\n  ".join(goals))
    unmet = [f.name for f in figures if f.met is False]
    if unmet:
        print("\n  targets NOT met: " + "; ".join(unmet)
              + " (bench/README.md says what limits each)")
    for step, why in skipped.items():
        print(f"  !!! skipped {step}: {why}")
    for step, why in failed.items():
        print(f"  !!! FAILED {step}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
