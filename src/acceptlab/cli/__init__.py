"""The acceptlab command (also ``python -m acceptlab``), one module per sub-command: each
builds specs from its options (options.py), runs what a notebook would run, and turns every
expected failure into one line on stderr (common.py) and Ctrl-C into a clean stop.

Every expected failure (a taken port, a missing platform feature, a bad
argument, an output directory that cannot take the run) is one line on
stderr and exit code 2, never a traceback.  Ctrl-C during run, load or
compare stops the load, keeps what was measured (printed, and written with
"interrupted": true) and exits with 130; a second Ctrl-C quits at once
(:mod:`acceptlab.cli.interrupts`).

Each sub-command is a module with ``add(commands)``, which builds its parser,
and ``handle(args, stop)``, which runs it; :data:`COMMANDS` lists them in the
order ``--help`` shows.  The options several commands share, and the specs
they build, are :mod:`acceptlab.cli.options`; checks and output are
:mod:`acceptlab.cli.common`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from ..linux.support import Unavailable
from . import (calibrate, compare, doctor, inspect, load, observe, predict, real, replay,
               rerun, run, serve, sweep)
from .common import BOOK_PORT, DESCRIPTION, INTERRUPTED, UsageError, check_values, say_interrupted
from .interrupts import Interrupts

__all__ = ["main", "build_parser", "BOOK_PORT", "COMMANDS"]

COMMANDS = (serve, load, run, rerun, compare, doctor, inspect, observe, real, replay, sweep,
            calibrate, predict)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="acceptlab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"acceptlab {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported with the usage of the sub-command it was given to."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = _subparsers(parser).get(args.command, parser)
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parse(build_parser(), argv)
    logging.basicConfig(format="acceptlab: %(message)s", level=logging.INFO)
    try:
        check_values(args)
        with Interrupts() as stop:
            return args.handler(args, stop)
    except (UsageError, Unavailable, ValueError, RuntimeError) as exc:  # RuntimeError: a
        print(f"acceptlab: {exc}", file=sys.stderr)                   # worker died at birth
        return 2
    except OSError as exc:  # a taken port, an address this machine lacks, too many files...
        print(f"acceptlab: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # only where SIGINT could not be blocked (not POSIX, not main)
        say_interrupted("nothing kept")
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
