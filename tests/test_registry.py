"""acceptlab.registry: one record per strategy, and everything that reads it agrees with it."""

from __future__ import annotations

import inspect
import re
import socket
import sys
from pathlib import Path

import pytest

from acceptlab import analysis
from acceptlab.linux import support
from acceptlab.registry import STRATEGY_RECORDS, RecentWaiters, expected_share
from acceptlab.server.sharing import Shared
from acceptlab.server.strategies import STRATEGIES, Blocking, Waiter, make_waiter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import strategy_tables  # noqa: E402


def test_every_record_has_its_class_and_every_class_its_record():
    assert list(STRATEGIES) == list(STRATEGY_RECORDS)
    for name, record in STRATEGY_RECORDS.items():
        assert STRATEGIES[name].__name__ == record.waiter, name


def test_each_class_takes_only_its_own_options():
    """The keyword-only parameters of a waiter are its record's options or what the pool shares."""
    shared = {"epoll", "lock_path", "in_flight", "group", "sockets", "cpu"}
    for name, cls in STRATEGIES.items():
        keywords = {p.name for p in inspect.signature(cls.__init__).parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY}
        own = set(STRATEGY_RECORDS[name].options)
        assert own <= keywords and keywords - own <= shared, (name, keywords, own)


@pytest.mark.system
def test_a_waiter_is_what_the_worker_loop_expects():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        waiter = make_waiter("blocking", listener, Shared(), slot=0)
        assert isinstance(waiter, Waiter) and isinstance(waiter, Blocking)
        waiter.close()


def test_every_source_and_probe_a_record_names_exists():
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', (ROOT / "docs" / "sources.md").read_text()))
    for name, record in STRATEGY_RECORDS.items():
        assert record.source in anchors, (name, record.source)
        assert record.requires.probe in (None, *support._CAPABILITIES), name
        assert set(record.kinds) <= set(support.KINDS), name


def test_shared_epoll_predicts_recent_waiters_not_one_worker():
    assert isinstance(STRATEGY_RECORDS["shared-epoll"].prediction, RecentWaiters)
    assert analysis.ONE_WORKER == ("epoll-exclusive",)
    assert "shared-epoll" in analysis.RECENT_WAITERS


def test_reorder_predicts_blocks_of_its_own_every():
    assert expected_share("reorder", 4, 64).note.startswith("blocks of 16 in turn")
    assert expected_share("reorder", 4, 64, {"every": 8}).note.startswith("blocks of 8 in turn")


@pytest.mark.parametrize("document", list(strategy_tables.TABLES))
def test_the_docs_tables_are_the_registrys(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    assert "<!-- strategy-table:" in text, f"{document} lost its table's markers"
    assert strategy_tables.rendered(document, text) == text, (
        f"{document}'s strategy table differs from acceptlab.registry: run "
        f"PYTHONPATH=src python tools/strategy_tables.py")


def test_the_command_line_offers_every_strategy():
    from acceptlab.cli import build_parser

    for command in ("run", "serve"):
        args = build_parser().parse_args([command, "--strategy", "reuseport-incoming-cpu"])
        assert args.strategy == "reuseport-incoming-cpu"
