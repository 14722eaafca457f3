"""Proposed patches (bench/patches/*.diff), measured against the code as it is.

There are none at the moment: 02-log-off-really-off.diff (with the log off, do
not read the context-switch counter either) went into src/ on 2026-11-28, and
01-hotpath.diff's two ideas (optimistic I/O, the reply built once per worker)
went in, in another form, with issue 21 (2026-12-07); both are in the git
history.  The step is not in ``make bench``'s default run; ``--only patch``
runs it, and says so when there is nothing to measure.  Patches are applied
to a temporary copy of src/ (never to src/ itself), and the copy's server runs
beside the current one: current (log on), patched (log on), patched (log off)
and nginx, in mirrored rotating rounds as in the servers step.  A patch already
in src/ is left out; if none is left, or one no longer applies, the step says
so and measures nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from . import BENCH, RESULTS, ROOT
from .nginx import Nginx
from .rounds import alternate
from .rows import Figure, banner, loud_skip, write_csv
from .servers import KitServer
from .stats import Spread
from .wrk import Sample, measure

STEP = "patch"
PATCHES = BENCH / "patches"  # *.diff, applied in name order


def _patch(text: str, directory: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["patch", "-p1", "--silent", *options, "-d", str(directory)],
                          input=text, capture_output=True, text=True)


def patched_copy() -> tuple[Path | None, str]:
    """A temporary copy of src/ with every patch not yet in src/ applied; or None and why not."""
    patches = sorted(PATCHES.glob("*.diff"))
    if not patches:
        return None, f"there are no patches in {PATCHES.relative_to(ROOT)}/"
    if not shutil.which("patch"):
        return None, "the patch program is not installed"
    root = Path(tempfile.mkdtemp(prefix="acceptlab-patched-"))
    shutil.copytree(ROOT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    applied, notes = [], []
    for path in patches:
        text = path.read_text()
        # --force: take -R literally (--batch would quietly apply it forwards instead)
        if _patch(text, ROOT, "-R", "--dry-run", "--force").returncode == 0:
            notes.append(f"{path.name} is in src/ already")
            continue
        done = _patch(text, root, "--forward", "--batch")
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            problem = (done.stdout + done.stderr).strip()[:300]
            return None, f"{path.name} does not apply to src/ as it is now: {problem}"
        applied.append(path.name)
    if not applied:
        shutil.rmtree(root, ignore_errors=True)
        return None, "; ".join(notes) + ": nothing left to compare"
    print(f"  applied to a copy of src/: {', '.join(applied)}" +
          (f" ({'; '.join(notes)})" if notes else ""))
    return root, ""


def run(min_rounds: int = 5, max_rounds: int = 9, budget: float = 55,
        seconds: int = 1) -> list[Figure]:
    banner(f"{STEP}: current server vs the proposed patches (bench/patches/*.diff), "
           f">= {min_rounds} mirrored rounds of {seconds} s runs")
    root, why = patched_copy()
    if root is None:
        loud_skip("patch measurement", why)
        return []
    try:
        src = str(root / "src")
        with KitServer(record=True, label="kit as is (log on)") as current, \
                KitServer(record=True, src=src, label="kit patched (log on)") as new, \
                KitServer(record=False, src=src, label="kit patched (log off)") as off, \
                Nginx(workers=2) as nginx:
            servers = {"current": current, "patched": new, "patched_off": off, "nginx": nginx}
            for server in servers.values():
                measure(server, 1, 32)  # warm-up
            rounds = alternate({key: (lambda server=server: measure(server, seconds, 32))
                                for key, server in servers.items()},
                               min_rounds, max_rounds, budget, show=_show, mirrored=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_csv(RESULTS / "patch.csv", rounds.rows("server"))
    kept = rounds.kept()

    def ratio(a: str, b: str, field: str = "rate") -> Spread:
        return Spread([getattr(r[a], field) / getattr(r[b], field) for r in kept
                       if getattr(r[b], field)])

    saved = Spread([r["current"].server_cpu_us - r["patched"].server_cpu_us for r in kept])
    return [
        Figure(STEP, "patched / current (log on): connections/s", ratio("patched", "current"),
               "ratio", note=rounds.note()),
        Figure(STEP, "patched / current: CPU per connection",
               ratio("patched", "current", "server_cpu_us"), "ratio",
               note=f"saves {saved.median:.1f} µs/conn "
                    f"(range {saved.low:.1f} to {saved.high:.1f})"),
        Figure(STEP, "patched (log on) / nginx: connections/s", ratio("patched", "nginx"), "ratio"),
        Figure(STEP, "patched (log on) / nginx: CPU per connection",
               ratio("patched", "nginx", "server_cpu_us"), "ratio"),
        Figure(STEP, "patched: event log on / off", ratio("patched", "patched_off"), "ratio",
               note="the log's whole cost, with the patch"),
    ]


def _show(round_: int, key: str, sample: Sample) -> None:
    print(f"  round {round_}: {sample.label:<24} {sample.rate:8.0f} conn/s  server "
          f"{sample.server_cpu_us:5.1f} µs/conn (user {sample.server_user_us:4.1f} sys "
          f"{sample.server_sys_us:4.1f})  (others used {sample.others_cores:.2f} cores)",
          flush=True)


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
