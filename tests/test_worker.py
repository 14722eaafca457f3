"""The worker loop's small objects: the Recorder's rows, the Control's switches, the Work's truth.

The Recorder reads the context-switch counter once per return where the
previous return's reading can start the next wait (issue 21).  These tests
script a sequence of waits, with switches made during the waits and during the
conversations between them, and check that the rows are those of the Recorder
as it was before (two readings per wait, kept here as the reference) and what
the column means: the switches of the wait alone.
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


class RecorderBefore:
    """The Recorder before issue 21 (two counter readings per wait), as the reference."""

    def __init__(self, writer: EventWriter, world: World) -> None:
        self.writer, self.world, self.tid, self.row, self.switches = writer, world, \
            threading.get_native_id(), 0, 0

    def waiting(self) -> None:
        self.row = self.writer.begin_wait(self.tid, self.world.now())
        self.switches = self.world.usage().ru_nvcsw

    def woke(self, wake: Wakeup) -> None:
        after = self.world.usage().ru_nvcsw
        self.writer.woke(self.row, wake.t_wake_ns, wake.outcome, wake.t_accept_ns,
                         wake.peer_port, after - self.switches)

    def failed(self) -> None:
        after = self.world.usage().ru_nvcsw
        self.writer.woke(self.row, self.world.now(), "error", nvcsw=after - self.switches)

    def served(self) -> None:
        self.writer.done(self.row, self.world.now())


# (outcome, switches during the wait, switches during the conversation that follows)
SCRIPT = [
    ("accepted", 1, 0), ("eagain", 3, 0), ("eagain", 0, 0), ("accepted", 2, 4),
    ("timeout", 1, 0), ("error", 2, 0), ("accepted", 0, 1), ("accepted", 0, 0),
    ("eagain", 5, 0), ("accepted", 1, 2), ("error", 0, 0), ("accepted", 3, 0),
]


def play(recorder, world: World) -> None:
    """The loop's calls, in the loop's order, with the script's switches in between."""
    for port, (outcome, in_wait, in_talk) in enumerate(SCRIPT, start=40_000):
        recorder.waiting()
        world.switches += in_wait
        if outcome == "error":
            recorder.failed()
            continue
        t_wake = world.now()
        if outcome == "accepted":
            wake = Wakeup(outcome, t_wake, world.now(), SimpleNamespace(), port)
        else:
            wake = Wakeup(outcome, t_wake)
        recorder.woke(wake)
        if outcome == "accepted":
            world.switches += in_talk  # the conversation's own sleeps: not the wait's
            recorder.served()
    recorder.waiting()  # the wait the worker is in when the log is read


def test_the_recorder_writes_the_rows_it_wrote_before_with_fewer_readings(tmp_path, monkeypatch):
    before_world, after_world = World(), World()
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    with EventWriter(log_path(tmp_path / "before", 0, 0), 0, 0) as writer:
        play(RecorderBefore(writer, before_world), before_world)
    monkeypatch.setattr(worker, "now", after_world.now)
    recorder = Recorder(EventWriter(log_path(tmp_path / "after", 0, 0), 0, 0))
    recorder._usage = after_world.usage
    with recorder:
        play(recorder, after_world)
    before, after = read_events(tmp_path / "before"), read_events(tmp_path / "after")
    assert before.equals(after)
    # and the column means what data/README.md says: the switches of the wait alone
    expected = [in_wait for _, in_wait, _ in SCRIPT] + [None]
    assert [None if pd.isna(v) else int(v) for v in after["nvcsw"]] == expected
    # one reading per return, plus one more after each conversation (and the first wait)
    accepted = sum(outcome == "accepted" for outcome, _, _ in SCRIPT)
    assert before_world.readings == 2 * len(SCRIPT) + 1
    assert after_world.readings == len(SCRIPT) + accepted + 1


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
