"""Medians with their range: the only way the benchmarks report a figure."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Spread:
    """Median and spread of repeated measurements (never a lone figure)."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        """'0.97 (0.93–1.01, n=5)': median, range and count."""
        if not self.values:
            return "n/a"
        f = f"{{:.{digits}f}}"
        return (f"{f.format(self.median * scale)} ({f.format(self.low * scale)}–"
                f"{f.format(self.high * scale)}, n={len(self.values)})")


def ratios(a: list[float], b: list[float]) -> Spread:
    """Per-pair ratios a[i]/b[i] (pairs measured back to back in the same round)."""
    return Spread([x / y for x, y in zip(a, b) if y])
