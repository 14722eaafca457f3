"""Target 5: the notebook suite's run time, every notebook in a fresh kernel.

Uses tools/notebook_runner.py (the runner the tests and the book use) when it
exists; otherwise times ``jupyter nbconvert --execute`` per notebook.  With no
notebooks at all it says so and reports nothing.  One pass: a second pass
would double the longest step of the benchmark, so the spread shown is that
of the notebooks, not of repeated suites.

tools/ is a folder of scripts, not a package, so the runner is driven in a
child Python started in that folder (``python -c`` imports from its working
directory), which prints one JSON line per notebook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import PYTHON, RESULTS, ROOT
from .rows import Figure, banner, check, loud_skip, write_csv
from .stats import Spread

STEP = "notebooks"
BUDGET = 120.0  # seconds, all notebooks together

RUNNER = """
import json, sys
from notebook_runner import run_notebook
for path in sys.argv[1:]:
    result = run_notebook(path)
    print(json.dumps({"seconds": result.seconds, "ok": result.ok,
                      "error": (result.error or "; ".join(result.error_outputs))[:200]}),
          flush=True)
"""


def _show(path: Path, row: dict) -> dict:
    print(f"  {path.name:<40} {row['seconds']:6.1f} s  {row['status']}", flush=True)
    return row


def _with_runner(paths: list[Path]) -> list[dict]:
    child = subprocess.Popen([PYTHON, "-c", RUNNER, *map(str, paths)], cwd=ROOT / "tools",
                             stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        for path, line in zip(paths, child.stdout):
            result = json.loads(line)
            rows.append(_show(path, {"notebook": path.name,
                                     "seconds": round(result["seconds"], 1),
                                     "status": "ok" if result["ok"] else "error",
                                     "error": result["error"]}))
    finally:
        child.stdout.close()
        child.wait()
    if len(rows) < len(paths):
        raise RuntimeError(f"tools/notebook_runner.py stopped after {len(rows)} of "
                           f"{len(paths)} notebooks (exit code {child.returncode})")
    return rows


def _with_nbconvert(paths: list[Path]) -> list[dict]:
    jupyter = Path(PYTHON).parent / "jupyter"
    rows = []
    with tempfile.TemporaryDirectory(prefix="acceptlab-nb-") as out:
        for path in paths:
            started = time.perf_counter()
            done = subprocess.run([str(jupyter), "nbconvert", "--to", "notebook", "--execute",
                                   "--ExecutePreprocessor.timeout=60", "--output-dir", out,
                                   str(path)], cwd=path.parent, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            error = done.stderr.strip().splitlines()[-1][:200] if done.returncode else ""
            rows.append(_show(path, {"notebook": path.name, "seconds": round(seconds, 1),
                                     "status": "ok" if done.returncode == 0 else "error",
                                     "error": error}))
    return rows


def run() -> list[Figure]:
    banner(f"{STEP}: every notebook in a fresh kernel (budget {BUDGET:.0f} s)")
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        loud_skip("notebook timing", "there are no notebooks (notebooks/NN_*.ipynb) yet")
        return []
    if (ROOT / "tools" / "notebook_runner.py").exists():
        how, rows = "tools/notebook_runner.py", _with_runner(paths)
    elif (Path(PYTHON).parent / "jupyter").exists() or shutil.which("jupyter"):
        how, rows = "jupyter nbconvert --execute", _with_nbconvert(paths)
    else:
        loud_skip("notebook timing", "neither tools/notebook_runner.py nor jupyter is available")
        return []
    total = sum(r["seconds"] for r in rows)
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    rows.append({"notebook": "total", "seconds": round(total, 1),
                 "status": "ok" if not failed else f"{len(failed)} failed", "error": ""})
    write_csv(RESULTS / "notebooks.csv", rows)
    print(f"  total {total:.1f} s for {len(paths)} notebooks ({how})")
    spread = Spread([total])
    return [
        Figure(STEP, "5. notebook suite, total run time", spread, "s", f"<= {BUDGET:.0f}",
               check(spread, f"<= {BUDGET:.0f}") and not failed, digits=1,
               note=f"{len(paths)} notebooks, one fresh kernel each, one pass ({how})"
                    + (f"; FAILED: {', '.join(failed)}" if failed else "")),
        Figure(STEP, "5. per-notebook run time", Spread([r["seconds"] for r in rows[:-1]]), "s",
               digits=1, note="over the notebooks (max = the slowest); notebooks.csv has each"),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
