"""Ctrl-C keeps what was measured: ``run``, ``load`` and ``compare`` interrupted as a terminal does.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the
command, its workers and its client processes.  Each test starts the command
in a session of its own (so the signal reaches no one else), waits until the
load is visibly under way (the progress bar has counted connections), sends
SIGINT to the group, and checks:

* exit code 130, no traceback or KeyboardInterrupt from any process (all of
  them write to the same stderr pipe);
* the load stopped: no client connection ended later than 3 s after the signal
  (``time.monotonic_ns`` is one clock for every process);
* the summary of what completed is printed, and ``run``/``compare`` wrote
  their files with ``"interrupted": true``;
* nothing is left: no process of the session, alive or zombie, soon after the
  command exited.

The deadlines are three times what the README promises ("Ctrl-C ... stops every worker
within a second"): a command that ignored Ctrl-C would run for minutes (every load here is
sized for far longer), so they still tell a broken Ctrl-C from a busy machine.  How close
to the promise the commands really stop is measured by ``python -m bench.run_all --only
timings``.

Linux only: the leftover check reads /proc.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import accepted_by_pools_of, best_of, linux, wait_until

pytestmark = [pytest.mark.system, pytest.mark.serial,
              pytest.mark.skipif(not linux(), reason="the leftover check reads /proc (Linux)")]

ACCEPTLAB = [sys.executable, "-m", "acceptlab"]
# README: "Ctrl-C ... stops every worker within a second" (and the load with them).
PROMISE_S = 1.0
STOP_DEADLINE_NS = int(3 * PROMISE_S * 1e9)  # the load's last connection ends within 3x that
# From Ctrl-C to exit: the load stops (1 s promised), then the pool (1 s promised), then the
# command saves and prints (about 1 s): 3 s, and three times that as the deadline.
EXIT_DEADLINE_S = 3 * 3.0
LEFTOVER_DEADLINE_S = 3 * PROMISE_S  # after the exit, every process of the session is gone
COUNTED = re.compile(r"connections:\s+\d+%\|[^|]*\|\s*[1-9]\d*/")  # tqdm: some done


class Command:
    """``acceptlab ...`` in its own session, its stderr collected as it comes (progress bars)."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen([*ACCEPTLAB, *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._err = bytearray()
        self._out = bytearray()
        self._readers = [threading.Thread(target=self._drain, args=(pipe, into), daemon=True)
                         for pipe, into in ((self.proc.stderr, self._err),
                                            (self.proc.stdout, self._out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe, into: bytearray) -> None:
        while chunk := os.read(pipe.fileno(), 65536):
            into.extend(chunk)

    @property
    def stderr(self) -> str:
        return self._err.decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._out.decode(errors="replace")

    def wait_for_load(self, timeout: float = 60, sign: re.Pattern = COUNTED) -> None:
        took = wait_until(lambda: sign.search(self.stderr) or self.proc.poll() is not None,
                          timeout, step=0.05)
        assert took is not None and self.proc.poll() is None, \
            f"the load never got going: rc {self.proc.poll()}, {self.stderr[-1500:]}"

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole group; return when (ns) it went."""
        sent = time.monotonic_ns()
        os.killpg(self.proc.pid, signal.SIGINT)
        return sent

    def wait(self, timeout: float) -> float:
        """Seconds until the command exited (fails the test past ``timeout``)."""
        start = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s after Ctrl-C: {self.stderr[-1500:]}")
        for reader in self._readers:
            reader.join(5)
        return time.monotonic() - start

    def session(self) -> list[str]:
        """Every process (alive or zombie) still in the command's session."""
        left = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # [0] state, [1] ppid, [2] pgrp, [3] session
                left.append(f"{entry} {fields[0]} {command.decode(errors='replace')[:100]}")
        return left

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started
        except ProcessLookupError:
            pass


def assert_clean_exit(command: Command) -> None:
    """Exit code 130, no traceback from any process, the interruption said, nothing left."""
    assert command.proc.returncode == 130, (command.proc.returncode, command.stderr[-2000:])
    for word in ("Traceback", "KeyboardInterrupt"):
        assert word not in command.stderr, command.stderr[-3000:]
    assert "acceptlab: interrupted" in command.stderr
    assert wait_until(lambda: not command.session(), LEFTOVER_DEADLINE_S) is not None, \
        f"left behind: {command.session()}"


def assert_stopped_in_time(client: pd.DataFrame, sent_ns: int) -> None:
    assert len(client) > 0, "nothing measured was kept"
    last = int(pd.to_numeric(client["t_done_ns"]).max())
    assert last - sent_ns < STOP_DEADLINE_NS, \
        f"the load went on {(last - sent_ns) / 1e9:.2f} s after Ctrl-C"



@pytest.mark.parametrize("options", [
    pytest.param(["--gap", "0.001"], id="sequential"),
    pytest.param(["--processes", "2", "--concurrency", "4", "--start-method", "spawn"],
                 id="client-processes-spawn-workers"),
    pytest.param(["--processes", "2", "--rate", "400", "--start-method", "forkserver"],
                 id="open-loop-client-processes-forkserver-workers"),
    pytest.param(["--rate", "300", "--kind", "thread"], id="open-loop"),
])
def test_ctrl_c_during_run_keeps_the_run(tmp_path, options):
    out = tmp_path / "run"
    command = Command("run", "-c", "10000000", "--duration", "120", "--workers", "2",
                      "--out", str(out), *options)
    try:
        command.wait_for_load()
        sent = command.interrupt()
        command.wait(EXIT_DEADLINE_S)
        assert_clean_exit(command)
    finally:
        command.kill()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["interrupted"] is True
    client = pd.read_csv(out / "client.csv")
    assert_stopped_in_time(client, sent)
    assert f"{len(client)} connections" in command.stdout  # the summary of what completed
    assert "client:" in command.stdout and "latency (ms)" in command.stdout


def test_ctrl_c_during_load_prints_what_completed(start_pool):
    pool = start_pool(workers=2, kind="thread")
    command = Command("load", "--port", str(pool.address[1]), "-c", "100000000",
                      "--duration", "120", "--processes", "2", "--concurrency", "2")
    try:
        command.wait_for_load()
        command.interrupt()
        command.wait(EXIT_DEADLINE_S)
        assert_clean_exit(command)
    finally:
        command.kill()
    done = re.search(r"client: (\d+) connections, (\d+) ok", command.stdout)
    assert done and int(done.group(1)) > 0, command.stdout


def test_ctrl_c_during_compare_writes_what_completed(tmp_path):
    out = tmp_path / "compare"
    command = Command("compare", "--strategies", "blocking", "poll", "--kinds", "thread",
                      "-c", "10000000", "--out", str(out))
    try:
        # compare's bar counts runs, not connections: once it shows, wait until the first
        # run's thread workers (in the command's own process) have served a good number.
        command.wait_for_load(sign=re.compile(r"experiments:"))
        assert wait_until(lambda: accepted_by_pools_of(command.proc.pid) >= 200, timeout=60,
                          step=0.1) is not None, f"no connection served: {command.stderr[-1500:]}"
        sent = command.interrupt()
        command.wait(EXIT_DEADLINE_S)
        assert_clean_exit(command)
    finally:
        command.kill()
    meta = json.loads((out / "runs" / "blocking-thread" / "meta.json").read_text())
    assert meta["interrupted"] is True
    assert not (out / "runs" / "poll-thread").exists()  # nothing new starts after Ctrl-C
    assert_stopped_in_time(pd.read_csv(out / "runs" / "blocking-thread" / "client.csv"), sent)
    assert (out / "summary.csv").exists() and "blocking/thread" in command.stdout


def test_a_second_ctrl_c_quits_at_once_without_a_traceback(tmp_path):
    """The second Ctrl-C takes the quick way out (it says so) instead of saving the run.

    The second press must land while the first one's saving is under way (some 0.3 s on a
    quiet machine) and not so soon that the two are one signal: on a crowded machine either
    can miss.  So up to three tries, the best counting; every try must exit with 130, without
    a traceback, and leave nothing behind."""
    def two_presses() -> str:
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"  # each try its own folder
        command = Command("run", "-c", "10000000", "--duration", "120", "--processes", "2",
                          "--concurrency", "4", "--out", str(out))
        try:
            command.wait_for_load()
            command.interrupt()
            time.sleep(0.05)  # two presses of Ctrl-C, as a hurried hand makes them
            command.interrupt()
            command.wait(EXIT_DEADLINE_S)
        finally:
            command.kill()
        assert command.proc.returncode == 130, command.stderr[-2000:]
        for word in ("Traceback", "KeyboardInterrupt"):
            assert word not in command.stderr, command.stderr[-3000:]
        assert wait_until(lambda: not command.session(), LEFTOVER_DEADLINE_S) is not None, \
            f"left behind: {command.session()}"
        return command.stderr

    tries = best_of(3, two_presses, lambda stderr: "interrupted again: quitting now" in stderr)
    assert tries.ok, [stderr[-300:] for stderr in tries.values]