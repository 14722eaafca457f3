"""Small helpers shared by the tests (plain functions, so a reader can follow them)."""

from __future__ import annotations

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
