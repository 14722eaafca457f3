"""observe: attribution from outside, checked against the kit's own event log and real servers.

The kit's own process pool logs, per connection, which worker accepted it (by the client's
port): observe, which never reads that log, must name the same worker for every connection
it attributes, and attribute at least 99 % of a sequential and of a closed-loop load on
loopback (the issue's bar).  Against each real server the attribution must agree with the
pid the server names in its reply.
"""

from __future__ import annotations

import os
import sys

import pytest

from acceptlab import analysis
from acceptlab.real import servers as real
from acceptlab.lab.experiment import Run
from acceptlab.real.observe import observe, reply_pid

pytestmark = [pytest.mark.serial,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")]

LOADS = {"sequential": {"gap": 0.001}, "closed-loop": {"concurrency": 16}}


def test_reply_pid_reads_the_kit_and_the_real_servers_replies():
    assert reply_pid(b"HTTP/1.1 200 OK\r\n\r\npid 4242\n") == 4242
    assert reply_pid(b"served by worker 2 (pid 77, thread 78)\n") == 77
    assert reply_pid(b"HTTP/1.0 200 OK\r\n\r\nhello\n") is None


@pytest.mark.system
@pytest.mark.parametrize("protocol", ["zen", "http"])
@pytest.mark.parametrize("load", list(LOADS))
def test_attribution_matches_the_pools_own_log(start_pool, load, protocol, tmp_path):
    pool = start_pool(workers=4, kind="process", strategy="blocking", protocol=protocol)
    run = observe(os.getpid(), port=pool.address[1], protocol=protocol, connections=300,
                  baseline=False, **LOADS[load])
    truth = pool.events()
    truth = truth[truth["outcome"] == "accepted"].set_index("peer_port")["pid"]
    assert run.meta["worker_pids"] == sorted(pool.pids)
    covered = run.meta["coverage"]
    assert covered["ok"] == 300
    assert covered["attributed"] / covered["connections"] >= 0.99, covered
    seen = run.events[run.events["outcome"] == "accepted"]
    assert len(seen) == covered["attributed"]
    for port, pid in zip(seen["peer_port"], seen["pid"]):
        assert truth[port] == pid, f"client port {port}: observe says {pid}, the pool {truth[port]}"
    if protocol == "http":  # the kit's http reply names the pid too
        assert covered["named"] == covered["ok"] and covered["agree"] == covered["attributed"]
    # zen's server answers until the client closes: looked at after the reply; the kit's
    # http server (HTTP/1.0) closes once it has answered: looked at before the request
    assert run.meta["attribution"] == {"zen": "after-reply", "http": "before-request"}[protocol]
    assert analysis.reconcile(run.client, run.events).ok
    # The run is an ordinary Run: saved, loaded, analysed as any other.
    again = Run.load(run.save(tmp_path / "run"))
    table = analysis.per_worker(again.events, again.workers)
    assert int(table["accepts"].sum()) == covered["attributed"]
    assert (table["wakeups"] > 0).all()  # every worker slept and was woken at least once
    assert again.meta["inspection"]["strategy"] == "blocking"


@pytest.mark.system
@pytest.mark.parametrize("attribution", ["before-request", "after-reply"])
def test_either_attribution_can_be_asked_for_and_agrees_with_the_log(start_pool, attribution):
    pool = start_pool(workers=3, kind="process", strategy="blocking", protocol="zen")
    run = observe(os.getpid(), port=pool.address[1], protocol="zen", connections=100,
                  gap=0.001, baseline=False, attribution=attribution)
    truth = pool.events()
    truth = truth[truth["outcome"] == "accepted"].set_index("peer_port")["pid"]
    seen = run.events[run.events["outcome"] == "accepted"]
    assert run.meta["attribution"] == attribution and len(seen) >= 99
    assert all(truth[port] == pid for port, pid in zip(seen["peer_port"], seen["pid"]))


@pytest.mark.system
def test_after_reply_attributes_nothing_where_the_server_closes_and_auto_knows_it(start_pool):
    """The kit's http server closes after answering: a forced after-reply look finds nothing
    held, so the run stops after its first few connections and says why (issue 24), which is
    why auto tries one connection first."""
    from acceptlab.real.attribution import CannotAttribute

    pool = start_pool(workers=2, kind="process", strategy="blocking", protocol="http")
    with pytest.raises(CannotAttribute, match="closes each connection"):
        observe(os.getpid(), port=pool.address[1], connections=20, baseline=False,
                attribution="after-reply")
    chosen = observe(os.getpid(), port=pool.address[1], connections=20, baseline=False)
    assert chosen.meta["attribution"] == "before-request"
    assert chosen.meta["coverage"]["attributed"] == 20
    with pytest.raises(ValueError, match="attribution is one of"):
        observe(os.getpid(), port=pool.address[1], connections=1, attribution="later")


@pytest.mark.system
def test_the_wrong_port_and_a_missing_process_are_refused(start_pool):
    pool = start_pool(workers=2, kind="process")
    with pytest.raises(ValueError, match="does not listen on port"):
        observe(os.getpid(), port=1, connections=1)
    with pytest.raises(ProcessLookupError):
        observe(2 ** 22 + 12345, port=pool.address[1], connections=1)


SERVERS = list(real.SERVERS)


@pytest.mark.system
@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("load", list(LOADS))
def test_observe_a_real_server(name, load):
    reason = real.missing_reason(name)
    if reason:
        pytest.skip(f"server missing here, test not run: {reason}")
    with real.real_server(name, workers=4) as server:
        run = observe(server.pid, connections=200, baseline=False, server=server.meta(),
                      **LOADS[load])
    covered = run.meta["coverage"]
    assert covered["ok"] == 200, run.client["error"].value_counts()
    assert covered["attributed"] / covered["connections"] >= 0.99, covered
    assert covered["named"] == 200 and covered["agree"] == covered["attributed"], covered
    assert analysis.reconcile(run.client, run.events).ok
    assert run.meta["server"]["server"] == name
    # gunicorn's sync worker closes after every reply (HTTP/1.0 style); uWSGI's --http-socket
    # too, and its listener defers accepts until data comes (TCP_DEFER_ACCEPT), so the first
    # byte goes first; the others keep an HTTP/1.1 connection open, so the cheaper look after
    # the reply is chosen for them
    expected = {"gunicorn-sync": "before-request", "uwsgi": "first-byte",
                "uwsgi-thunder-lock": "first-byte"}.get(name, "after-reply")
    assert run.meta["attribution"] == expected


@pytest.mark.system
def test_observe_from_the_command_line(start_pool, capsys, tmp_path):
    import json

    from acceptlab.cli import main

    pool = start_pool(workers=2, kind="process", strategy="blocking", protocol="http")
    code = main(["observe", str(os.getpid()), "--port", str(pool.address[1]), "-c", "40",
                 "--gap", "0.001", "--no-baseline", "--json", "--out", str(tmp_path / "o")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["strategy"] == "blocking" and summary["connections"] == 40
    assert summary["attributed"] >= 40 * 0.99 and sum(summary["per_worker"]) == summary["attributed"]
    assert summary["worker_pids"] == sorted(pool.pids)
    assert Run.load(tmp_path / "o").meta["coverage"]["attributed"] == summary["attributed"]
    assert main(["observe", str(os.getpid()), "--processes", "2"]) == 2  # one line, no traceback
    assert "one client process" in capsys.readouterr().err


@pytest.mark.system
def test_the_wrong_protocol_is_named_as_fire_names_it(start_pool):
    from acceptlab.client.load import ProtocolMismatch

    pool = start_pool(workers=2, kind="process", protocol="zen")
    with pytest.raises(ProtocolMismatch, match="zen"):
        observe(os.getpid(), port=pool.address[1], protocol="http", connections=3,
                baseline=False)


@pytest.mark.system
def test_observe_over_ipv6_loopback(start_pool):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine: ::1 cannot be tested")
    pool = start_pool(workers=2, kind="process", protocol="http", host="::1")
    run = observe(os.getpid(), host="::1", port=pool.address[1], connections=60, gap=0.001,
                  baseline=False)
    assert run.meta["coverage"]["attributed"] >= 60 * 0.99
    assert run.meta["coverage"]["disagree"] == 0
