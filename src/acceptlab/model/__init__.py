"""A model of the wait queue: predict a run of the kit before making it, from this machine's timings.

The kernel's rule for each strategy (who is woken, who may take a connection) meets the
machine's measured wake-up latency and return time in a discrete-event simulation; many
simulated runs give each metric a 90 % band to set beside a live run's value.

    >>> from acceptlab import model
    >>> model.predict("blocking", workers=4, connections=200, gap=0.001)["rr_score"]
    [1.0, 1.0]

The parts: :mod:`~acceptlab.model.rules` (one small class per mechanism, and
:data:`RULES`, the strategy -> mechanism table), :mod:`~acceptlab.model.engine`
(the clock, the clients, the workers), :mod:`~acceptlab.model.calibration`
(measuring this machine; saved in the user's cache), :mod:`~acceptlab.model.predict`
(bands from many runs) and :mod:`~acceptlab.model.command` (``acceptlab calibrate``
and ``acceptlab predict``).
"""

from __future__ import annotations

from .calibration import (Calibration, HerdTable, Pool, cache_path, calibrate, current, default,
                          load, save)
from .engine import Scenario, Simulation
from .predict import METRICS, inside, measure, predict, simulate
from .rules import MECHANISMS, NOT_MODELLED, RULES, NotModelled, rule_for

__all__ = ["predict", "calibrate", "simulate", "measure", "inside", "METRICS", "Calibration",
           "Pool", "HerdTable", "Scenario", "Simulation", "RULES", "MECHANISMS",
           "NOT_MODELLED", "NotModelled", "rule_for", "save", "load", "current", "default",
           "cache_path"]
