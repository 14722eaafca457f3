"""The private network namespace: its own sysctls and loopback, the host's untouched."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import acceptlab

from acceptlab.linux.netns import NoPrivilege, read_sysctl, run_isolated

pytestmark = pytest.mark.system

MIGRATE = "net.ipv4.tcp_migrate_req"


def _look_inside() -> dict:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
    return {"migrate": read_sysctl(MIGRATE), "pid": os.getpid()}


def _fail() -> None:
    raise ValueError("no such thing")


def _needs_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root: run the suite as root (CI does)")
    if read_sysctl(MIGRATE) is None:
        pytest.skip(f"{MIGRATE} needs Linux >= 5.14; this is {os.uname().release}")


def test_sysctl_is_set_inside_and_the_host_keeps_its_own():
    _needs_namespace()
    host_before = read_sysctl(MIGRATE)
    wanted = "0" if host_before == "1" else "1"
    inside = run_isolated(_look_inside, sysctls={MIGRATE: wanted}, timeout=20)
    assert inside["migrate"] == wanted  # loopback worked too: a connection was made
    assert inside["pid"] != os.getpid()
    assert read_sysctl(MIGRATE) == host_before


def test_an_error_inside_is_one_line_outside():
    _needs_namespace()
    with pytest.raises(RuntimeError, match="ValueError: no such thing"):
        run_isolated(_fail, timeout=20)


def test_an_unknown_sysctl_is_refused_plainly():
    _needs_namespace()
    with pytest.raises(NoPrivilege, match="does not exist"):
        run_isolated(_look_inside, sysctls={"net.ipv4.no_such_knob": 1}, timeout=20)


def test_without_privilege_it_says_so(tmp_path):
    """A process without CAP_SYS_ADMIN gets one NoPrivilege line, no traceback."""
    if os.geteuid() != 0:  # already unprivileged: ask directly
        with pytest.raises(NoPrivilege, match="root"):
            run_isolated(_look_inside, timeout=20)
        return
    script = ("import os\n"
              "import multiprocessing.connection, multiprocessing.popen_fork  # before losing /root\n"
              "from acceptlab.linux.netns import run_isolated, NoPrivilege\n"
              "os.setgid(65534); os.setuid(65534)  # nobody: no capabilities left\n"
              "try:\n    run_isolated(os.getpid, timeout=20)\n"
              "except NoPrivilege as exc:\n    print('NoPrivilege:', exc)\n")
    source = str(Path(acceptlab.__file__).parents[1])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": source})
    assert "NoPrivilege: cannot create a network namespace" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr
