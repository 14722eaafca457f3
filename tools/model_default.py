"""Remake the model's documented default calibration from a saved one (``acceptlab calibrate``).

    python tools/model_default.py [CALIBRATION.json]     # default: the user's cache

The default is what ``acceptlab predict`` uses on a machine that has not been calibrated:
``src/acceptlab/model/default_calibration.json``, read by ``acceptlab.model.defaults``.
Each pool is made smaller so that the file stays small: the per-connection samples
(connect, talk, woke) keep 30 whole connections picked at random (so their joint spread
survives), every other list of samples 20 quantiles, each the middle of a twentieth of the
values (2.5 %, 7.5 %, ..., 97.5 %: each stands for as much of the data as the others).

Make it on the kit's reference machine, quiet, and say so in the commit: its machine,
date and load average are kept in the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from acceptlab.model import calibration

ALIGNED = ("connect", "talk", "woke")
KEEP = 30
TARGET = (Path(__file__).resolve().parent.parent / "src" / "acceptlab" / "model"
          / "default_calibration.json")


def quantiles(values, points: int = 20) -> list[float]:
    """The middle of each ``1/points`` of the finite values (``points`` numbers, or fewer)."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if len(array) <= points:
        return [float(x) for x in np.round(array, 3)]
    middles = (np.arange(points) + 0.5) / points * 100
    return [float(x) for x in np.round(np.percentile(array, middles), 3)]


def squeezed(saved: calibration.Calibration) -> dict:
    """The calibration as a dict, its sample lists made small (see the module docstring)."""
    rng = np.random.default_rng(0)
    data = saved.as_dict()
    for runs in data["pools"].values():
        for pool in runs:
            count = len(pool["connect"])
            rows = np.sort(rng.choice(count, min(KEEP, count), replace=False))
            for name, values in pool.items():
                if name in ALIGNED:
                    pool[name] = [None if not np.isfinite(values[i]) else float(values[i])
                                  for i in rows]
                elif isinstance(values, (list, tuple)):
                    pool[name] = quantiles(values)
    for runs in data["herds"].values():
        for table in runs:
            table["ranks"] = quantiles(table["ranks"])
    data["spin_spread"] = quantiles(data["spin_spread"])
    data["source"] = "default"
    return data


def main() -> int:
    source = sys.argv[1] if len(sys.argv) > 1 else None
    saved = calibration.load(source)
    if saved is None:
        print(f"no calibration at {source or calibration.cache_path()}: run acceptlab calibrate")
        return 1
    TARGET.write_text(json.dumps(squeezed(saved), separators=(",", ":")) + "\n")
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} KB) from {saved.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
