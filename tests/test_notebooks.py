"""Every lesson runs top to bottom in a fresh kernel and draws its figure.

The notebooks are tested for errors and for their shape only (a goal, a
parameters cell, at least one plot); what they measure is checked by the
package's own tests, where a number can be asserted with the right tolerance.
Each notebook runs through ``tools/notebook_runner.py``, the same code
``tools/build_book.py`` uses, once per session: tests/test_book_browser.py builds
the book from these very runs (the ``course`` fixture of tests/conftest.py), so
"the tests pass" and "the book builds" mean the same run.

How long the lessons take is a benchmark, not a test (``python -m bench.run_all
--only notebooks`` reports it against its goals): a time budget asserted here
would pass on one machine and fail on a slower or busier one.  The times of
this session are still written to ``build/notebook-times.csv`` and printed at
the end, for information.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import notebook_runner as runner  # noqa: E402

NOTEBOOKS = runner.notebook_paths()
IDS = [path.stem for path in NOTEBOOKS]
TIMES_CSV = ROOT / "build" / "notebook-times.csv"

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks/NN_*.ipynb yet")


@pytest.fixture(scope="session")
def results(request, course):
    """Results of the notebooks run so far, by name; written as a times table at the end."""
    collected = course.results  # the session's one run of each lesson (tests/conftest.py)
    yield collected
    if collected:
        ordered = [collected[name] for name in sorted(collected)]
        runner.write_times(ordered, TIMES_CSV)
        table = runner.format_times(ordered) + f"\n(written to {TIMES_CSV})"
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:
            with capture.global_and_fixture_disabled():  # straight to the terminal
                print("\n\nnotebook run times\n" + table)
        else:
            print(table)


# -- shape: no kernel needed --------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_has_a_title_a_goal_and_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    title, goal = runner.lesson_info(notebook)
    assert title, f"{path.name}: the first markdown cell should start with a '# Title'"
    assert goal, f"{path.name}: state the lesson's Goal near the top ('**Goal:** ...')"
    tagged = [cell for cell in notebook.cells
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell should be tagged 'parameters'"
    assert tagged[0].cell_type == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_uses_the_python3_kernel(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


# -- the runner's own behaviour, on fixture notebooks -------------------------------------------

def _fixture_course(folder: Path) -> list[Path]:
    """Two tiny lessons; the second writes to the kernel's stderr from a child process, as a
    spawned worker's traceback does."""
    folder.mkdir()
    sources = {"00_quiet": "print('hello')",
               "01_noisy": "import os\nos.system('echo KERNEL-NOISE >&2')\nprint('done')"}
    for name, code in sources.items():
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}\n\n**Goal:** be run."),
            nbformat.v4.new_code_cell(code)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, folder / f"{name}.ipynb")
    return runner.notebook_paths(folder)


@pytest.mark.system
@pytest.mark.timeout(120)
def test_building_the_book_prints_only_its_own_progress(tmp_path):
    """`make book` shows one line per lesson and the times table: no ipykernel warning about
    unencrypted TCP, nothing a kernel's child process wrote (that goes to the kernel log)."""
    notebooks = _fixture_course(tmp_path / "notebooks")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"),
                           "--notebooks", str(tmp_path / "notebooks"),
                           "--out", str(tmp_path / "book")],
                          capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    own = [r"\[\d+/\d+\] \S+\.ipynb \.\.\. \d+\.\d s", r"notebook\s+seconds\s+status\s+images",
           r"\S+\.ipynb\s+\d+\.\d\s+ok\s+\d+", r"total\s+\d+\.\d", r"wrote \S+index\.html", r""]
    foreign = [line for line in (done.stdout + done.stderr).splitlines()
               if not any(re.fullmatch(pattern, line.strip()) for pattern in own)]
    assert not foreign, f"build_book printed lines that are not its own: {foreign}"
    # the noise was kept, where a failing lesson's report can show it
    result = runner.run_notebook(notebooks[1])
    assert result.ok and "KERNEL-NOISE" in result.kernel_output, result.kernel_output
    assert "KERNEL-NOISE" in runner.failure_report(result)


# -- execution -------------------------------------------------------------------------------

@pytest.mark.system
@pytest.mark.xdist_group("course")
@pytest.mark.timeout(300)  # the runner times each cell out at 60 s; this is a backstop
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_without_error_and_draws_a_figure(path, results, course):
    """The lesson's one run in this session (the book test builds its page from the same run)."""
    result = course.run(path)
    assert result.error is None, f"{path.name} failed:\n{runner.failure_report(result)}"
    assert not result.error_outputs, f"{path.name} has error outputs: {result.error_outputs}"
    assert result.images >= 1, f"{path.name} drew no image/png output"
