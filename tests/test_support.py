"""acceptlab.linux.support: one set of probes, so the doctor and the pool cannot disagree."""

from __future__ import annotations

import select
import socket
import sys

import pytest

from acceptlab import support
from acceptlab.server.pool import WorkerPool
from acceptlab.server.strategies import STRATEGIES
from acceptlab.linux.support import (KINDS, Feature, Unavailable, check_strategy, feature_report,
                               features, format_report, strategy_support)

FEATURE_NAMES = (
    "python", "platform", "kernel", "cpu_count", "start_method", "start_methods",
    "epoll", "EPOLLEXCLUSIVE", "SO_REUSEPORT", "SO_ATTACH_REUSEPORT_CBPF", "SO_INCOMING_CPU",
    "TCP_INFO", "RUSAGE_THREAD", "/proc/net/tcp",
)


@pytest.mark.system
def test_feature_report_names_every_feature_in_aligned_lines() -> None:
    report = feature_report()
    assert [f.name for f in report] == list(FEATURE_NAMES)
    assert all(isinstance(f, Feature) and f.detail and "\n" not in f.detail for f in report)
    lines = format_report().split("\n\nstrategies:\n")[0].splitlines()
    assert len(lines) == len(FEATURE_NAMES)
    assert all(line[0] in "✓✗" for line in lines)
    assert len({line.index(f.detail) for line, f in zip(lines, report)}) == 1  # aligned


@pytest.mark.system
def test_features_gives_plain_values() -> None:
    values = features()
    assert list(values) == list(FEATURE_NAMES)
    assert values["platform"] == sys.platform
    assert isinstance(values["start_methods"], list)
    assert all(isinstance(values[n], bool) for n in FEATURE_NAMES[6:])


@pytest.mark.system
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux offers these")
def test_feature_report_on_linux_finds_the_measurements() -> None:
    available = {f.name: f.available for f in feature_report()}
    assert available["TCP_INFO"] and available["RUSAGE_THREAD"] and available["epoll"]


def doctor_verdicts() -> dict[tuple[str, str], bool]:
    """(strategy, kind) -> runs?, read back from the doctor's printed table."""
    table = format_report().split("strategies:\n")[1].splitlines()
    verdicts = {}
    for line in table:
        name, rest = line.split(maxsplit=1)
        for kind in KINDS:
            verdicts[(name, kind)] = f"{kind} ✓" in rest
    return verdicts


@pytest.mark.system
def test_the_doctor_and_check_strategy_agree_on_every_strategy_and_kind() -> None:
    printed = doctor_verdicts()
    assert set(printed) == {(name, kind) for name in STRATEGIES for kind in KINDS}
    for (name, kind), runs in printed.items():
        try:
            check_strategy(name, kind)
        except Unavailable as why:
            assert not runs, f"doctor says {name}/{kind} runs; check_strategy: {why}"
        else:
            assert runs, f"doctor says {name}/{kind} does not run; check_strategy lets it"


@pytest.mark.system
def test_an_old_kernel_makes_both_refuse_epoll_exclusive(monkeypatch) -> None:
    """The disagreement of issue 12.4: the constant exists but the kernel is too old to honour it."""
    if not hasattr(select, "EPOLLEXCLUSIVE"):
        pytest.skip("this Python has no select.EPOLLEXCLUSIVE, so there is nothing to disagree on")
    monkeypatch.setattr(support.platform, "release", lambda: "4.4.0-old")
    support._check_epoll_exclusive.cache_clear()
    try:
        assert not {f.name: f for f in feature_report()}["EPOLLEXCLUSIVE"].available
        assert strategy_support()["epoll-exclusive"]["process"] is not None
        with pytest.raises(Unavailable, match="epoll-exclusive: needs Linux >= 4.5"):
            WorkerPool(strategy="epoll-exclusive")
        assert not doctor_verdicts()[("epoll-exclusive", "process")]
    finally:
        support._check_epoll_exclusive.cache_clear()


@pytest.mark.system
def test_off_linux_the_measurements_and_reuseport_are_refused_with_a_reason(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")  # pretend; restored after the test
    report = {f.name: f for f in feature_report()}
    assert not report["TCP_INFO"].available and not report["/proc/net/tcp"].available
    if hasattr(socket, "SO_REUSEPORT"):
        assert not report["SO_REUSEPORT"].available
        assert "does not balance" in report["SO_REUSEPORT"].detail
        with pytest.raises(Unavailable, match="reuseport: exists on darwin but does not balance"):
            check_strategy("reuseport", "process")


@pytest.mark.system
def test_without_rusage_thread_the_doctor_says_wakeups_cannot_be_counted(monkeypatch) -> None:
    from acceptlab import kernel

    monkeypatch.delattr(kernel.resource, "RUSAGE_THREAD")  # as on macOS
    assert not {f.name: f for f in feature_report()}["RUSAGE_THREAD"].available


def test_unknown_names_are_refused_naming_the_choices() -> None:
    with pytest.raises(Unavailable, match="unknown strategy 'spinlock'; choose one of blocking"):
        check_strategy("spinlock", "process")
    with pytest.raises(Unavailable, match="unknown kind 'fibre'"):
        check_strategy("blocking", "fibre")


@pytest.mark.system
def test_on_a_platform_that_is_not_posix_the_import_says_so_in_one_line() -> None:
    import subprocess

    code = "import os; os.name = 'nt'; import acceptlab"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: acceptlab runs on POSIX systems"), last
