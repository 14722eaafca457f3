"""``acceptlab doctor``: what this machine supports, and which strategies run for which kind."""

from __future__ import annotations

import argparse
import threading


def add(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="what this machine supports",
                                 description="What this machine supports, and which "
                                             "strategies run for which kind of worker.")
    doctor.set_defaults(handler=handle)


def handle(args: argparse.Namespace, stop: threading.Event) -> int:
    """Print what this machine supports, and which strategies run for which kind."""
    from ..linux.support import format_report

    print(format_report())
    return 0
