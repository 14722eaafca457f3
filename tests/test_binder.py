"""The repository builds where hubs are built: repo2docker (Binder, Zero to JupyterHub).

``jupyter-repo2docker --no-build --debug .`` reads the repository's ``environment.yml`` and
``apt.txt`` and prints the Dockerfile it would build, without Docker.  The test checks that it
runs without error and that the image would install what the kit declares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPO2DOCKER = Path(sys.executable).with_name("jupyter-repo2docker")


def apt_packages() -> list[str]:
    lines = (ROOT / "apt.txt").read_text().splitlines()
    return [line.partition("#")[0].strip() for line in lines if line.partition("#")[0].strip()]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    if not REPO2DOCKER.exists():
        pytest.skip("jupyter-repo2docker IS NOT INSTALLED: the image spec was not checked "
                    "(pip install -e '.[dev]')")
    done = subprocess.run([str(REPO2DOCKER), "--no-build", "--debug", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_repo2docker_prints_a_dockerfile(dockerfile):
    assert dockerfile.lstrip().startswith("FROM ")
    assert 'CMD ["jupyter", "notebook"' in dockerfile or "CMD [" in dockerfile


def test_the_image_installs_the_kit_from_environment_yml(dockerfile):
    # the conda environment comes from the repository's environment.yml, after the copy of
    # the repository (its pip section installs the kit itself, `-e .[dev]`)
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"' in dockerfile
    assert dockerfile.index("COPY --chown") < dockerfile.index('--file "environment.yml"')


def test_the_image_installs_the_system_packages_of_apt_txt(dockerfile):
    packages = apt_packages()
    assert packages, "apt.txt lists no package"
    line = next((line for line in dockerfile.splitlines()
                 if line.startswith("apt-get install --yes --no-install-recommends ")), "")
    named = line.split("--no-install-recommends", 1)[-1].replace("&&", " ").replace("\\", " ")
    assert named.split() == packages


def test_the_hub_extra_is_what_the_image_gets():
    """environment.yml installs `.[dev]`, and dev includes the hub extra (the proxy)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert '"acceptlab[hub]"' in text and "jupyter-server-proxy" in text
    assert "-e .[dev]" in (ROOT / "environment.yml").read_text()
