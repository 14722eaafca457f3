"""What a calibration and a prediction say, in words a learner reads.

``acceptlab calibrate`` and ``acceptlab predict`` print these lines, and a
lesson can print them too: the race without a gap in this machine's numbers,
and a prediction as a small table of 90 % bands.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["calibration_summary", "calibration_lines", "prediction_lines"]


def calibration_summary(found) -> dict[str, Any]:
    """The numbers that decide the race on this machine, as one flat dict (medians over runs)."""
    import numpy as np

    def median(name: str, field: str) -> float | None:
        values = [v for pool in found.pools.get(name, ()) for v in getattr(pool, field)
                  if math.isfinite(v)]
        return round(float(np.median(values)), 1) if values else None

    busy = found.pools.get("process-busy", ())
    late = [pool.p_late for pool in busy]
    return {
        "source": found.source, "created": found.created,
        "load_average": list(found.load_average), "cpus": found.cpus,
        "wake_idle_us": median("process-idle", "woke"),
        "wake_busy_us": median("process-busy", "woke"),
        "return_lag_us": median("process-busy", "lag_prompt"),
        "return_us": median("process-busy", "ret"),
        "reconnect_us": median("process-busy", "pause"),
        "connect_us": median("process-busy", "connect"),
        "talk_us": median("process-busy", "talk"),
        "late_share": [round(min(late), 3), round(max(late), 3)] if late else None,
        "late_win_share": [round(min(p.p_late_win for p in busy), 3),
                           round(max(p.p_late_win for p in busy), 3)] if busy else None,
        "client_cpu_us": found.client_cpu_us, "worker_cpu_us": found.worker_cpu_us,
        "cores": found.cores, "cpu_share": found.cpu_share,
    }


def calibration_lines(found) -> list[str]:
    """What a learner reads after ``acceptlab calibrate``: the race without a gap, in numbers."""
    s = calibration_summary(found)
    lines = [found.describe(), ""]
    lines.append(f"  a sleeper's wake-up latency (after connect() returned): "
                 f"{s['wake_busy_us']} µs between back-to-back connections, "
                 f"{s['wake_idle_us']} µs after a pause")
    lines.append(f"  the worker that served a connection sees the hang-up {s['return_lag_us']} µs "
                 f"after its client and is back in accept() {s['return_us']} µs later")
    lines.append(f"  the client connects again {s['reconnect_us']} µs after hanging up, and its "
                 f"connect() takes {s['connect_us']} µs")
    if s["late_share"] and None not in (s["return_lag_us"], s["reconnect_us"], s["connect_us"]):
        margin = (s["reconnect_us"] + s["connect_us"]) - (s["return_lag_us"] + s["return_us"])
        first = "the returning worker" if margin > 0 else "the next connection"
        low, high = (round(100 * x) for x in s["late_share"])
        win_low, win_high = (round(100 * x) for x in s["late_win_share"])
        lines.append(f"  so without a gap, in the median, {first} comes first (by "
                     f"{abs(margin):.0f} µs, from hang-up to connect() returning); the worker "
                     f"was late after {low}-{high} % of connections (runs differ) and then took "
                     f"the next one itself after {win_low}-{win_high} %: each such connection "
                     f"breaks the turns")
    lines.append(f"  CPU per connection: client {s['client_cpu_us']} µs, worker "
                 f"{s['worker_cpu_us']} µs; cores the kit got under load: {s['cores']} of "
                 f"{s['cpus']}; a spinning worker's share of a core: {s['cpu_share']}")
    return lines


def prediction_lines(result: dict[str, Any]) -> list[str]:
    """A prediction as a small table: metric, 90 % band, median."""
    from .bands import METRICS

    lines = [result["model"], f"with the {result['calibration']}", ""]
    width = max(len(name) for name in METRICS)
    for name in METRICS:
        band, middle = result[name], result["median"][name]
        shown = "—" if band is None else f"[{band[0]:.3f}, {band[1]:.3f}]"
        lines.append(f"  {name:<{width}}  {shown:>18}   median {middle if middle is None else f'{middle:.3f}'}")
    return lines
