"""Lifecycle: whatever way the program that started a pool ends, nothing of the pool outlives it.

A learner starts workers from a script or from a Jupyter kernel, and then the
program ends in one of the ways programs end: Ctrl-C, ``kill`` (SIGTERM),
``kill -9`` (SIGKILL), the notebook's *interrupt*, *restart* or a kernel that
is killed outright.  In every case, soon:

* no worker process of that program is left running, and
* every port its pools listened on can be bound again.

"Soon" is a deadline three times (or more) what the README promises: 3 s where the program
stops its pools (Ctrl-C, the interrupt, the restart's SIGTERM to each worker: "stops every
worker within a second"), 2 s where the program dies and the workers must notice by
themselves ("each worker process notices within 0.2 s and exits by itself"), and for the
kernel itself jupyter_client's own forcing point (it SIGTERMs a kernel that has not left
halfway through its ``shutdown_wait_time``).  A broken mechanism leaves the workers running
for ever (the script's load goes on for 20 s, a notebook's pools until the next restart), so
the deadlines still tell it from a busy machine.

The script cases run under every start method (fork, spawn, forkserver): each
one leaves different helpers behind (spawn's resource tracker, the fork
server), so the script cases also check that the script's whole process group
is empty, not just the workers it printed.

The Jupyter cases drive a real ipykernel through jupyter_client, the way
JupyterLab does.  The kernelspec is written by the test itself into a
temporary folder and names ``sys.executable``, so the kernel is this venv's
Python whatever kernelspecs the machine has installed.  Every cell prints the
ports and worker pids as one JSON line so the test can check them from
outside the kernel.

Linux only: the checks read ``/proc`` (process state and process groups).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from acceptlab.server.pool import WorkerPool
from helpers import (accepted_by_pools_of, as_a_terminal_starts_it, port_is_free, process_gone,
                     wait_until, zen_round_trip)

pytestmark = [pytest.mark.system, pytest.mark.serial,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to find processes and process groups")]

START_METHODS = multiprocessing.get_all_start_methods()
# README: "Ctrl-C in a terminal, or pool.stop() ... stops every worker within a second"
STOP_DEADLINE = 3 * 1.0
# README: "If the parent dies outright ..., each worker process notices and exits by itself:
# at once on Linux 5.3 and later ..., within 0.2 s elsewhere" (10x the slower: a dying parent's
# workers also wait for the kernel to tear it down)
ORPHAN_DEADLINE = 10 * 0.2


# -- helpers ---------------------------------------------------------------------------------

def live_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every live process.

    Zombies (dead, not yet reaped) and processes that exit while we look are left out.
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if fields[0] not in ("Z", "X"):
            yield int(entry), fields  # fields[0] state, [1] parent pid, [2] process group


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    return [pid for pid, fields in live_processes() if int(fields[2]) == pgid]


def all_gone(pids: list[int], ports: list[int]) -> Callable[[], bool]:
    """A condition for :func:`wait_until`: every pid has exited and every port binds again."""
    return lambda: all(process_gone(pid) for pid in pids) and all(port_is_free(p) for p in ports)


def describe(pids: list[int]) -> str:
    """What the processes still alive are, for an assertion message."""
    alive = []
    for pid in pids:
        if not process_gone(pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = "?"
            alive.append(f"{pid}: {cmd.strip()}")
    return "; ".join(alive) or "none"


class Watcher:
    """Polls a condition in a background thread and remembers when it first became true.

    Used where the call that ends a program blocks for longer than the time we
    measure (``restart_kernel`` also starts the new kernel before it returns).
    """

    def __init__(self, condition: Callable[[], bool], timeout: float) -> None:
        self.condition, self.timeout = condition, timeout
        self.took: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "Watcher":
        self.start = time.monotonic()
        self._thread.start()
        return self

    def _watch(self) -> None:
        self.took = wait_until(self.condition, self.timeout, step=0.01)

    def __exit__(self, *exc: object) -> None:
        self._thread.join(self.timeout + 1)


# -- a plain script ------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    # A learner's script: a process pool started without `with`, a thread pool with it,
    # and a load against both until the script is stopped (at most 20 s).
    import faulthandler, json, os, signal, sys, time
    from acceptlab.client.load import one_connection
    from acceptlab.server.pool import WorkerPool
    from acceptlab.server.protocol import ZEN

    if __name__ == "__main__":
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks where it hangs
        processes = WorkerPool(workers=2, kind="process", start_method=sys.argv[1]).start()
        with WorkerPool(workers=2, kind="thread") as threads:
            assert one_connection(processes.address, ZEN, conn=0).ok
            assert one_connection(threads.address, ZEN, conn=1).ok
            print(json.dumps({"ports": [processes.address[1], threads.address[1]],
                              "workers": processes.pids}), flush=True)
            deadline = time.monotonic() + 20
            for n in range(100_000):
                if time.monotonic() > deadline:
                    break
                one_connection(processes.address, ZEN, conn=n, timeout=2)
                one_connection(threads.address, ZEN, conn=n, timeout=2)
                time.sleep(0.002)
""")


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_script_that_ends_leaves_no_worker_and_frees_its_ports(tmp_path, method, signum):
    """Kill a serving script mid-load: soon its workers are gone and both ports bind again.

    SIGKILL and SIGTERM go to the script's pid only (as ``kill`` does): its
    Python code never runs again, so only the workers' own watchdog can save
    the day.  Ctrl-C goes to the whole process group, as a terminal sends it:
    the workers ignore it and the script's ``KeyboardInterrupt`` (and
    multiprocessing's exit handler) must stop them.  The script runs in a
    session of its own so that its group is exactly its own processes.
    """
    script = tmp_path / "serve_and_load.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_a_terminal_starts_it)
    pgid = proc.pid
    try:
        line = proc.stdout.readline()
        assert line, f"the script died before serving: {proc.stderr.read()}"
        info = json.loads(line)
        pids, ports = info["workers"], info["ports"]
        assert len(pids) == 2 and not any(process_gone(pid) for pid in pids)
        # mid-load: both pools have served a good many of the script's connections
        assert wait_until(lambda: accepted_by_pools_of(proc.pid) >= 40, timeout=20) is not None
        if signum == signal.SIGINT:
            os.killpg(pgid, signum)
            deadline = STOP_DEADLINE  # the script's own code stops its pools
        else:
            proc.send_signal(signum)
            deadline = ORPHAN_DEADLINE  # the script's code never runs again: the workers notice
        took = wait_until(all_gone(pids, ports), timeout=deadline, step=0.01)
        assert took is not None, (f"{deadline} s after {signal.Signals(signum).name}: workers "
                                  f"left: {describe(pids)}; ports free: "
                                  f"{[port_is_free(p) for p in ports]}; "
                                  f"{_where_the_script_is(proc)}")
        empty = wait_until(lambda: not group_members(pgid), timeout=deadline, step=0.01)
        assert empty is not None, f"left in the script's group: {describe(group_members(pgid))}"
        assert proc.wait(1) is not None
    finally:
        _kill_group(pgid)
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def _where_the_script_is(proc: subprocess.Popen) -> str:
    """For a failure's message: has the script ended, and if not, what its threads are doing."""
    if proc.poll() is not None:
        return f"the script ended with {proc.returncode}"
    proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to stderr
    time.sleep(0.5)
    proc.kill()
    proc.wait(5)
    return "the script was still running; its stacks:\n" + proc.stderr.read()[-3000:]


def _kill_group(pgid: int) -> None:
    """Clean-up after a failed test: SIGKILL whatever is left of a group we started."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.mark.parametrize("method", START_METHODS)
def test_a_stopped_pool_frees_its_port_while_another_pool_runs(method):
    """Stop pool A while pool B (started after A) still runs: A's port must bind again at once.

    Under ``fork`` each of B's workers is a copy of the parent process and
    inherits every file descriptor the parent had open, A's listening socket
    included.  Unless a worker closes what it inherited, A's port keeps
    listening inside B's workers after ``A.stop()``: the port cannot be bound,
    and worse, new clients connect into a queue that nobody will ever accept.
    """
    first = WorkerPool(workers=2, kind="process", start_method=method).start()
    second = None
    try:
        second = WorkerPool(workers=2, kind="process", start_method=method).start()
        port = first.address[1]
        first.stop()
        took = wait_until(lambda: port_is_free(port), timeout=STOP_DEADLINE)
        assert took is not None, (f"port {port} of a stopped pool is still held by the "
                                  f"workers of another pool ({method})")
        assert zen_round_trip(second.address) == [b"Ugly.", b"Implicit.", b"Complex."]
    finally:
        first.stop()
        if second is not None:
            second.stop()


# -- a real Jupyter kernel -----------------------------------------------------------------

KERNEL_NAME = "acceptlab-test-python"


class Kernel:
    """A real ipykernel, driven as JupyterLab drives it, with a timeout on every call."""

    def __init__(self, spec_dir: Path, cwd: Path) -> None:
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager(kernel_dirs=[str(spec_dir)])
        self.manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        assert self.manager.kernel_spec.argv[0] == sys.executable
        self.cwd = cwd
        self.groups: set[int] = set()  # every process group a kernel of ours ever had
        self.client = None

    def start(self) -> None:
        self.manager.start_kernel(cwd=str(self.cwd))
        self._connect()

    def restart(self) -> None:
        """Restart as JupyterLab's button does: a shutdown request first, force after a while."""
        self.manager.restart_kernel(now=False)
        self._connect()

    def _connect(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=30)
        self.pid = int(self.run("import os; print(os.getpid())").strip())
        self.groups.add(os.getpgid(self.pid))

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute a cell to the end; return what it printed; fail on an error."""
        printed: list[str] = []

        def collect(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                printed.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(textwrap.dedent(code), timeout=timeout,
                                                output_hook=collect, allow_stdin=False)
        text = "".join(printed)
        assert reply["content"]["status"] == "ok", text
        return text

    def begin(self, code: str) -> str:
        """Start a cell without waiting for it; return its message id."""
        return self.client.execute(textwrap.dedent(code), allow_stdin=False)

    def first_json_line(self, msg_id: str, timeout: float = 30) -> dict:
        """Wait for the running cell ``msg_id`` to print a JSON line; return it."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:  # nothing yet
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
                for line in text.splitlines():
                    if line.startswith("{"):
                        return json.loads(line)
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
        raise TimeoutError(f"the cell printed no JSON line within {timeout} s: {text!r}")

    def reply(self, msg_id: str, timeout: float = 30) -> dict:
        """The execute_reply of cell ``msg_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.client.get_shell_msg(timeout=max(0.05, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        raise TimeoutError(f"no reply to {msg_id} within {timeout} s")

    def close(self) -> None:
        """Shut down whatever kernel is running, then kill anything left in our groups."""
        if self.client is not None:
            self.client.stop_channels()
        try:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        finally:
            for group in self.groups:
                _kill_group(group)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[Kernel]:
    """One kernel manager for the module; each test leaves it alive or restarts it."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "acceptlab tests (this venv)",
        "language": "python",
    }))
    k = Kernel(root / "kernels", cwd=root)
    try:
        k.start()
        yield k
    finally:
        k.close()


def _fresh(kernel: Kernel) -> Kernel:
    """A brand-new kernel process: nothing that earlier tests started lives in it."""
    if kernel.manager.is_alive():
        kernel.manager.restart_kernel(now=True)  # SIGKILL to the old group, then a new kernel
        kernel._connect()
        return kernel
    return _alive(kernel)


def _alive(kernel: Kernel) -> Kernel:
    """The kernel, started again if an earlier test killed it."""
    if not kernel.manager.is_alive():
        kernel.manager.shutdown_kernel(now=True)  # forget the dead one
        kernel.start()
    return kernel


# Every start method, plus one thread pool: what a notebook can start.
START_POOLS = """
    import json, os
    from acceptlab import WorkerPool, fire
    pools = [WorkerPool(workers=2, kind="thread").start()]
    pools += [WorkerPool(workers=2, kind="process", start_method=m).start() for m in {methods!r}]
    print(json.dumps({{"kernel": os.getpid(),
                      "ports": [p.address[1] for p in pools],
                      "workers": [pid for p in pools if p.kind == "process" for pid in p.pids]}}),
          flush=True)
""".format(methods=START_METHODS)


def _check_started(info: dict, kernel: Kernel) -> tuple[list[int], list[int]]:
    pids, ports = info["workers"], info["ports"]
    assert info["kernel"] == kernel.pid
    assert len(pids) == 2 * len(START_METHODS) and len(ports) == 1 + len(START_METHODS)
    assert not any(process_gone(pid) for pid in pids)
    assert not any(port_is_free(port) for port in ports)
    return pids, ports


def test_interrupting_a_kernel_during_a_long_load_stops_the_cells_pools(kernel):
    """Interrupt a cell whose ``with`` block holds pools during a long load.

    jupyter_client interrupts with SIGINT to the kernel's whole process group.
    The workers ignore it; the cell's ``KeyboardInterrupt`` leaves the
    ``with`` block, which must stop every pool of that cell (within the README's second).
    A pool started by an earlier cell, outside any ``with``, is the
    learner's to stop: it must survive the interrupt and keep serving.
    """
    k = _alive(kernel)
    keeper = json.loads(k.run("""
        import json
        from acceptlab import WorkerPool
        keeper = WorkerPool(workers=2, kind="process").start()
        print(json.dumps({"port": keeper.address[1], "workers": keeper.pids}))
    """))
    cell = k.begin(f"""
        import contextlib, json, os
        from acceptlab import WorkerPool, fire
        with contextlib.ExitStack() as stack:
            pools = [stack.enter_context(WorkerPool(workers=2, kind="thread"))]
            pools += [stack.enter_context(WorkerPool(workers=2, kind="process", start_method=m))
                      for m in {START_METHODS!r}]
            print(json.dumps({{"kernel": os.getpid(),
                              "ports": [p.address[1] for p in pools],
                              "workers": [pid for p in pools if p.kind == "process"
                                          for pid in p.pids]}}), flush=True)
            fire(pools[1].address, connections=20_000, concurrency=2, gap=0.001,
                 duration=30, timeout=2)
        print("the load finished before the interrupt")
    """)
    pids, ports = _check_started(k.first_json_line(cell), k)
    # the load is running: the cell's pools have served some of it
    assert wait_until(lambda: accepted_by_pools_of(k.pid) >= 20, timeout=30) is not None
    k.manager.interrupt_kernel()
    took = wait_until(all_gone(pids, ports), timeout=STOP_DEADLINE, step=0.01)
    assert took is not None, (f"{STOP_DEADLINE} s after the interrupt: workers left: "
                              f"{describe(pids)}; ports free: {[port_is_free(p) for p in ports]}")
    reply = k.reply(cell, timeout=10)  # the cell ended (not the 30 s load): a hang guard
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    # Nothing of the cell's pools is left inside the kernel either.
    threads = k.run("""
        import threading
        print(sorted(t.name for t in threading.enumerate()
                     if t.name.startswith("acceptlab") and t.is_alive()))
    """, timeout=10)
    assert threads.strip() == "['acceptlab-supervisor']", threads  # the keeper's supervisor
    # The earlier cell's pool survived the interrupt: same workers, still serving.
    assert not any(process_gone(pid) for pid in keeper["workers"])
    assert zen_round_trip(("127.0.0.1", keeper["port"])) == [b"Ugly.", b"Implicit.", b"Complex."]
    k.run("keeper.stop()", timeout=10)
    assert wait_until(all_gone(keeper["workers"], [keeper["port"]]),
                      timeout=STOP_DEADLINE) is not None


def children_running(pid: int, marker: str) -> list[int]:
    """Live children of ``pid`` whose command line contains ``marker``."""
    found = []
    for child, fields in live_processes():
        if int(fields[1]) != pid:
            continue
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        if marker in cmdline:
            found.append(child)
    return found


@pytest.mark.parametrize("method", START_METHODS)
def test_restarting_the_kernel_leaves_no_worker_and_frees_the_ports(kernel, method):
    """Restart the kernel (JupyterLab's button) while pools that nobody stopped are running.

    The notebook: a thread pool, a process pool started with ``method``, and a
    short ``fire()`` at it.  A restart sends the kernel a shutdown request;
    ipykernel then SIGTERMs every child in its process group and waits for
    them, re-checking after 0.01, 0.03, 0.1, 0.3, 1, 3 s, before it exits; if
    the kernel is still there after 2.5 s, jupyter_client SIGTERMs the group.
    So the pool must let its workers go: a supervisor that replaces them
    keeps the kernel, and the ports it holds, alive until jupyter_client forces it.

    Known limit, outside the kit: multiprocessing's resource tracker (started
    by spawn and forkserver for every process they start) ignores SIGTERM, so
    ipykernel waits for it until jupyter_client's 2.5 s deadline, and the
    kernel's listening sockets live until then.  Where that tracker is what
    holds the kernel, the test is marked xfail with that reason; the workers
    must be gone all the same.
    """
    k = _fresh(kernel)
    info = json.loads(k.run(f"""
        import json, os
        from acceptlab import WorkerPool, fire
        pools = [WorkerPool(workers=2, kind="thread").start(),
                 WorkerPool(workers=2, kind="process", start_method={method!r}).start()]
        client = fire(pools[1].address, connections=200, concurrency=2, timeout=2)
        assert client["ok"].all()
        print(json.dumps({{"kernel": os.getpid(), "ports": [p.address[1] for p in pools],
                          "workers": pools[1].pids}}), flush=True)
    """).splitlines()[0])
    pids, ports, old_kernel = info["workers"], info["ports"], k.pid
    assert info["kernel"] == old_kernel and len(pids) == 2 and len(ports) == 2
    assert not any(process_gone(pid) for pid in pids)
    tracker = children_running(old_kernel, "resource_tracker")
    group = os.getpgid(old_kernel)
    before = set(group_members(group))
    seen: dict[int, str] = {}  # pid: command line, of every member of the old kernel's group

    def workers_gone() -> bool:
        """The workers are gone, and no process the old kernel started since is left."""
        others = [p for p in group_members(group) if p != old_kernel and p not in tracker]
        return not others and all(process_gone(pid) for pid in pids)

    def census() -> bool:
        """Never true: records every member of the old kernel's group until the time is up."""
        for pid in group_members(group):
            if pid not in seen:
                seen[pid] = describe([pid])
        return False

    # jupyter_client SIGTERMs a kernel still there halfway through shutdown_wait_time (2.5 s
    # by default): a kernel that leaves by itself is gone before then (in ~0.3 s when its
    # workers go at once: ipykernel re-checks its children after 0.01, 0.03, 0.1, 0.3 s ...)
    forced_at = k.manager.shutdown_wait_time / 2
    with Watcher(workers_gone, timeout=STOP_DEADLINE) as workers, \
            Watcher(all_gone([old_kernel], ports), timeout=forced_at) as kernel_and_ports, \
            Watcher(census, timeout=max(STOP_DEADLINE, forced_at) + 0.5):
        k.restart()
    assert workers.took is not None, (
        f"{STOP_DEADLINE} s after the restart began, processes of the old kernel left: "
        f"{describe([p for p in group_members(group) if p != old_kernel and p not in tracker])}")
    started_during_shutdown = [seen[pid] for pid in sorted(set(seen) - before)]
    assert not started_during_shutdown, (
        f"while the kernel shut down, it started {len(started_during_shutdown)} new processes "
        f"(the supervisor replacing the workers ipykernel had just terminated?): "
        f"{started_during_shutdown}")
    if kernel_and_ports.took is None and tracker and method != "fork":
        pytest.xfail(f"the old kernel lived > {forced_at} s, held by multiprocessing's resource "
                     f"tracker (pid {tracker[0]}, ignores SIGTERM), which ipykernel waits for")
    assert kernel_and_ports.took is not None, (
        f"{forced_at} s after the restart began (jupyter_client then forces it) the old kernel {old_kernel} "
        f"{'was still alive' if not process_gone(old_kernel) else 'had gone'}; ports free: "
        f"{[port_is_free(p) for p in ports]}; its resource tracker: {tracker or 'none'}")
    empty = wait_until(lambda: not group_members(group), timeout=STOP_DEADLINE, step=0.01)
    assert empty is not None, f"left in the old kernel's group: {describe(group_members(group))}"
    assert k.pid != old_kernel
    assert k.run("print(1 + 1)").strip() == "2"  # the new kernel works


def test_a_killed_kernel_leaves_no_worker_and_frees_the_ports(kernel):
    """SIGKILL the kernel process alone, as the OOM killer would: no code of it runs again.

    Only the kernel dies, not its group, so the process workers must notice
    by themselves (their watchdog waits on the pool's pid) and the thread pool's
    port is freed with the kernel, once the fork workers that inherited its
    socket are gone too.
    """
    k = _alive(kernel)
    info = json.loads(k.run(START_POOLS).splitlines()[0])
    pids, ports = _check_started(info, k)
    group = os.getpgid(k.pid)
    os.kill(k.pid, signal.SIGKILL)
    took = wait_until(all_gone(pids, ports), timeout=ORPHAN_DEADLINE, step=0.01)
    assert took is not None, (f"{ORPHAN_DEADLINE} s after SIGKILL of the kernel: workers left: "
                              f"{describe(pids)}; ports free: {[port_is_free(p) for p in ports]}")
    # Checked before any clean-up of ours, which would SIGKILL the group and hide leftovers.
    empty = wait_until(lambda: not group_members(group), timeout=ORPHAN_DEADLINE, step=0.01)
    assert empty is not None, f"left in the kernel's group: {describe(group_members(group))}"


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_a_workers_watchdog_ends_it_when_the_pool_process_is_gone(pidfd):
    """The watchdog of acceptlab.server.process, both ways: waiting on a pidfd of the pool's
    process (Linux 5.3+), or looking every 0.2 s where there is none."""
    from acceptlab.server import process

    if pidfd and not hasattr(os, "pidfd_open"):
        pytest.skip("this Python or platform has no os.pidfd_open")
    pool = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    worker = os.fork()
    if worker == 0:  # a stand-in worker: only the watchdog can end it
        try:
            if not pidfd and hasattr(os, "pidfd_open"):
                del os.pidfd_open
            process._watch_pool(pool.pid)
            time.sleep(30)
        finally:
            os._exit(1)  # 1: the watchdog did not end it (it ends a worker with 0)
    try:
        time.sleep(0.3)  # the watchdog is watching
        assert not process_gone(worker), "the watchdog ended the worker while the pool lived"
        pool.kill()
        pool.wait()
        status: list[int] = []

        def ended() -> bool:
            pid, code = os.waitpid(worker, os.WNOHANG)
            status.append(code)
            return pid == worker

        took = wait_until(ended, timeout=ORPHAN_DEADLINE)
        assert took is not None, f"the worker outlived its pool by {ORPHAN_DEADLINE} s"
        assert os.waitstatus_to_exitcode(status[-1]) == 0, "it ended, but not by its watchdog"
    finally:
        if pool.poll() is None:
            pool.kill()
        if not process_gone(worker):
            os.kill(worker, signal.SIGKILL)
