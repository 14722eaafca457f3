"""What a load leaves: one record per connection attempt, and the words for what went wrong."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..basics import show_address
from ..server.protocol import PROTOCOLS
from .conversation import ERRORS, printable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CLIENT_COLUMNS", "CLIENT_NULLABLE", "ConnectionRecord", "as_row", "ProtocolMismatch",
           "describe_errors"]

CLIENT_COLUMNS = ("conn", "local_port", "t_start_ns", "t_connected_ns", "t_reply_ns",
                  "t_done_ns", "ok", "error", "worker", "attempt")
# Columns that may have no value (-1 in a record, <NA> in the table): integers with gaps.
CLIENT_NULLABLE = ("local_port", "t_connected_ns", "t_reply_ns", "t_done_ns", "worker")


@dataclass
class ConnectionRecord:
    """One client connection, as the client saw it (times from ``time.monotonic_ns``; -1: never)."""

    conn: int
    local_port: int = -1
    t_start_ns: int = -1
    t_connected_ns: int = -1
    t_reply_ns: int = -1  # the first reply arrived
    t_done_ns: int = -1
    ok: bool = False
    error: str = ""  # '' when ok, else one word of client_conversation.ERRORS (or an exception's)
    worker: int = -1  # the worker named in the reply (http), else -1
    attempt: int = 1  # 2, 3, ... for the retries of connection number ``conn``
    # Not a column: when error == 'mismatch', (what was received, the likely protocol).
    mismatch: tuple[bytes, str] | None = field(default=None, repr=False)


# A record as a plain tuple in CLIENT_COLUMNS order (dataclasses.astuple deep-copies: 10 x slower).
as_row = operator.attrgetter(*CLIENT_COLUMNS)


class ProtocolMismatch(ValueError):
    """The server answered in another protocol (or in bytes no protocol the kit knows sends).

    Raised by :func:`fire` after the first such connection: every other one
    would fail the same way.  ``received`` holds the bytes (at most 200),
    ``likely`` the protocol they belong to (``''``: none the kit knows).
    """

    def __init__(self, address: tuple[str, int], protocol: str, received: bytes,
                 likely: str) -> None:
        self.address, self.protocol, self.received, self.likely = (
            address, protocol, received, likely)
        said = f"{show_address(*address[:2])} answered {printable(received)}"
        if likely:
            super().__init__(f"{said}, which is {likely}, not {protocol}: try --protocol {likely}")
        else:
            super().__init__(f"{said}, which is no protocol the kit knows (not {protocol}): is "
                             f"that the right port? (--protocol: {', '.join(PROTOCOLS)})")


def describe_errors(client: "pd.DataFrame") -> dict[str, str]:
    """Each kind of failed attempt in ``client``: ``{error: "N (what it means)"}``, most first.

    A summary that says ``refused: 10`` leaves the reader guessing where; this
    one says ``10 (nothing listens on 127.0.0.1:1060)``.  The words come from
    :data:`~acceptlab.client.conversation.ERRORS`, one place for what each means.

    Args:
        client: a table from :func:`fire`; the ``address`` and ``timeout`` it
            leaves in ``client.attrs`` fill in the explanations (a table read
            back from a file has no attrs, and then says "the server's address").
    """
    counts = client.loc[~client["ok"].astype(bool), "error"].value_counts()
    address = client.attrs.get("address", "the server's address")
    timeout = client.attrs.get("timeout", "?")
    described = {}
    for error, count in counts.items():
        meaning = ERRORS.get(error, "an error of the client's own machine")
        described[error] = f"{count} ({meaning.format(address=address, timeout=timeout)})"
    return described
