"""Write ``src/acceptlab/model/defaults.py`` from a saved calibration (the model's documented default).

    python tools/model_default.py [CALIBRATION.json]     # default: the user's cache

Each pool is made smaller so that the module stays readable: the per-connection samples
(connect, talk, woke) keep 40 whole connections picked at random (so their joint spread
survives), every other list of samples its 21 quantiles (0, 5, ..., 100 %).
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path

import numpy as np

from acceptlab.model import calibration

ALIGNED = ("connect", "talk", "woke")
TARGET = Path(__file__).resolve().parent.parent / "src" / "acceptlab" / "model" / "defaults.py"
HEADER = '''"""The documented default calibration: what predict() uses when this machine has none saved.

Measured by ``acceptlab.model.calibrate()`` on the kit's reference machine (see
``DEFAULT["machine"]``, ``DEFAULT["created"]`` and ``DEFAULT["load_average"]``), then made
smaller by ``tools/model_default.py``: each pool keeps 40 whole connections picked at
random, and every other list of samples its 21 quantiles.  Run ``acceptlab calibrate`` to
measure the machine you are on instead.
"""

import math

nan = math.nan

DEFAULT = '''


def quantiles(values: list[float], points: int = 21) -> tuple[float, ...]:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if not len(array):
        return ()
    return tuple(float(x) for x in np.round(np.percentile(array, np.linspace(0, 100, points)), 3))


def squeezed(saved: calibration.Calibration, keep: int = 40) -> dict:
    rng = np.random.default_rng(0)
    data = saved.as_dict()
    for runs in data["pools"].values():
        for pool in runs:
            rows = np.sort(rng.choice(len(pool["connect"]), min(keep, len(pool["connect"])),
                                      replace=False))
            for name, values in pool.items():
                if name in ALIGNED:
                    pool[name] = tuple(float(values[i]) for i in rows)
                elif isinstance(values, (list, tuple)):
                    pool[name] = quantiles(values)
    for runs in data["herds"].values():
        for table in runs:
            table["ranks"] = quantiles(table["ranks"])
    data["loaded_lag"] = tuple(quantiles(lags) for lags in data["loaded_lag"])
    data["source"] = "default"
    return data


def main() -> int:
    source = sys.argv[1] if len(sys.argv) > 1 else None
    saved = calibration.load(source)
    if saved is None:
        print(f"no calibration at {source or calibration.cache_path()}: run acceptlab calibrate")
        return 1
    text = pprint.pformat(squeezed(saved), width=100, compact=True, sort_dicts=False)
    TARGET.write_text(HEADER + text + "\n")
    print(f"wrote {TARGET} from {saved.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
