"""Service-time models."""

import time

import pytest

from acceptlab.server.work import Work, parse_work


def test_parse_work_accepts_the_three_models():
    assert parse_work("none") == Work()
    assert parse_work("sleep:5") == Work("sleep", 5.0)
    assert parse_work("spin:2.5") == Work("spin", 2.5)
    assert str(parse_work("sleep:5")) == "sleep:5"


@pytest.mark.parametrize("bad", ["nap:3", "sleep", "sleep:-1", "spin:x", "none:3", ""])
def test_parse_work_rejects_bad_specs_with_the_choices(bad):
    with pytest.raises(ValueError, match="none, sleep:<ms> or spin:<ms>"):
        parse_work(bad)


@pytest.mark.parametrize("kind", ["sleep", "spin"])
def test_work_takes_at_least_its_time(kind):
    start = time.perf_counter()
    Work(kind, 20)()
    assert time.perf_counter() - start >= 0.019


def test_spin_uses_cpu_and_sleep_does_not():
    cpu = time.process_time()
    Work("sleep", 30)()
    slept = time.process_time() - cpu
    cpu = time.process_time()
    Work("spin", 30)()
    spun = time.process_time() - cpu
    assert spun > 0.02 and slept < spun / 2
