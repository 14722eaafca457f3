"""A lesson's answer, computed from the run it has just made.

A lesson asks a question, explains the mechanism and states a prediction;
then it runs an experiment.  What the run shows is not written in the prose,
because on another machine, or on this one while it is busy, a run that
depends on the scheduler can show something else.  Instead a cell hands the
measurement and the prediction to :func:`verdict`, which prints the answer::

    >>> band = Band(0.95, 1.0, "strict turns")
    >>> print(verdict("round-robin", 0.62, band, held="the workers took turns",
    ...               failed="returning workers jumped the queue"))
    The answer: round-robin 0.62, outside 0.95–1.00 (strict turns) by 0.33: returning workers jumped the queue.

A :class:`Band` always names where it comes from (a mechanism's exact
prediction, a fair die's 99 % interval, the calibrated model's 90 % band,
the range of reference runs), so a learner can tell a broken rule from a
prediction that was only a guide.  Where the wait-queue model
(:mod:`acceptlab.model`) covers a run, :func:`model_prediction` asks it about
the run's own pool and load, and :func:`model_band` turns one metric of the
answer into a band named after the model and its calibration::

    prediction = model_prediction(run, runs=40)   # None where the model does not cover it
    verdict("round-robin score", score, model_band(prediction, "rr_score"), held=..., failed=...)  A run's ``meta`` may say how busy the
machine was while it ran (``machine_busy``, in cores used by other work); a
verdict then says so, so that a learner does not take a crowded machine for
a kernel that changed its rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Band", "Verdict", "verdict", "closest_session", "busy_note", "session_ranges",
           "reference_note", "model_prediction", "model_band", "model_words"]

BUSY_NOTE_CORES = 0.25  # other work below this many cores is not worth a word


@dataclass(frozen=True)
class Band:
    """The values a prediction allows, ``low`` to ``high`` inclusive, and which model says so.

    Args:
        low: the smallest value the prediction allows.
        high: the largest.
        source: the model, in a few words ("strict turns: the FIFO queue of
            sleepers", "the calibrated model, 90 % of simulated runs").
    """

    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        if math.isnan(self.low) or math.isnan(self.high) or self.low > self.high:
            raise ValueError(f"a band needs low <= high, not {self.low}..{self.high}")

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def distance(self, value: float) -> float:
        """How far ``value`` lies outside the band (0 inside it)."""
        return max(self.low - value, value - self.high, 0.0)

    def describe(self, digits: int = 2) -> str:
        """``'0.95–1.00 (strict turns)'``, or one number when the band is a point."""
        if self.low == self.high:
            return f"{self.low:.{digits}f} ({self.source})"
        return f"{self.low:.{digits}f}–{self.high:.{digits}f} ({self.source})"


@dataclass(frozen=True)
class Verdict:
    """One answer: the measurement, the band it was held against, and the sentence to print."""

    name: str
    measured: float
    band: Band
    held: bool
    text: str

    def __str__(self) -> str:
        return self.text


def verdict(name: str, measured: float, band: Band, *, held: str, failed: str,
            digits: int = 2, meta: Mapping | None = None) -> Verdict:
    """Hold ``measured`` against ``band`` and say, in one sentence, what that means.

    Args:
        name: what was measured, as the lesson calls it ("round-robin score").
        measured: this run's value.
        band: the prediction (see :class:`Band`).
        held: what it means when the value is inside the band.
        failed: what it means when it is not: say why that can happen and
            what would show it, never only "the prediction failed".
        digits: decimals to print.
        meta: the run's ``meta``; when it records that other work kept the
            machine busy (``machine_busy``), the sentence says so.
    """
    if math.isnan(measured):
        text = f"The answer: no {name} could be measured in this run, so there is nothing to compare."
        return Verdict(name, measured, band, False, text)
    inside = measured in band
    if not inside:  # enough decimals that a value just outside does not print as the edge
        while digits < 6 and round(band.distance(measured), digits) == 0:
            digits += 1
    where = (f"inside {band.describe(digits)}" if inside else
             f"outside {band.describe(digits)} by {band.distance(measured):.{digits}f}")
    text = f"The answer: {name} {measured:.{digits}f}, {where}: {held if inside else failed}."
    note = busy_note(meta)
    if note:
        text += f" ({note})"
    return Verdict(name, measured, band, inside, text)


def closest_session(value: float, sessions: Mapping[str, tuple[float, float]]) -> str:
    """Which recorded machine state ``value`` resembles: the session whose range is nearest.

    ``sessions`` maps a session's name ("quiet", "loaded") to the range its
    reference runs took.  A value inside several ranges resembles the first.

    Args:
        value: this run's value.
        sessions: each session's (low, high) range, in the order to prefer.
    """
    if not sessions:
        raise ValueError("no sessions to compare with")
    return min(sessions, key=lambda name: Band(*sessions[name], name).distance(value))


def busy_note(meta: Mapping | None) -> str:
    """One clause saying how much other work used the machine during a run ('' when little)."""
    if not meta:
        return ""
    busy, cpus = meta.get("machine_busy"), meta.get("cpus")
    if busy is None or (isinstance(busy, float) and math.isnan(busy)) or busy < BUSY_NOTE_CORES:
        return ""
    of = f" of {cpus}" if cpus else ""
    return f"other work used {busy:.1f}{of} cores during this run, which can blur any race"


SESSION_ORDER = ("quiet", "loaded")  # a run that fits both resembles the quiet one


def _session_name(session: Mapping) -> str:
    load = (session.get("load_average") or {}).get("before")
    cpus = (session.get("machine") or {}).get("cpus")
    busy = "" if load is None else f", load {load:g}" + (f" on {cpus} CPUs" if cpus else "")
    date = str(session.get("date") or "undated").split(" ")[0]
    return f"{session.get('label', 'unlabelled')} session of {date}{busy}"


def session_ranges(entry: Mapping, field: str) -> dict[str, tuple[float, float]]:
    """Each recorded session's (low, high) of ``field``, by name, quiet sessions first.

    ``entry`` is one experiment of ``data/lesson-ranges.json`` (for example
    ``table["round_robin"]["gap_0ms"]``): its ``sessions`` each hold a ``label``
    (quiet or loaded), a date, the load average and the runs.  Sessions without
    the field are left out.

    Args:
        entry: one experiment's record.
        field: the run field to range over (``"rr_score"``, ``"busiest"``...).
    """
    sessions = sorted(entry.get("sessions", []),
                      key=lambda s: SESSION_ORDER.index(s["label"]) if s.get("label") in SESSION_ORDER
                      else len(SESSION_ORDER))
    out: dict[str, tuple[float, float]] = {}
    for session in sessions:
        values = [row[field] for row in session.get("runs", [])
                  if isinstance(row.get(field), (int, float)) and not isinstance(row.get(field), bool)]
        if values:
            out[_session_name(session)] = (min(values), max(values))
    return out


def reference_note(value: float, entry: Mapping, field: str, *, name: str | None = None,
                   digits: int = 2) -> str:
    """Every session's range of ``field`` and the one ``value`` resembles, as printed lines.

    Args:
        value: this run's value (NaN: the ranges only).
        entry: one experiment of ``data/lesson-ranges.json``.
        field: the run field.
        name: what the field is called in the lesson (default ``field``).
        digits: decimals to print.
    """
    ranges = session_ranges(entry, field)
    if not ranges:
        return f"no reference runs of {name or field} are recorded"
    counts = {(_session_name(s)): len(s.get("runs", [])) for s in entry.get("sessions", [])}
    lines = [f"reference runs of {name or field} (data/lesson-ranges.json):"]
    for session, (low, high) in ranges.items():
        span = f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}–{high:.{digits}f}"
        lines.append(f"  {session}: {span} over {counts.get(session, '?')} runs")
    if not any(session.startswith("quiet") for session in ranges):
        lines.append("  (no quiet session recorded yet)")
    if not math.isnan(value):
        value = round(value, digits)  # the kept runs are rounded as printed: compare like with like
        nearest = closest_session(value, ranges)
        if any(low <= value <= high for low, high in ranges.values()):
            lines.append(f"  this run ({value:.{digits}f}) resembles the {nearest}")
        else:
            lines.append(f"  this run ({value:.{digits}f}) lies outside every recorded range; "
                         f"nearest: the {nearest}")
    return "\n".join(lines)


# -- the wait-queue model's bands ----------------------------------------------------------------

MODEL_RUNS = 40  # simulated runs per prediction in a lesson: a band in about a second
ROUNDING = 1e-6  # acceptlab.model.predict rounds its bands' edges to 6 decimals


def model_prediction(run: Any, *, runs: int = MODEL_RUNS) -> dict | None:
    """What the wait-queue model predicts for a run like ``run``: its pool, its load, this machine.

    The model (:func:`acceptlab.model.predict`) simulates the run's own
    :class:`~acceptlab.specs.PoolSpec` and :class:`~acceptlab.specs.LoadSpec`
    ``runs`` times with the calibration in use (``acceptlab calibrate``'s, or
    the documented default) and gives a 90 % band per metric.

    Args:
        run: a :class:`~acceptlab.lab.experiment.Run` the kit served (its
            ``pool_spec`` and ``load_spec``).
        runs: simulated runs; each costs a few tens of milliseconds.

    Returns:
        ``predict``'s result, or None where the model does not cover the run:
        a strategy or kind of worker it has no rule for (it says why in
        ``NotModelled``), a real server, or a load split over several client
        processes.  A saved calibration this version of the kit cannot read
        (one written by another version) does not stop a lesson: the
        prediction uses the documented default, and its ``"calibration"``
        says so and why.
    """
    from .. import model  # the model imports numpy and pandas: only when a lesson asks

    pool, load = run.pool_spec, run.load_spec
    if pool is None or load.processes != 1:
        return None
    unreadable = ""
    try:
        calibration = model.current()
    except ValueError as exc:  # the saved file is not a calibration this version can read
        calibration, unreadable = model.default(), str(exc)
    try:
        found = model.predict(pool.strategy, pool.workers, load.connections, gap=load.gap,
                              concurrency=load.concurrency, rate=load.rate, work=pool.works,
                              kind=pool.kind, protocol=pool.protocol, runs=runs,
                              calibration=calibration)
    except model.NotModelled:
        return None
    if unreadable:
        found["calibration"] += f"; the saved calibration was not used: {unreadable}"
    return found


def model_words(prediction: Mapping) -> str:
    """Which model a prediction comes from, in words: calibrated for this machine, or the default.

    ``acceptlab calibrate`` (lesson 00) measures this machine; until it has,
    the model runs with the reference machine's numbers and says so.
    """
    calibration = str(prediction.get("calibration", ""))
    if calibration.startswith("measured"):
        return "the model calibrated for this machine"
    return "the model on the reference machine's calibration"


def model_band(prediction: Mapping, metric: str) -> Band:
    """The model's band for ``metric`` as a :class:`Band` that names the model.

    Args:
        prediction: what :func:`acceptlab.model.predict` (or :func:`model_prediction`) returned.
        metric: one of its metrics (``"rr_score"``, ``"busiest_share"``, ``"wakeups_per_accept"``,
            ``"p99_ms"``...).
    """
    band = prediction.get(metric)
    if band is None:
        raise ValueError(f"the prediction has no band for {metric!r}")
    rule = str(prediction.get("model", "")).removeprefix("acceptlab.model: ").split(",")[0]
    coverage = float(prediction.get("coverage", 0.9))
    runs = prediction.get("runs")
    # predict() rounds each edge to 6 decimals, which can move an edge past a simulated value
    # equal to a live one (5/12 = 0.416666... becomes 0.416667): undo that much, no more.
    low, high = float(band[0]), float(band[1])
    return Band(low - ROUNDING if low else low, high + ROUNDING,
                f"{model_words(prediction)}, {coverage * 100:.0f} % of {runs} simulated runs "
                f"of {rule}")
