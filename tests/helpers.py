"""Small helpers shared by the tests (plain functions, so a reader can follow them)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from acceptlab.conversation import ask
from acceptlab.protocol import ZEN


def zen_round_trip(address: tuple[str, int]) -> list[bytes]:
    """One connection of the book's client: three questions, three answers."""
    with socket.create_connection(address, timeout=5) as sock:
        return ask(sock, ZEN)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a new server bind ``port`` (the way servers do, with SO_REUSEADDR)?"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError:
            return False
    return True


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition, timeout: float, step: float = 0.02) -> float | None:
    """Poll ``condition`` until true; return the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(step)
    return None


def linux() -> bool:
    return os.uname().sysname == "Linux"


def stop_and_time(pool, caplog) -> float:
    """Stop ``pool``; return the seconds it took, after checking no worker had to be forced.

    ``stop()`` asks every worker to go and forces (SIGKILL) whoever is left
    after HALF its 1 s budget.  So "stopped in time" is asserted two ways that
    a regression cannot pass: nobody was forced (a worker ignoring SIGTERM
    would be, with a warning), and the stop took well under that 0.5 s
    grace (a worker unwinding slowly would not).
    """
    caplog.set_level(logging.WARNING, logger="acceptlab.pool")
    started = time.monotonic()
    pool.stop()
    took = time.monotonic() - started
    forced = [r.getMessage() for r in caplog.records if "forced" in r.getMessage()]
    assert not forced, forced
    return took


STOP_MARGIN = 0.4  # seconds: under the 0.5 s after which stop() forces; a clean stop takes ~0.05
