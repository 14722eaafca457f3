"""Shared set-up of the test suite.

``tests/helpers.py`` and the ``bench`` package import by name because
pyproject.toml's ``[tool.pytest.ini_options] pythonpath`` puts ``tests/``
and the repository's root on the path.
"""

import pytest

from browser import NO_CHROMIUM, chromium_path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium the real-browser tests drive; they skip, saying why, without it."""
    binary = chromium_path()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    return binary
