"""Shared set-up of the test suite.

``tests/helpers.py`` and the ``bench`` package import by name because
pyproject.toml's ``[tool.pytest.ini_options] pythonpath`` puts ``tests/``
and the repository's root on the path.
"""
