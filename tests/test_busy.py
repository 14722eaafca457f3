"""machine_busy: how many cores other work used during a run (acceptlab.linux.busy).

The arithmetic is tested on fixture /proc files (a fake /proc directory and a fake clock);
one live test spins a process of the run's own and one of another's and checks that each
lands on its side of the account, against each spinner's own CPU time as the kernel counts it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest

from helpers import wait_until
from acceptlab.linux.busy import (Busy, BusySampler, BusyUnavailable, machine_ticks,
                                  process_ticks)

TICK = os.sysconf("SC_CLK_TCK")


def stat_line(user: int, system: int, idle: int, *, nice=0, iowait=0, irq=0, softirq=0,
              steal=0, guest=0) -> str:
    return (f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} {guest} 0\n"
            f"cpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\n")


def pid_stat(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime=0, cstime=0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice ...
    return (f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304 100 0 0 0 "
            f"{utime} {stime} {cutime} {cstime} 20 0 1 0 1000 1000000 100 0\n")


class FakeProc:
    """A directory laid out like /proc: stat, and PID/stat for each process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def machine(self, busy: int, idle: int = 1000) -> None:
        (self.root / "stat").write_text(stat_line(busy, 0, idle))

    def process(self, pid: int, ticks: int, *, reaped: int = 0, ppid: int = 1) -> None:
        (self.root / str(pid)).mkdir(exist_ok=True)
        (self.root / str(pid) / "stat").write_text(pid_stat(pid, "python", ppid, ticks, 0, reaped))

    def gone(self, pid: int) -> None:
        (self.root / str(pid) / "stat").unlink()
        (self.root / str(pid)).rmdir()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_machine_ticks_counts_everything_but_idle_and_iowait():
    text = stat_line(100, 50, 999, nice=5, iowait=77, irq=3, softirq=2, steal=10, guest=40)
    assert machine_ticks(text) == 100 + 5 + 50 + 3 + 2 + 10  # guest is inside user already


def test_machine_ticks_refuses_a_file_that_is_not_proc_stat():
    with pytest.raises(ValueError, match="not /proc/stat"):
        machine_ticks("intr 1 2 3\n")


def test_process_ticks_adds_reaped_children_and_survives_parentheses_in_the_name():
    text = pid_stat(42, "a (weird) name) x", 1, utime=7, stime=3, cutime=20, cstime=5)
    assert process_ticks(text) == 7 + 3 + 20 + 5


def test_process_ticks_reads_a_real_stat_line():
    text = ("14527 (cat) R 14461 14461 28307 0 -1 4194304 102 0 0 0 11 4 2 1 20 0 1 0 184476 "
            "3133440 417 18446744073709551615 93991757045760 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
    assert process_ticks(text) == 11 + 4 + 2 + 1


def test_other_work_is_the_machine_minus_the_run(tmp_path):
    proc, clock = FakeProc(tmp_path / "proc"), FakeClock()
    proc.machine(busy=1000)
    proc.process(10, ticks=50)
    proc.process(11, ticks=0)
    sampler = BusySampler(own=lambda: [10, 11], proc=proc.root, clock=clock).start()
    clock.now += 2.0  # two seconds: 2 * TICK ticks make one core
    proc.machine(busy=1000 + 3 * 2 * TICK // 2)  # 1.5 cores busy in all
    proc.process(10, ticks=50 + TICK // 2)  # 0.25 core
    proc.process(11, ticks=TICK // 2)  # 0.25 core
    busy = sampler.stop()
    assert busy.seconds == pytest.approx(2.0)
    assert busy.machine == pytest.approx(1.5) and busy.own == pytest.approx(0.5)
    assert busy.other == pytest.approx(1.0)
    assert busy.as_meta()["machine_busy"] == pytest.approx(1.0)


def test_a_worker_that_exits_and_is_reaped_is_still_the_run_s_own(tmp_path):
    """Its time moves into its parent's cutime: the account neither loses nor doubles it."""
    proc, clock = FakeProc(tmp_path / "proc"), FakeClock()
    proc.machine(busy=0)
    proc.process(10, ticks=100)  # this process
    proc.process(11, ticks=30, ppid=10)  # a worker that has used 30 ticks so far
    sampler = BusySampler(own=lambda: [p for p in (10, 11, 12) if (proc.root / str(p)).exists()],
                          proc=proc.root, clock=clock).start()
    clock.now += 1.0
    proc.gone(11)  # the worker used 20 more ticks, exited, was reaped: 50 into cutime
    proc.process(10, ticks=100 + 10, reaped=50)  # the parent itself used 10 more
    proc.process(12, ticks=5, ppid=10)  # its replacement, born in between
    proc.machine(busy=20 + 10 + 5)
    busy = sampler.stop()
    assert busy.own * TICK == pytest.approx(20 + 10 + 5)
    assert busy.other == pytest.approx(0.0)


def test_other_work_is_never_negative(tmp_path):
    """Tick accounting can put a few ticks more on a process than /proc/stat shows."""
    proc, clock = FakeProc(tmp_path / "proc"), FakeClock()
    proc.machine(busy=0)
    proc.process(10, ticks=0)
    sampler = BusySampler(own=lambda: [10], proc=proc.root, clock=clock).start()
    clock.now += 1.0
    proc.machine(busy=3)
    proc.process(10, ticks=5)
    assert sampler.stop().other == 0.0


def test_by_default_the_run_is_this_process_and_its_descendants(tmp_path):
    proc, clock = FakeProc(tmp_path / "proc"), FakeClock()
    me = os.getpid()
    proc.machine(busy=0)
    proc.process(me, ticks=0, ppid=1)
    proc.process(900001, ticks=0, ppid=me)  # a worker
    proc.process(900002, ticks=0, ppid=900001)  # its child
    proc.process(900003, ticks=0, ppid=1)  # someone else's process
    sampler = BusySampler(proc=proc.root, clock=clock).start()
    clock.now += 1.0
    for pid, ppid in ((me, 1), (900001, me), (900002, 900001), (900003, 1)):
        proc.process(pid, ticks=TICK // 10, ppid=ppid)
    proc.machine(busy=4 * TICK // 10)
    busy = sampler.stop()
    assert busy.own == pytest.approx(0.3) and busy.other == pytest.approx(0.1)


def test_without_proc_stat_it_says_why(tmp_path):
    with pytest.raises(BusyUnavailable, match="Linux only"):
        BusySampler(own=lambda: [], proc=tmp_path).start()


def test_stop_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="before start"):
        BusySampler(own=lambda: []).stop()


def test_the_sentence_names_other_work_and_the_run():
    text = str(Busy(seconds=3.0, machine=1.9, own=0.3, cpus=2))
    assert text.startswith("other work used 1.60 of 2 cores for 3.0 s")


# -- live ----------------------------------------------------------------------------------------

def _spin(cpu_seconds: float) -> None:
    """Burn ``cpu_seconds`` of CPU however long a busy machine makes that take (at most 60 s)."""
    give_up = time.monotonic() + 60
    while time.process_time() < cpu_seconds and time.monotonic() < give_up:
        pass


def _cpu_seconds(pid: int) -> float:
    return process_ticks(Path(f"/proc/{pid}/stat").read_text()) / TICK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.system
def test_live_a_stranger_s_spin_is_other_work_and_the_run_s_own_is_not():
    """Two spinners for the same second: one the run's own (our child), one a stranger.

    The stranger is our child too (a test can only start children), so the run's own
    processes are named explicitly: this process and the own spinner.  Whatever else the
    shared machine does, the stranger's CPU must appear in 'other' and the own spinner's
    in 'own'; each is compared with that spinner's CPU time as the kernel counted it, with
    a margin of 3 ticks per process for the tick accounting.
    """
    context = multiprocessing.get_context("fork")
    own_spinner = context.Process(target=_spin, args=(1.0,))
    stranger = context.Process(target=_spin, args=(1.0,))
    own_spinner.start()
    stranger.start()
    try:
        before = {p.pid: _cpu_seconds(p.pid) for p in (own_spinner, stranger)}
        sampler = BusySampler(own=lambda: [os.getpid(), own_spinner.pid]).start()
        # Until each spinner has had a tenth of a second of CPU: on a crowded machine a fixed
        # sleep could end before either ran at all.
        ran = lambda: all(_cpu_seconds(p.pid) - before[p.pid] >= 0.1  # noqa: E731
                          for p in (own_spinner, stranger))
        assert wait_until(ran, timeout=30) is not None, "the spinners never got 0.1 s of CPU"
        used = {p.pid: _cpu_seconds(p.pid) - before[p.pid] for p in (own_spinner, stranger)}
        busy = sampler.stop()
    finally:
        for process in (own_spinner, stranger):
            process.join(5)
    margin = 3 / TICK / busy.seconds
    assert used[stranger.pid] > 0.05 and used[own_spinner.pid] > 0.05, used  # both ran at all
    assert busy.own >= used[own_spinner.pid] / busy.seconds - margin
    assert busy.other >= used[stranger.pid] / busy.seconds - 2 * margin
    assert busy.machine <= busy.cpus + margin


def test_other_work_is_never_more_than_the_machine_has():
    """Over a short run, two readings a tick apart can count more busy time than cores."""
    from acceptlab.linux.busy import Busy

    assert Busy(seconds=0.1, machine=2.3, own=0.1, cpus=2).other == 2.0
    assert Busy(seconds=1.0, machine=1.5, own=0.25, cpus=2).other == 1.25
