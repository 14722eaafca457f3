"""Shared set-up of the test suite: the tiers, the pool fixture, the browser.

``tests/helpers.py`` and the ``bench`` package import by name because
pyproject.toml's ``[tool.pytest.ini_options] pythonpath`` puts ``tests/``
and the repository's root on the path.

The tiers (markers registered in pyproject.toml):

* ``system``: the test starts real processes, binds or connects real sockets, or drives
  kernels, browsers or real servers.  ``pytest -m "not system"`` (``make test-fast``) is
  the rest: pure code, about a minute.  A test left unmarked that starts a process or opens
  a network socket fails here with "mark it system" (see :func:`_unit_tests_stay_unit`),
  so the fast tier cannot quietly grow slow or flaky.
* ``serial``: the test measures scheduling or timing (a round-robin score, a deadline, a
  wake-up count), so it must have the machine to itself: ``make test`` runs these after the
  others, one at a time, never beside another test.  Everything else may run in parallel
  (pytest-xdist); tests that share one session-wide resource carry the same
  ``xdist_group`` so that one worker runs them all.

``tests/test_tiers.py`` checks that every collected test falls in exactly one of
``make test``'s selections.

The course's lessons run once per session (:func:`course`): tests/test_notebooks.py checks
each run and tests/test_book_browser.py builds the book from the same runs; both carry the
``xdist_group("course")`` mark, so that under pytest-xdist one worker holds them all.
"""

from __future__ import annotations

import multiprocessing.process
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Imported now, before any test: on a fresh machine it builds matplotlib's font cache by
# running `fc-list`, which the guard below would refuse inside a unit test.
import matplotlib.font_manager  # noqa: F401
import pytest

from browser import NO_CHROMIUM, chromium_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import notebook_runner as runner  # noqa: E402

# The suite calibrates the model and saves it (lesson 00 does, and so do the live checks):
# into a cache of its own, inherited by every kernel and process it starts, so that
# `make test` never replaces the calibration a learner made (acceptlab.model.cache_path).
SUITE_CACHE = tempfile.mkdtemp(prefix="acceptlab-test-cache-")
os.environ["ACCEPTLAB_CACHE"] = SUITE_CACHE


def pytest_unconfigure(config):
    shutil.rmtree(SUITE_CACHE, ignore_errors=True)


SYSTEM_HINT = ("a test that is not marked `system` {what}: mark it "
               "`@pytest.mark.system` (or the module: `pytestmark = pytest.mark.system`), "
               "or keep it pure (see tests/conftest.py)")


COLLECTED = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Remember every collected test before ``-m`` deselects any (for tests/test_tiers.py)."""
    config.stash[COLLECTED] = list(items)


@pytest.fixture
def collected_tests(request) -> list:
    """Every test this session collected, including those ``-m`` or ``-k`` left out."""
    return request.config.stash[COLLECTED]


@pytest.fixture(autouse=True)
def _unit_tests_stay_unit(request, monkeypatch):
    """In a test without the ``system`` marker, starting a process or using a network
    socket fails with a hint to mark it: the fast tier stays fast and self-contained.

    In-process socket pairs (``socket.socketpair``) stay allowed: no port, no other
    process, and the request reader's tests need them.  What the guard cannot see: a
    module- or session-scoped fixture is set up before it, so a test using such a fixture
    that starts something (a module's pool, the book, the browser) is marked by hand.
    """
    if request.node.get_closest_marker("system") is not None:
        return

    def refuse(what):
        def refused(*args, **kwargs):
            raise AssertionError(SYSTEM_HINT.format(what=what))
        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("started a process"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start",
                        refuse("started a multiprocessing process"))
    for method in ("bind", "connect", "connect_ex"):
        original = getattr(socket.socket, method)

        def guarded(sock, address, *args, _original=original, _method=method):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise AssertionError(SYSTEM_HINT.format(what=f"called socket.{_method}()"))
            return _original(sock, address, *args)

        monkeypatch.setattr(socket.socket, method, guarded)


@pytest.fixture
def start_pool():
    """``start_pool(**options)``: a started ``WorkerPool(**options)``, always stopped after the test.

    For tests that need a pool for their whole body; a test may still call
    ``pool.stop()`` itself (stopping twice is safe), e.g. to look at the events
    or the freed port afterwards.  Keywords only, as the kit's own call sites.
    """
    from acceptlab.server.pool import WorkerPool

    pools = []

    def start(**options) -> WorkerPool:
        pool = WorkerPool(**options)
        pools.append(pool)
        return pool.start()

    yield start
    for pool in reversed(pools):
        pool.stop()


class Course:
    """The lessons of ``notebooks/``, each executed at most once per session, when first asked."""

    def __init__(self) -> None:
        self.results: dict[str, runner.NotebookResult] = {}

    def run(self, path: Path) -> runner.NotebookResult:
        """The lesson at ``path`` executed top to bottom in a fresh kernel (tools/notebook_runner)."""
        if path.name not in self.results:
            self.results[path.name] = runner.run_notebook(path)
        return self.results[path.name]

    def run_all(self) -> list[runner.NotebookResult]:
        return [self.run(path) for path in runner.notebook_paths()]


@pytest.fixture(scope="session")
def course() -> Course:
    """Every lesson's one execution in this session, shared by the notebook and the book tests."""
    return Course()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium the real-browser tests drive; they skip, saying why, without it."""
    binary = chromium_path()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    return binary
