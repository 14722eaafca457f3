"""A model of the wait queue: each strategy's kernel rule meets this machine's measured timings.
A discrete-event simulation, run many times, gives each metric of a run a 90 % band to set
beside the live value; ``acceptlab calibrate`` measures the machine, ``acceptlab predict`` prints."""

# The parts, in reading order: rules (one small class per mechanism; RULES, the strategy ->
# mechanism table, is read from the strategy records), engine (the clock, the clients, the
# workers), cpu (the GIL and the cores), times (what a simulated run draws), pools (what a
# calibration keeps), readings (what a live run says about time), calibration (which runs
# to make; kept in the user's cache), bands (predict(): bands from many simulated runs) and
# describe (both in words; the commands are acceptlab.cli.calibrate and
# acceptlab.cli.predict).  Names are imported on first use, so the command line does not pay
# for numpy and pandas before it needs them:
#
#     from acceptlab import model
#     model.predict("blocking", workers=4, connections=200, gap=0.001)["rr_score"]

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "predict": "bands", "simulate": "bands", "measure": "bands", "inside": "bands",
    "METRICS": "bands",
    "calibrate": "calibration", "Calibration": "pools", "Pool": "pools",
    "HerdTable": "pools", "save": "calibration", "load": "calibration",
    "current": "calibration", "default": "calibration", "cache_path": "calibration",
    "Scenario": "scenario", "Simulation": "engine",
    "RULES": "rules", "MECHANISMS": "rules", "NOT_MODELLED": "rules", "NotModelled": "rules",
    "rule_for": "rules",
}

__all__ = list(_WHERE)


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    """Import ``acceptlab.model.<part>`` when one of its names is first asked for (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'acceptlab.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
