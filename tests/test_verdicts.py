"""A lesson's answer is computed from its run: the verdict's sentence follows the measurement."""

import math

import pytest

from acceptlab.views.verdicts import (Band, busy_note, closest_session, reference_note, session_ranges,
                                     verdict)


def test_a_value_inside_the_band_says_what_holding_means():
    answer = verdict("round-robin score", 0.97, Band(0.95, 1.0, "strict turns"),
                     held="the workers took turns", failed="a worker jumped the queue")
    assert answer.held
    assert str(answer) == ("The answer: round-robin score 0.97, inside 0.95–1.00 (strict turns): "
                           "the workers took turns.")


def test_a_value_outside_says_by_how_much_and_what_failing_means():
    answer = verdict("busiest share", 0.62, Band(0.2, 0.3, "a fair die, 99 %"),
                     held="even", failed="one worker took most")
    assert not answer.held
    assert "outside 0.20–0.30 (a fair die, 99 %) by 0.32: one worker took most." in str(answer)


def test_the_band_edges_count_as_inside():
    band = Band(1.0, 1.0, "exact")
    assert 1.0 in band and band.distance(1.0) == 0
    assert "inside 1.00 (exact)" in str(verdict("x", 1.0, band, held="h", failed="f"))


def test_nothing_measured_is_said_plainly_and_never_counts_as_held():
    answer = verdict("round-robin score", float("nan"), Band(0, 1, "any"), held="h", failed="f")
    assert not answer.held and "no round-robin score could be measured" in str(answer)


def test_a_busy_machine_is_named_in_the_answer_and_a_quiet_one_is_not():
    band = Band(0.95, 1.0, "strict turns")
    busy = verdict("score", 0.5, band, held="h", failed="f", meta={"machine_busy": 1.6, "cpus": 2})
    assert "other work used 1.6 of 2 cores" in str(busy)
    quiet = verdict("score", 0.5, band, held="h", failed="f", meta={"machine_busy": 0.05, "cpus": 2})
    assert "other work" not in str(quiet)
    assert busy_note(None) == busy_note({}) == busy_note({"machine_busy": math.nan}) == ""


def test_a_band_must_run_upwards():
    with pytest.raises(ValueError):
        Band(0.9, 0.1, "backwards")


def test_the_closest_recorded_session_is_named():
    sessions = {"quiet": (0.82, 0.95), "loaded": (0.18, 0.31)}
    assert closest_session(0.9, sessions) == "quiet"
    assert closest_session(0.4, sessions) == "loaded"
    assert closest_session(0.6, sessions) == "quiet"  # 0.22 below quiet's range, 0.29 above loaded's


ENTRY = {"sessions": [
    {"label": "loaded", "date": "2026-11-30 16:57", "load_average": {"before": 3.1},
     "machine": {"cpus": 2}, "runs": [{"rr": 0.18}, {"rr": 0.31}, {"rr": 0.25}]},
    {"label": "quiet", "date": "2027-01-05 09:00", "load_average": {"before": 0.1},
     "machine": {"cpus": 2}, "runs": [{"rr": 0.95}, {"rr": 1.0}, {"rr": 0.97}]},
]}


def test_each_session_keeps_its_own_range_quiet_first():
    ranges = session_ranges(ENTRY, "rr")
    assert list(ranges.values()) == [(0.95, 1.0), (0.18, 0.31)]
    first, second = ranges
    assert first.startswith("quiet session of 2027-01-05, load 0.1 on 2 CPUs")
    assert second.startswith("loaded session of 2026-11-30, load 3.1")
    assert session_ranges(ENTRY, "missing") == {}


def test_the_reference_note_names_the_session_the_run_resembles():
    note = reference_note(0.2, ENTRY, "rr", name="round-robin score")
    assert "quiet session of 2027-01-05, load 0.1 on 2 CPUs: 0.95–1.00 over 3 runs" in note
    assert note.splitlines()[-1].endswith("resembles the loaded session of 2026-11-30, load 3.1 on 2 CPUs")
    outside = reference_note(0.7, ENTRY, "rr")  # 0.25 below quiet, 0.39 above loaded
    assert "lies outside every recorded range; nearest: the quiet session" in outside
    only_loaded = {"sessions": ENTRY["sessions"][:1]}
    assert "(no quiet session recorded yet)" in reference_note(0.2, only_loaded, "rr")


def test_a_value_that_prints_as_a_range_edge_is_inside_it():
    """The kept runs are rounded to the printed digits, so 3.984 (printed 3.98) is inside 3.85–3.98."""
    entry = {"sessions": [{"label": "loaded", "runs": [{"w": 3.85}, {"w": 3.98}, {"w": 3.9}]}]}
    assert "resembles the loaded session" in reference_note(3.984, entry, "w")


# -- the wait-queue model's bands ----------------------------------------------------------------

PREDICTION = {"rr_score": [0.1, 0.44], "mean_rank": None, "coverage": 0.9, "runs": 40,
              "model": "acceptlab.model: blocking as exclusive-fifo, 40 simulated runs",
              "calibration": "default calibration of 2026-12-07T07:53:36 (2 cores, ...)"}


def test_a_model_band_names_the_model_its_rule_and_its_calibration():
    from acceptlab.views.verdicts import model_band

    band = model_band(PREDICTION, "rr_score")
    assert (band.low, band.high) == pytest.approx((0.1, 0.44), abs=2e-6)
    assert 5 / 12 in model_band({**PREDICTION, "busiest_share": [0.416667, 0.4375]}, "busiest_share")
    assert band.source == ("the model on the reference machine's calibration, 90 % of 40 simulated "
                           "runs of blocking as exclusive-fifo")
    measured = {**PREDICTION, "calibration": "measured calibration of 2026-12-07T09:00:00 (...)"}
    assert model_band(measured, "rr_score").source.startswith("the model calibrated for this machine")
    with pytest.raises(ValueError, match="mean_rank"):
        model_band(PREDICTION, "mean_rank")


def test_the_model_is_asked_about_the_run_s_own_pool_and_load():
    """model_prediction passes the run's specs to model.predict; what it does not cover is None."""
    from types import SimpleNamespace

    from acceptlab.specs import LoadSpec, PoolSpec
    from acceptlab.views.verdicts import model_prediction

    run = SimpleNamespace(pool_spec=PoolSpec(workers=3, strategy="blocking"),
                          load_spec=LoadSpec(connections=12, gap=0.0, concurrency=2))
    found = model_prediction(run, runs=3)
    assert found["runs"] == 3 and "blocking" in found["model"]
    low, high = found["busiest_share"]
    assert round(1 / 3, 6) <= low <= high <= 1  # 4 of 12 at the least; bands keep 6 decimals
    hybrid = SimpleNamespace(pool_spec=PoolSpec(workers=2, kind="hybrid", threads=2),
                             load_spec=LoadSpec(connections=12))
    assert model_prediction(hybrid, runs=3) is None  # the model has no rule for hybrid workers
    split = SimpleNamespace(pool_spec=PoolSpec(workers=2), load_spec=LoadSpec(processes=2))
    assert model_prediction(split, runs=3) is None
    real = SimpleNamespace(pool_spec=None, load_spec=LoadSpec())
    assert model_prediction(real, runs=3) is None


def test_an_unreadable_saved_calibration_falls_back_to_the_default_and_says_so(monkeypatch):
    """A calibration saved by another version of the kit must not stop a lesson's cell."""
    from types import SimpleNamespace

    from acceptlab import model
    from acceptlab.specs import LoadSpec, PoolSpec
    from acceptlab.views.verdicts import model_band, model_prediction

    def unreadable():
        raise ValueError("calibration.json is not a calibration the kit can read")

    monkeypatch.setattr(model.calibration, "current", unreadable)
    monkeypatch.setattr(model, "current", unreadable, raising=False)
    run = SimpleNamespace(pool_spec=PoolSpec(workers=2), load_spec=LoadSpec(connections=8))
    found = model_prediction(run, runs=2)
    assert found["calibration"].startswith("default")
    assert "the saved calibration was not used: calibration.json is not" in found["calibration"]
    assert model_band(found, "busiest_share").source.startswith(
        "the model on the reference machine's calibration")


def test_a_value_just_outside_its_band_is_printed_with_the_decimals_that_show_it():
    said = verdict("wakeups per connection", 0.996, Band(1.0, 1.0, "wake one"),
                   held="one each", failed="some waits were woken more than once")
    assert not said.held
    assert "0.996, outside 1.000 (wake one) by 0.004" in said.text
    inside = verdict("score", 0.996, Band(0.9, 1.0, "turns"), held="turns", failed="no")
    assert "score 1.00, inside 0.90–1.00" in inside.text  # inside: the digits asked for
