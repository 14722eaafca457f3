"""The event log: what it records, and that a SIGKILL does not take records with it."""

import multiprocessing
import os
import signal
import time

import pytest

from acceptlab.server import eventlog
from acceptlab.server.eventlog import EventWriter, log_path, read_events


def test_records_round_trip_with_missing_values_as_na(tmp_path):
    with EventWriter(log_path(tmp_path, 2, 1), 2, 1) as log:
        row = log.begin_wait(tid=77, t_wait_ns=10)
        log.woke(row, t_wake_ns=20, outcome="accepted", t_accept_ns=21, peer_port=5555, nvcsw=1)
        log.done(row, 30)
        row = log.begin_wait(tid=77, t_wait_ns=31)
        log.woke(row, t_wake_ns=40, outcome="eagain", nvcsw=2)
        log.begin_wait(tid=77, t_wait_ns=41)  # still waiting when the log is read
    events = read_events(tmp_path, run="r", kind="thread", strategy="poll")
    assert list(events["outcome"]) == ["accepted", "eagain", "waiting"]
    first, second = events.iloc[0], events.iloc[1]
    assert (first.worker, first.generation, first.pid, first.tid, first.seq) == (2, 1, os.getpid(), 77, 0)
    assert (first.t_wait_ns, first.t_wake_ns, first.t_accept_ns, first.t_done_ns) == (10, 20, 21, 30)
    assert first.peer_port == 5555 and first.run == "r" and first.strategy == "poll"
    assert second.seq == 1
    assert second[["t_accept_ns", "t_done_ns", "peer_port"]].isna().all()
    assert events.iloc[2][["t_wake_ns", "nvcsw"]].isna().all() and events.iloc[2].t_wait_ns == 41


def test_the_log_grows_past_its_first_size(tmp_path):
    with EventWriter(tmp_path / "w.events", 0, 0) as log:
        for i in range(10_000):
            log.woke(log.begin_wait(1, i), i + 1, "accepted", i + 1, i % 60000, 1)
    events = read_events(tmp_path)
    assert len(events) == 10_000
    assert events["seq"].tolist() == list(range(10_000))


def test_empty_directory_gives_an_empty_frame_with_the_columns(tmp_path):
    events = read_events(tmp_path)
    assert len(events) == 0 and "t_wake_ns" in events.columns


def _write_then_hang(directory, ready):
    log = EventWriter(log_path(directory, 0, 0), 0, 0)
    for i in range(1000):
        row = log.begin_wait(1, i)
        log.woke(row, i, "accepted", i, 1000 + i, 1)
        log.done(row, i + 1)
    log.woke(log.begin_wait(1, 5000), 5000, "accepted", 5000, 9999, 1)  # conversation never ends
    log.begin_wait(1, 6000)  # killed while waiting
    ready.set()
    time.sleep(60)


@pytest.mark.system
def test_records_survive_sigkill_of_the_writer(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_write_then_hang, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(10)
    os.kill(child.pid, signal.SIGKILL)  # no chance to flush or close anything
    child.join(5)
    events = read_events(tmp_path)
    assert len(events) == 1002
    assert (events["outcome"] == "accepted").sum() == 1001
    assert events["t_done_ns"].isna().sum() == 2  # killed mid-conversation, and while waiting
    assert events.iloc[-1].outcome == "waiting"


def test_uncommitted_record_is_not_read(tmp_path):
    path = tmp_path / "w.events"
    with EventWriter(path, 0, 0) as log:
        log.woke(log.begin_wait(1, 1), 2, "accepted", 2, 1, 1)
    # Simulate a writer killed after the body but before the commit: body bytes, seq 0.
    size, seq_at = eventlog._RECORD.size, eventlog._SEQ_OFFSET
    with open(path, "r+b") as f:
        f.seek(size)  # the second record
        f.write(b"\x01" * size)
        f.seek(size + seq_at)
        f.write(b"\x00" * 8)
    assert len(read_events(tmp_path)) == 1
