"""Alternating rounds on a shared machine: every contestant once per round, the order rotating.

Other people's jobs come and go on this machine (a notebook run takes a whole
core for seconds).  So before each round we wait a little for the machine to
be quiet, and after it we look at how much CPU other processes took while it
ran: a round during which they took more than ``NOISY`` cores is kept in the
CSV but left out of the medians, as long as enough quiet rounds remain.
Rounds continue until ``MIN_CLEAN`` quiet ones, or the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .procfs import machine_cpu

QUIET = 0.25  # cores used by others: quiet enough to start a round
NOISY = 0.40  # cores used by others during a run: the round is noisy
MIN_CLEAN = 5


def rotate(items: list, k: int) -> list:
    """``items`` starting at position k: each round puts a different contestant first."""
    k %= len(items)
    return items[k:] + items[:k]


def others_now(window: float = 0.4) -> float:
    """Cores the machine keeps busy right now, while our servers sit idle."""
    busy0, _ = machine_cpu()
    time.sleep(window)
    busy1, _ = machine_cpu()
    return (busy1 - busy0) / window


def wait_for_quiet(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until others use < QUIET cores; return the last load."""
    deadline = time.monotonic() + max_wait
    load = others_now()
    while load >= QUIET and time.monotonic() < deadline:
        load = others_now()
    return load


@dataclass
class Rounds:
    """The runs of an alternating comparison, ``runs[round][contestant]``; which were quiet."""

    runs: list[dict] = field(default_factory=list)
    quiet: list[bool] = field(default_factory=list)

    def kept(self) -> list[dict]:
        """The rounds the medians use: the quiet ones if at least MIN_CLEAN - 2, else all."""
        quiet = [r for r, ok in zip(self.runs, self.quiet) if ok]
        return quiet if len(quiet) >= MIN_CLEAN - 2 else self.runs

    def rows(self, contestant: str) -> list[dict]:
        """Every run as a CSV row: its round, whether the round was quiet, who ran, what it got.

        ``contestant`` names the column that says who ran ("server", "client").
        """
        return [{"round": i + 1, "quiet": quiet, contestant: name, **vars(result)}
                for i, (runs, quiet) in enumerate(zip(self.runs, self.quiet))
                for name, result in runs.items()]

    def note(self) -> str:
        used = self.kept()
        if len(used) == len(self.runs):
            noisy = self.quiet.count(False)
            return f"all {len(self.runs)} rounds" + (f" ({noisy} of them NOISY)" if noisy else "")
        return f"{len(used)} quiet rounds of {len(self.runs)}"


def alternate(contestants: dict, min_rounds: int, max_rounds: int, budget: float,
              show=None, mirrored: bool = False) -> Rounds:
    """Run each contestant once per round, the order rotating, until enough quiet rounds.

    A contestant is a function returning an object with ``ours_cpu_s`` (CPU seconds our own
    processes used during the run); each result gets ``others_cores`` (CPU other processes
    used meanwhile, in cores) set here.  ``mirrored``: each round runs the order forwards
    and then backwards (A B C D D C B A) and merges each contestant's two runs (results
    need a ``merge`` method): every contestant's runs are then centred on the same moment,
    so a load that rises or falls steadily during the round hits them all alike.
    """
    rounds = Rounds()
    started = time.monotonic()
    names = list(contestants)
    while len(rounds.runs) < max_rounds:
        clean = sum(rounds.quiet)
        spent = time.monotonic() - started
        if len(rounds.runs) >= min_rounds and (clean >= MIN_CLEAN or spent > budget):
            break
        wait_for_quiet(max_wait=2.5)
        order = rotate(names, len(rounds.runs))
        results: dict = {}
        for name in order + (order[::-1] if mirrored else []):
            busy0, _ = machine_cpu()
            t0 = time.monotonic()
            result = contestants[name]()
            wall = time.monotonic() - t0
            busy1, _ = machine_cpu()
            result.others_cores = max(0.0, busy1 - busy0 - result.ours_cpu_s) / wall
            if show:
                show(len(rounds.runs) + 1, name, result)
            results[name] = results[name].merge(result) if name in results else result
        rounds.runs.append({name: results[name] for name in names})
        rounds.quiet.append(max(r.others_cores for r in results.values()) <= NOISY)
    return rounds
