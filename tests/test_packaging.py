"""The project's promises about itself: one dependency list, two commands, clean notebooks."""

import json
import re
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


def test_notebooks_are_committed_without_outputs():
    for path in sorted((ROOT / "notebooks").glob("**/*.ipynb")):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{path.name} has outputs: strip them"
                assert cell.get("execution_count") is None, f"{path.name} has execution counts"


def test_the_lazy_names_show_in_dir_for_tab_completion():
    import acceptlab

    assert {"WorkerPool", "fire", "run_experiment", "analysis", "plots"} <= set(dir(acceptlab))
