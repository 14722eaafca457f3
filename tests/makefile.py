"""Run one of the Makefile's own recipes on a scratch folder, its install step already done.

The targets under test (`strip`, `lab`, `handout`) depend on `setup`, which installs the kit
into `.venv` when `pyproject.toml` is newer than the install stamp.  Here the stamp is a fresh
file in the scratch folder, newer than an empty `pyproject.toml` beside it, and `BIN` is this
interpreter's folder; the repository's tools/ is linked in.  So make runs the recipe itself,
with the tools already installed, and nothing is installed or written in the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def make_command(folder: Path, *args: str) -> list[str]:
    """`make -s -f <repo>/Makefile -C folder ARGS...`, with `setup` already satisfied."""
    (folder / "pyproject.toml").write_text("")
    stamp = folder / "installed"
    stamp.write_text("")  # written after pyproject.toml: up to date
    (folder / "notebooks").mkdir(exist_ok=True)
    if not (folder / "tools").exists():
        (folder / "tools").symlink_to(ROOT / "tools")  # recipes run tools/*.py by that path
    return ["make", "-s", "-f", str(ROOT / "Makefile"), "-C", str(folder), *args,
            f"BIN={BIN}", f"READY={stamp}"]
