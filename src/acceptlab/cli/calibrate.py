"""``acceptlab calibrate``: measure this machine for the model (a few seconds) and keep it.

The model of the wait queue (:mod:`acceptlab.model`) needs this machine's
timings: how soon a woken sleeper runs, how soon a worker is back in
``accept()``, how fast the client reconnects, what each way of waiting costs.
This command measures them with small live runs and saves them in the user's
cache, where ``acceptlab predict`` and the lessons find them.  A machine
shared with other work moves between states: each calibration adds its runs
to the last ones kept for this machine (up to three calibrations), so the
model's bands cover the states it has been seen in; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import threading


def add(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="measure this machine for the model (a few seconds)",
        description="Measure this machine with small live runs of the kit (a few seconds): "
                    "wake-up latency, how soon a worker is back in accept(), the client's "
                    "times, what each way of waiting costs; save them in the user's cache for "
                    "`acceptlab predict`, beside the last calibrations of this machine.")
    calibrate.add_argument("--quick", action="store_true",
                           help="the race and the loads only (under 3 s; the rest from the "
                                "default calibration)")
    calibrate.add_argument("--fresh", action="store_true",
                           help="keep only this calibration's runs (not the earlier ones')")
    calibrate.add_argument("--json", action="store_true", help="print one JSON summary line")
    calibrate.add_argument("--show", action="store_true",
                           help="measure nothing: show the calibration predict would use now")
    calibrate.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Measure (unless --show), save in the cache, print what decides the race here."""
    from ..model import calibration
    from ..model.describe import calibration_lines, calibration_summary

    if args.show:
        found = calibration.current()
        where = calibration.cache_path() if found.source == "measured" else None
    else:
        found = _measure(quiet=args.json, quick=args.quick)
        if not args.fresh:
            found = calibration.kept_with(found)
        where = calibration.save(found)
    if args.json:
        print(json.dumps({**calibration_summary(found), "path": str(where) if where else None}))
    else:
        print("\n".join(calibration_lines(found)))
        print(f"saved in {where}" if where and not args.show else
              f"from {where}" if where else "(the documented default: no calibration saved; "
                                            "run `acceptlab calibrate`)")
    return 0


def _measure(quiet: bool, quick: bool):
    """The calibration's live runs, with a progress bar unless the output is JSON."""
    from tqdm.auto import tqdm

    from ..model import calibration

    runs = calibration.QUICK_RUNS if quick else calibration.FULL_RUNS
    with tqdm(total=len(runs), unit="run", desc="calibrating", disable=quiet) as bar:
        return calibration.calibrate(quick=quick, progress=lambda done, total, name: bar.update())
