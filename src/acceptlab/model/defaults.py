"""The documented default calibration: what predict() uses when this machine has none saved.

Measured by ``acceptlab.model.calibrate()`` on the kit's reference machine (a 2-core VM; see
``DEFAULT["machine"]``, ``DEFAULT["created"]`` and ``DEFAULT["load_average"]``), then made
smaller by ``tools/model_default.py``: each pool keeps 30 whole connections picked at random,
every other list of samples 20 quantiles.  It is data, kept beside this module in
``default_calibration.json``.  Run ``acceptlab calibrate`` to measure the machine you are on
instead: a lesson's predictions are only as good as the calibration they come from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["DEFAULT", "PATH"]

PATH = Path(__file__).with_name("default_calibration.json")


def _missing_as_nan(value):
    """JSON has no NaN: the file writes a missing sample (a connection no sleeper took) as null."""
    if isinstance(value, list):
        return [math.nan if item is None else _missing_as_nan(item) for item in value]
    if isinstance(value, dict):
        return {key: _missing_as_nan(item) for key, item in value.items()}
    return value


DEFAULT = _missing_as_nan(json.loads(PATH.read_text()))
