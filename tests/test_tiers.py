"""The tiers leave no test out: `make test`'s two parts hold every test exactly once.

`make test` runs the tests that measure no timing on pytest-xdist workers, then the
``serial`` ones alone; `make test-fast` runs those not marked ``system``.  The selections
are ``-m`` expressions in the Makefile; here every test collected in this session (before
any ``-m`` took some away) is put through the Makefile's own expressions, with pytest's own
expression evaluator, so a test that neither part would run, or that both would, fails
this test by name.  The check is on the Makefile's text, so it also fails if someone
changes one part's expression and forgets the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# pytest's own -m machinery (not public API: if a pytest release moves it, this import
# fails loudly rather than the check passing without looking)
from _pytest.mark import MarkMatcher
from _pytest.mark.expression import Expression

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(.*?)\s*$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"the Makefile defines no {name}"
    return match.group(1)


def selects(expression: str, markers) -> bool:
    """Would ``pytest -m expression`` run a test with these markers?"""
    return Expression.compile(expression).evaluate(MarkMatcher.from_markers(markers))


def parts(markers, expressions: dict[str, str]) -> list[str]:
    """The parts (name: -m expression) that would run a test with these markers."""
    return [part for part, expression in expressions.items() if selects(expression, markers)]


def make_test_parts() -> dict[str, str]:
    return {part: makefile_variable(part) for part in ("TEST_PARALLEL", "TEST_SERIAL")}


def test_make_test_runs_every_collected_test_exactly_once(collected_tests):
    expressions = make_test_parts()
    wrong, counts = {}, dict.fromkeys(expressions, 0)
    for item in collected_tests:
        running = parts(list(item.iter_markers()), expressions)
        for part in running:
            counts[part] += 1
        if len(running) != 1:
            wrong[item.nodeid] = running
    assert not wrong, f"tests in no part or in both parts of make test: {wrong}"
    print(f"\nmake test: {counts['TEST_PARALLEL']} tests in parallel, "
          f"{counts['TEST_SERIAL']} serial, of {len(collected_tests)} collected")


def test_make_test_runs_both_parts_and_test_fast_its_own_selection():
    recipe = MAKEFILE.read_text()
    test = recipe.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert '-m "$(TEST_PARALLEL)"' in test and '-m "$(TEST_SERIAL)"' in test, test
    assert "-p no:xdist" in test, "the serial part must not run on workers side by side"
    assert test.count("|| status=1") == 2 and "exit $$status" in test, \
        "a failure of the first part must not skip the second"
    fast = recipe.split("\ntest-fast: ", 1)[1].split("\n\n", 1)[0]
    assert '-m "$(TEST_FAST)"' in fast, fast


def test_the_fast_tier_leaves_out_only_system_tests(collected_tests):
    fast = makefile_variable("TEST_FAST")
    for item in collected_tests:
        system = item.get_closest_marker("system") is not None
        assert selects(fast, list(item.iter_markers())) != system, (
            f"{item.nodeid}: make test-fast {'runs' if not system else 'leaves out'} it, "
            f"and it is {'' if system else 'not '}a system test")


TIERS = {"unmarked": [], "system": [pytest.mark.system.mark],
         "serial": [pytest.mark.serial.mark],
         "system and serial": [pytest.mark.system.mark, pytest.mark.serial.mark]}


@pytest.mark.parametrize("tier", list(TIERS))
def test_every_combination_of_marks_is_in_one_part(tier):
    assert len(parts(TIERS[tier], make_test_parts())) == 1


def test_the_check_notices_a_gap_and_an_overlap():
    """The same evaluation on broken parts: it would have failed them."""
    gap = {"TEST_PARALLEL": "not serial and not system", "TEST_SERIAL": "serial"}
    assert parts(TIERS["system"], gap) == []
    overlap = {"TEST_PARALLEL": "not system", "TEST_SERIAL": "serial"}
    assert len(parts(TIERS["serial"], overlap)) == 2


def test_marks_of_plugins_the_serial_part_leaves_out_are_registered_here(collected_tests):
    """The serial part runs with ``-p no:xdist``; under ``--strict-markers`` a test carrying
    xdist's ``xdist_group`` would then stop its whole module from being collected, unless
    pyproject.toml registers the marker itself."""
    import tomllib

    pyproject = MAKEFILE.parent / "pyproject.toml"
    markers = tomllib.loads(pyproject.read_text())["tool"]["pytest"]["ini_options"]["markers"]
    registered = {line.split(":")[0].split("(")[0].strip() for line in markers}
    used = {mark.name for item in collected_tests for mark in item.iter_markers()}
    assert "xdist_group" not in used or "xdist_group" in registered, \
        "register xdist_group in pyproject.toml's markers"
    assert {"system", "serial"} <= registered
