"""The summary's rows: a measured figure with its spread and target, CSV and markdown, loud skips.

Printing lives here too: the bench is a set of scripts, and these are the
lines they print.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .stats import Spread

SKIPPED: dict[str, str] = {}  # every loud_skip of this run, for the summary's "Skipped" line


def banner(text: str) -> None:
    """A step's heading on the console."""
    print(f"\n=== {text} " + "=" * max(0, 72 - len(text)), flush=True)


def loud_skip(what: str, why: str) -> None:
    """Say loudly that ``what`` was not measured, and remember it for the summary."""
    SKIPPED[what] = why
    print(f"\n!!! SKIPPED {what}: {why}", flush=True)


@dataclass
class Figure:
    """One line of the summary table: a measured figure with its spread and its target."""

    step: str
    name: str
    spread: Spread
    unit: str = ""
    target: str = ""  # e.g. ">= 0.95"
    met: bool | None = None  # None: no target, or not measured
    note: str = ""
    digits: int = 2
    goal: str = ""  # the goal this figure answers for, e.g. "issue 21": listed apart in the summary

    def row(self) -> dict:
        s = self.spread
        return {"step": self.step, "figure": self.name,
                "median": round(s.median, 4) if s.values else "",
                "min": round(s.low, 4) if s.values else "",
                "max": round(s.high, 4) if s.values else "",
                "n": len(s.values), "unit": self.unit, "target": self.target,
                "met": "" if self.met is None else ("yes" if self.met else "NO"),
                "goal": self.goal, "note": self.note}


def verdict(figure: Figure) -> str:
    """'met', 'NOT MET', or 'not measured' for a figure with a target."""
    if figure.met is None:
        return "not measured"
    return "met" if figure.met else "NOT MET"


def check(spread: Spread, target: str) -> bool | None:
    """Is the median on the right side of ``target`` ('>= 0.95', '<= 120')?"""
    if not spread.values:
        return None
    op, value = target.split()
    return spread.median >= float(value) if op == ">=" else spread.median <= float(value)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """``rows`` (dicts with the same keys) as a CSV file; the folder is made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        if rows:
            out = csv.DictWriter(file, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows(rows)
    return path


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """``rows`` as a markdown table (the columns of the first row, unless given)."""
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"
