"""From many simulated runs to a band per metric: what ``acceptlab predict`` prints.

:func:`predict` simulates ``runs`` runs of one scenario, measures each with
the kit's own :func:`acceptlab.analysis.summary` and
:func:`acceptlab.analysis.latency` (so a simulated ``rr_score`` is exactly
what ``acceptlab run --json`` would report for the same table), and returns
the central 90 % of each metric's values: ``{"rr_score": [low, high], ...}``.
A live run "agrees with the model" when its value lies inside the band
(:func:`inside`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import analysis
from .calibration import Calibration, current
from .engine import Scenario, Simulation

__all__ = ["METRICS", "predict", "simulate", "measure", "inside", "COVERAGE"]

METRICS = ("rr_score", "busiest_share", "mean_rank", "wakeups_per_accept",
           "returns_per_accept", "eagain_per_accept", "p50_ms", "p99_ms")
"""The metrics a prediction gives a band for (the names of ``acceptlab run --json``)."""

COVERAGE = 0.90
"""The share of simulated runs each band holds (the 5th to the 95th percentile)."""


def simulate(scenario: Scenario, calibration: Calibration | None = None, *,
             seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One simulated run of ``scenario``: ``(events, client)`` tables in the kit's format."""
    calibration = calibration or current()
    return Simulation(scenario, calibration, np.random.default_rng(seed)).run()


def measure(events: pd.DataFrame, client: pd.DataFrame, workers: int) -> dict[str, float]:
    """The :data:`METRICS` of one run, with the kit's own definitions (live or simulated alike)."""
    result = analysis.summary(events, None, workers)
    times = analysis.latency(client).iloc[0]
    result.update(p50_ms=float(times["p50_ms"]), p99_ms=float(times["p99_ms"]))
    return {name: float(result[name]) for name in METRICS}


def predict(strategy: str, workers: int, connections: int, *, gap: float = 0.0,
            concurrency: int = 1, rate: float | None = None,
            work: str | Sequence[str] = "none", kind: str = "process", protocol: str = "zen",
            remote: bool = False, runs: int | None = None,
            calibration: Calibration | None = None, seed: int = 0) -> dict[str, Any]:
    """Predict a run of the kit: a 90 % band for each metric, from many simulated runs.

    Args:
        strategy: a strategy of the kit (``acceptlab.model.RULES``); one the
            model has no rule for raises :class:`~acceptlab.model.NotModelled`.
        workers, connections, gap, concurrency, rate, work, kind, protocol:
            the run, as ``run_experiment`` takes them.
        remote: the clients are other machines, not the kit's client threads
            (no turns on this process's GIL): for loads past this machine's client.
        runs: simulated runs (default: 60, fewer for big runs so that a
            prediction of 64 workers x 10,000 connections stays in seconds).
        calibration: the machine's time parameters (default: the saved
            calibration, else the documented default; ``result["calibration"]``
            says which).
        seed: the first simulated run's seed (the same seed, the same bands).

    Returns:
        ``{metric: [low, high]}`` for every name of :data:`METRICS` (None
        where a metric has no value, as ``mean_rank`` with one worker), plus
        ``"median"`` (each metric's median over the simulated runs),
        ``"runs"``, ``"coverage"`` (0.9), ``"calibration"`` (which one) and
        ``"model"`` (what the prediction comes from, for a printout).
    """
    scenario = Scenario(strategy=strategy, workers=workers, connections=connections, gap=gap,
                        concurrency=concurrency, rate=rate,
                        work=(work,) if isinstance(work, str) else tuple(work), kind=kind,
                        protocol=protocol, remote=remote)
    calibration = calibration or current()
    runs = runs if runs is not None else default_runs(connections)
    if runs < 2:
        raise ValueError("a band needs at least 2 simulated runs")
    values = {name: [] for name in METRICS}
    for k in range(runs):
        events, client = Simulation(scenario, calibration,
                                    np.random.default_rng([seed, k])).run()
        for name, value in measure(events, client, workers).items():
            values[name].append(value)
    tail = (1 - COVERAGE) / 2 * 100
    result: dict[str, Any] = {}
    medians = {}
    for name, found in values.items():
        array = np.asarray(found, dtype=float)
        array = array[np.isfinite(array)]
        if len(array):
            low, high = np.percentile(array, [tail, 100 - tail])
            result[name] = [_plain(low, math.floor), _plain(high, math.ceil)]
            medians[name] = _plain(np.median(array))
        else:
            result[name], medians[name] = None, None
    result.update(median=medians, runs=runs, coverage=COVERAGE,
                  calibration=calibration.describe(),
                  model=f"acceptlab.model: {strategy} as {_rule_name(strategy, kind)}, "
                        f"{runs} simulated runs")
    return result


def default_runs(connections: int) -> int:
    """Simulated runs per prediction: 60, down to 12 for runs of many connections."""
    return int(min(60, max(12, 150_000 // max(1, connections))))


def inside(value: float | None, band: Sequence[float] | None, *, slack: float = 0.0) -> bool | None:
    """Is a live ``value`` inside ``band`` (with ``slack`` on each side)?  None if either is missing."""
    if band is None or value is None or not math.isfinite(value):
        return None
    low, high = band
    return low - slack <= value <= high + slack


def _rule_name(strategy: str, kind: str) -> str:
    from .rules import rule_for

    return rule_for(strategy, kind).mechanism


def _plain(x: float, rounding=round) -> float:
    """``x`` to 6 decimals: to the nearest, or (a band's edge) outward with ``math.floor`` or
    ``math.ceil``, so that a live value equal to the edge (1/197, a rr_score of one turn in 200
    connections) is still inside the band that held it."""
    return float(rounding(round(float(x) * 1e6, 3))) / 1e6
