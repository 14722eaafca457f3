"""The Makefile: ``make demo`` installs only what the demo needs, and says that it is installing.

Checked with ``make -n`` (print the commands, run none) in a copy of the
Makefile and pyproject.toml, so no test downloads anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent


def planned(target: str, where: Path) -> list[str]:
    """The commands ``make <target>`` would run in ``where``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed: the Makefile cannot be checked")
    # Under `make test` this runs inside a make: without --no-print-directory and a clean
    # MAKEFLAGS/MAKELEVEL, the inner make would add "Entering directory" lines of its own.
    env = {key: value for key, value in os.environ.items()
           if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=where, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def installs(commands: list[str]) -> list[str]:
    return [line for line in commands if re.search(r"\bpip install\b", line)]


def test_make_demo_installs_the_kit_without_the_dev_extras_and_shows_it(fresh_clone):
    commands = planned("demo", fresh_clone)
    pip = installs(commands)
    assert pip, commands
    assert not [line for line in pip if "[dev]" in line or "[notebooks]" in line], pip
    assert not [line for line in pip if re.search(r"\s(--quiet|-q+)\b", line)], pip
    assert any(line.startswith("echo") and "installing" in line for line in commands), commands
    assert commands[-1].endswith("acceptlab compare --out out/demo --force")


def test_make_test_adds_the_dev_extras(fresh_clone):
    assert any("'.[dev]'" in line for line in installs(planned("test", fresh_clone)))


def test_an_installed_kit_is_not_installed_again(fresh_clone):
    (fresh_clone / ".venv" / "bin").mkdir(parents=True)
    (fresh_clone / ".venv" / "bin" / "python").touch()
    stamp = fresh_clone / ".venv" / ".installed-core"
    stamp.touch()
    later = (fresh_clone / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (later, later))
    assert installs(planned("demo", fresh_clone)) == []
