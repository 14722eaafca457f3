"""Three small definitions every layer shares, so each is written once.

* :data:`now`: the one clock.  ``time.monotonic_ns()`` is the same clock in
  every process on the machine, so a worker's "accepted at" and a client's
  "connected at" can be subtracted even though different processes took them.
* :func:`address_family` and :func:`show_address`: one rule for telling an IPv6
  address from an IPv4 one, and one way of printing ``host:port`` (IPv6 in
  brackets, as URLs write it: ``[::1]:1060``).
* :func:`missing_as_na`: the tables keep "never happened" as ``-1`` while they
  are being written (a plain integer is cheap to store and to pickle) and turn
  it into pandas' ``<NA>`` when they become a DataFrame.

This module imports nothing from the kit, and pandas only when asked to make a
table, so the worker loop can use it without paying for pandas.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["now", "address_family", "show_address", "missing_as_na"]

now = time.monotonic_ns
"""Nanoseconds on the monotonic clock: the one timestamp of every table."""


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for a host written like ``'::1'``, IPv4 for ``'127.0.0.1'`` (and names such as ``'localhost'``)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def show_address(host: str, port: int) -> str:
    """``'127.0.0.1:1060'``, or ``'[::1]:1060'`` for IPv6, where a bare colon would be ambiguous."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def missing_as_na(frame: "pd.DataFrame", columns: Iterable[str]) -> "pd.DataFrame":
    """Turn the ``-1`` ("never") of each integer column into ``<NA>``, in place; return ``frame``.

    The columns become pandas' nullable ``Int64``, which holds nanosecond times
    exactly (a float column would round times past 2**53 ns).
    """
    for name in columns:
        frame[name] = frame[name].astype("Int64").mask(frame[name] < 0)
    return frame
