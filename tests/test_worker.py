"""The worker loop's small objects: the Recorder's rows, the Control's switches, the Work's truth.

The Recorder's ``nvcsw`` column counts the voluntary context switches of the
wait alone.  These tests script a sequence of waits, with switches made during
the waits and between a return and the next wait (a conversation, or the
loop's own lines after a return that brought nothing), and check that only the
wait's switches are counted.  (Before 2026-12-07 a return without a connection
lent its reading to the next wait, and the switches in between were counted.)
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pandas as pd
import pytest

from acceptlab.server import worker
from acceptlab.server.eventlog import EventWriter, log_path, read_events
from acceptlab.server.strategies import Wakeup
from acceptlab.server.work import parse_work
from acceptlab.server.worker import Control, Recorder, Switch


class World:
    """A fake clock and a fake per-thread switch counter, moved by the script."""

    def __init__(self) -> None:
        self.clock, self.switches, self.readings = 1_000, 0, 0

    def now(self) -> int:
        self.clock += 7
        return self.clock

    def usage(self) -> SimpleNamespace:
        self.readings += 1
        return SimpleNamespace(ru_nvcsw=self.switches)


# (outcome, switches during the wait, switches after it returned, before the next wait begins:
# the conversation's own sleeps, or a thread waiting for the GIL back after an empty return)
SCRIPT = [
    ("accepted", 1, 0), ("eagain", 3, 1), ("eagain", 0, 0), ("accepted", 2, 4),
    ("timeout", 1, 2), ("error", 2, 1), ("accepted", 0, 1), ("accepted", 0, 0),
    ("eagain", 5, 3), ("accepted", 1, 2), ("error", 0, 0), ("accepted", 3, 0),
]


def play(recorder, world: World) -> None:
    """The loop's calls, in the loop's order, with the script's switches in between."""
    for port, (outcome, in_wait, after_wait) in enumerate(SCRIPT, start=40_000):
        recorder.waiting()
        world.switches += in_wait
        if outcome == "error":
            recorder.failed()
        else:
            t_wake = world.now()
            if outcome == "accepted":
                wake = Wakeup(outcome, t_wake, world.now(), SimpleNamespace(), port)
            else:
                wake = Wakeup(outcome, t_wake)
            recorder.woke(wake)
        world.switches += after_wait  # not the wait's
        if outcome == "accepted":
            recorder.served()
    recorder.waiting()  # the wait the worker is in when the log is read


def test_the_recorder_counts_the_switches_of_the_wait_alone(tmp_path, monkeypatch):
    world = World()
    monkeypatch.setattr(worker, "now", world.now)
    recorder = Recorder(EventWriter(log_path(tmp_path, 0, 0), 0, 0))
    recorder._usage = world.usage
    with recorder:
        play(recorder, world)
    events = read_events(tmp_path)
    assert list(events["outcome"]) == [outcome for outcome, _, _ in SCRIPT] + ["waiting"]
    expected = [in_wait for _, in_wait, _ in SCRIPT] + [None]
    assert [None if pd.isna(v) else int(v) for v in events["nvcsw"]] == expected
    # one reading when each wait begins and one when it returns (the last has not returned)
    assert world.readings == 2 * len(SCRIPT) + 1


def test_without_a_per_thread_count_every_wait_says_none(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "voluntary_switches", lambda: None)
    world = World()
    monkeypatch.setattr(worker, "now", world.now)
    with Recorder(EventWriter(log_path(tmp_path, 0, 0), 0, 0)) as recorder:
        play(recorder, world)
    events = read_events(tmp_path)
    assert events["nvcsw"].isna().all() and len(events) == len(SCRIPT) + 1
    assert world.readings == 0


def test_a_switch_reads_like_an_event_and_the_control_obeys_it():
    control = Control()
    assert control.may_wait() and control.waiting
    control.retiring.set()
    assert control.retiring.is_set() and control.leaving() and not control.may_wait()
    stopped = Control()
    stopped.stopping.set()
    assert not stopped.take(SimpleNamespace())  # a stop that came meanwhile: no conversation
    crashing = Control(crash=Switch())
    crashing.crash.set()
    with pytest.raises(worker.InjectedCrash):
        crashing.take(SimpleNamespace())
    assert crashing.sockets == []  # nothing to release: release() is not called after a crash


def test_no_work_is_false_so_the_worker_skips_the_call():
    assert not parse_work("none") and parse_work("sleep:1") and parse_work("spin:0.5")
