"""Did every connection arrive exactly once: client rows matched to the worker events."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .columns import as_bool, ns

__all__ = ["join_client_events", "reconcile", "Reconciliation"]


def _match(clients: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Pairs (client row, accepted event) with the same port and the accept inside the client's span.

    A port identifies a connection only for as long as it is open: a long run
    reuses ports.  So a pair counts only if the event's ``t_accept_ns`` lies
    within ``[t_start_ns, t_done_ns]`` of the client row (a missing
    ``t_done_ns`` leaves the span open-ended).
    """
    left = clients.rename(columns={"t_done_ns": "t_done_ns_client", "worker": "worker_client"})
    left = left.assign(client_index=clients.index,
                       local_port=pd.to_numeric(left["local_port"]).astype("Int64"))
    right = events.rename(columns={"t_done_ns": "t_done_ns_event", "worker": "worker_event"})
    right = right.assign(event_index=events.index,
                         peer_port=pd.to_numeric(right["peer_port"]).astype("Int64"))
    # pandas merges a missing key with a missing key; a missing port must match nothing.
    left = left[left["local_port"].notna()]
    right = right[right["peer_port"].notna()]
    pairs = left.merge(right, left_on="local_port", right_on="peer_port")
    accept = ns(pairs["t_accept_ns"], missing=-1)
    inside = (ns(pairs["t_start_ns"]) <= accept) & (accept <= ns(pairs["t_done_ns_client"]))
    return pairs[inside].reset_index(drop=True)


def join_client_events(client: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Each successful client connection side by side with the worker event that accepted it.

    A client row and an accepted event belong together when the client's
    ``local_port`` equals the event's ``peer_port`` and the event's
    ``t_accept_ns`` lies within the client's ``[t_start_ns, t_done_ns]``:
    ports are reused in a long run, and time tells the reuses apart.  Both
    sides use one clock (``time.monotonicns()``), even across processes.

    One row per matching pair, ordered by accept time, with every client
    column and every event column.  Columns that both tables have get a
    suffix: ``t_done_ns_client`` / ``t_done_ns_event`` and ``worker_client``
    (the worker the reply named, ``http`` only) / ``worker_event`` (the
    worker that accepted).  ``client_index`` and ``event_index`` are the
    rows' index labels in the tables passed in.  Failed client rows and
    events that match nothing are left out; :func:`reconcile` reports them.

    Args:
        client: the run's client table.
        events: the run's events table.
    """
    ok_clients = client[as_bool(client["ok"])]
    accepted_events = events[events["outcome"] == "accepted"]
    pairs = _match(ok_clients, accepted_events)
    return pairs.sort_values(["t_accept_ns", "client_index"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Reconciliation:
    """Do the client's connections and the workers' accepts tell the same story?

    The counts:

    * ``accepted_events``: events with outcome ``accepted``;
    * ``client_ok``: client rows with ``ok`` true;
    * ``joined``: matching (client, event) pairs (rows of :func:`join_client_events`);
    * ``client_ok_unmatched``: ok client rows no event matches (a lost event);
    * ``events_unmatched``: accepted events that match no client row at all;
    * ``events_of_failed_clients``: accepted events whose client row failed
      (the worker accepted, the client gave up or was cut off): expected now
      and then under overload, so reported apart and not counted against ``ok``;
    * ``duplicate_matches``: ok client rows that match more than one event,
      plus events that match more than one ok client row (a row logged twice);
    * ``ok``: every ok client row matches exactly one event and every
      accepted event matches exactly one ok client row (apart from
      ``events_of_failed_clients``).

    ``problems`` lists the offending rows, one per problem, with a
    ``problem`` column saying what is wrong; it is empty when ``ok``.
    """

    accepted_events: int
    client_ok: int
    joined: int
    client_ok_unmatched: int
    events_unmatched: int
    duplicate_matches: int
    ok: bool
    events_of_failed_clients: int = 0
    problems: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)


def reconcile(client: pd.DataFrame, events: pd.DataFrame) -> Reconciliation:
    """Check that every successful connection was accepted exactly once, and vice versa.

    The kit's promise is that every accepted connection appears exactly once
    in ``events`` and every client connection that got its answers is joined
    to exactly one event (see :func:`join_client_events` for how).  This
    function counts the ways that promise can break: an ok client with no
    event (the event log lost a row), an event with no client (a stray
    connection, or a client row lost), and a pair matched twice (a row
    logged twice).  Accepted events of clients that failed are counted
    separately, not hidden, and do not make the result fail.

    Use it as ``assert reconcile(client, events).ok``; look at ``.problems``
    to see which rows are to blame.

    Args:
        client: the run's client table.
        events: the run's events table.
    """
    is_ok = as_bool(client["ok"])
    ok_clients, failed_clients = client[is_ok], client[~is_ok]
    accepted_events = events[events["outcome"] == "accepted"]
    pairs = _match(ok_clients, accepted_events)

    per_client = pairs["client_index"].value_counts()
    per_event = pairs["event_index"].value_counts()
    lonely_clients = ok_clients[~ok_clients.index.isin(pairs["client_index"])]
    lonely_events = accepted_events[~accepted_events.index.isin(pairs["event_index"])]
    # Of the events no ok client claims, which belong to a client that failed?
    of_failed = _match(failed_clients, lonely_events)["event_index"].unique()
    stray_events = lonely_events[~lonely_events.index.isin(of_failed)]

    problems = []
    for index, row in lonely_clients.iterrows():
        problems.append({"problem": "ok client, no accepted event", "client_index": index,
                         "port": row["local_port"], "t_start_ns": row["t_start_ns"]})
    for index, row in stray_events.iterrows():
        problems.append({"problem": "accepted event, no client", "event_index": index,
                         "port": row["peer_port"], "worker": row["worker"],
                         "t_accept_ns": row["t_accept_ns"]})
    for index in of_failed:
        row = lonely_events.loc[index]
        problems.append({"problem": "accepted event of a failed client", "event_index": index,
                         "port": row["peer_port"], "worker": row["worker"],
                         "t_accept_ns": row["t_accept_ns"]})
    for index, count in per_client[per_client > 1].items():
        problems.append({"problem": f"ok client matches {count} events", "client_index": index,
                         "port": client.loc[index, "local_port"]})
    for index, count in per_event[per_event > 1].items():
        problems.append({"problem": f"event matches {count} ok clients", "event_index": index,
                         "port": events.loc[index, "peer_port"]})

    duplicates = int((per_client > 1).sum() + (per_event > 1).sum())
    return Reconciliation(
        accepted_events=len(accepted_events),
        client_ok=len(ok_clients),
        joined=len(pairs),
        client_ok_unmatched=len(lonely_clients),
        events_unmatched=len(stray_events),
        duplicate_matches=duplicates,
        ok=len(lonely_clients) == 0 and len(stray_events) == 0 and duplicates == 0,
        events_of_failed_clients=len(of_failed),
        problems=pd.DataFrame(problems, columns=["problem", "client_index", "event_index", "port",
                                                 "worker", "t_start_ns", "t_accept_ns"]),
    )
