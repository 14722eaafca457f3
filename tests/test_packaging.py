"""The project's promises about itself: one dependency list, two commands, clean notebooks."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _name_and_bound(requirement: str) -> tuple[str, str]:
    """'pandas>=2.0' -> ('pandas', '>=2.0'); names normalised the way pip does."""
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2).replace(" ", "")


def test_environment_yml_has_the_same_lower_bounds_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = dict(_name_and_bound(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.update(_name_and_bound(r) for r in extra if not r.startswith("acceptlab"))
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e .[dev]") for line in pip), "environment.yml must install the kit"
    for name, bound in map(_name_and_bound, conda):
        if name == "python":
            assert bound == project["requires-python"]
        elif name != "pip":
            assert name in declared, f"{name} is in environment.yml but not in pyproject.toml"
            assert bound == declared[name], f"{name}: environment.yml {bound} != pyproject {declared[name]}"
    for core in ("pandas", "matplotlib", "jupyterlab"):
        assert core in {n for n, _ in map(_name_and_bound, conda)}


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


STRIP_HINT = ("run `make strip` (it removes outputs and execution counts from the working "
              "copies), then `git add` the notebook")


def notebooks_as_git_holds(root: Path) -> dict[str, str]:
    """Each notebook under ``root/notebooks`` as the next commit would hold it: path -> JSON.

    A tracked notebook is read from git's index (what is committed, or staged to be), never
    from the working copy, which JupyterLab rewrites with outputs whenever it autosaves.  A
    notebook git does not track yet is read from the working copy (``git add`` would take it
    as it is), and so is every notebook outside a git checkout.
    """
    found = {str(path.relative_to(root)): path.read_text(encoding="utf-8")
             for path in sorted((root / "notebooks").glob("**/*.ipynb"))}
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", "notebooks"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return found  # not a git checkout (an unpacked archive): the files are all there is
    for name in filter(None, listed.stdout.split("\0")):
        if name.endswith(".ipynb"):
            staged = subprocess.run(["git", "-C", str(root), "show", f":{name}"],
                                    capture_output=True, text=True, check=True)
            found[name] = staged.stdout
    return found


def output_problems(root: Path) -> list[str]:
    """One line per notebook that git holds with outputs or execution counts, saying how to fix it."""
    problems = []
    for name, text in notebooks_as_git_holds(root).items():
        cells = [cell for cell in json.loads(text)["cells"] if cell["cell_type"] == "code"]
        outputs = sum(bool(cell.get("outputs")) for cell in cells)
        counts = sum(cell.get("execution_count") is not None for cell in cells)
        if outputs or counts:
            problems.append(f"{name} is committed (or staged) with outputs in {outputs} and "
                            f"execution counts in {counts} code cells: {STRIP_HINT}")
    return problems


@pytest.mark.system
def test_notebooks_are_committed_without_outputs():
    """What git holds has no outputs; outputs only in the working copy (autosave) are fine."""
    problems = output_problems(ROOT)
    assert not problems, "\n".join(problems)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


def _lesson(with_outputs: bool) -> str:
    import nbformat

    cell = nbformat.v4.new_code_cell("print('hi')")
    if with_outputs:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
        cell.execution_count = 1
    return nbformat.writes(nbformat.v4.new_notebook(cells=[cell]))


@pytest.mark.system
def test_a_notebook_autosaved_with_outputs_does_not_fail_the_check(tmp_path):
    """JupyterLab writes outputs into the working copy: the check reads git's copy instead."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the committed-notebook check cannot be exercised")
    (tmp_path / "notebooks").mkdir()
    lesson = tmp_path / "notebooks" / "08_playground.ipynb"
    lesson.write_text(_lesson(with_outputs=False))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "notebooks")
    _git(tmp_path, "commit", "-q", "-m", "clean lesson")
    lesson.write_text(_lesson(with_outputs=True))  # a student ran it; JupyterLab saved it
    assert output_problems(tmp_path) == []
    _git(tmp_path, "add", "notebooks")  # ...and then staged it: now it would be committed
    problems = output_problems(tmp_path)
    assert len(problems) == 1 and "make strip" in problems[0], problems
    new = tmp_path / "notebooks" / "09_new.ipynb"  # not tracked yet: its file is what counts
    new.write_text(_lesson(with_outputs=True))
    assert any(problem.startswith("notebooks/09_new.ipynb") for problem in output_problems(tmp_path))


@pytest.mark.system
def test_make_strip_removes_outputs_and_keeps_cell_ids(tmp_path):
    """`make strip` (the Makefile's own recipe, run on a copy) cleans an autosaved lesson."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed: `make strip` cannot be exercised")
    from makefile import BIN, make_command

    if not (BIN / "nbstripout").exists():
        pytest.skip(f"nbstripout is not installed in {BIN} (pip install -e '.[notebooks]')")
    command = make_command(tmp_path, "strip")
    lesson = tmp_path / "notebooks" / "08_playground.ipynb"
    lesson.write_text(_lesson(with_outputs=True))
    ids = [cell["id"] for cell in json.loads(lesson.read_text())["cells"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    cells = json.loads(lesson.read_text())["cells"]
    assert [cell["id"] for cell in cells] == ids
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in cells)


def test_the_lazy_names_show_in_dir_for_tab_completion():
    import acceptlab

    assert {"WorkerPool", "fire", "run_experiment", "analysis", "plots"} <= set(dir(acceptlab))


def test_no_reference_run_records_where_the_machine_that_made_it_keeps_its_files():
    """Command lines in data/*/meta.json name programs, not paths of one machine
    (tools/make_real_reference.py cuts them; ``--scrub`` rewrites saved runs)."""
    found = []

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("cmd", "command") and isinstance(item, str):
                    found.extend(f"{where}: {part}" for part in item.split(" ")
                                 if part.startswith("/"))
                else:
                    walk(item, where)
        elif isinstance(value, list):
            for item in value:
                walk(item, where)

    metas = sorted((ROOT / "data").glob("*/meta.json"))
    assert metas, "no reference runs in data/"
    for path in metas:
        walk(json.loads(path.read_text()), path.parent.name)
    assert not found, "machine paths in reference data:\n  " + "\n  ".join(found[:10])
