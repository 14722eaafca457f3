"""What a calibration and a prediction say, in words a learner reads.

``acceptlab calibrate`` and ``acceptlab predict`` print these lines, and a
lesson can print them too: the race without a gap in this machine's numbers,
what each way to a connection costs, and a prediction as a small table of 90 %
bands.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["calibration_summary", "calibration_lines", "prediction_lines"]

_PATH_WORDS = {"accept": "accept()", "poll": "poll() + accept()", "epoll": "epoll + accept()",
               "lock": "flock() + accept()", "dealer": "a dealer's hand-off",
               "shared": "a shared epoll (threads)"}


def _median(found, name: str, field: str) -> float | None:
    values = [v for pool in found.pools.get(name, ()) for v in getattr(pool, field)
              if math.isfinite(v)]
    return round(float(np.median(values)), 1) if values else None


def _latency(found, name: str) -> float | None:
    """The median connect + talk of a pool's connections (a sequential connection's latency)."""
    values = [c + t for pool in found.pools.get(name, ()) for c, t in zip(pool.connect, pool.talk)
              if math.isfinite(c + t)]
    return round(float(np.median(values)), 1) if values else None


def _span(values) -> list[float] | None:
    values = [float(v) for v in values]
    return [round(min(values), 3), round(max(values), 3)] if values else None


def _spread(pools) -> list[float] | None:
    """A closed loop's conversations: their 10th and 90th percentiles over their median."""
    talks = np.asarray([t for pool in pools for t in pool.talk if math.isfinite(t)], dtype=float)
    if not len(talks) or np.median(talks) <= 0:
        return None
    return [round(float(x), 2) for x in np.percentile(talks, [10, 90]) / np.median(talks)]


def calibration_summary(found) -> dict[str, Any]:
    """The numbers that decide the race on this machine, as one flat dict (medians over runs)."""
    busy = found.pools.get("accept-process-busy", ())
    idle = found.pools.get("accept-process-idle", ())
    pairs = sum(max(1, p.pairs) for p in idle)
    stalls = sum(p.p_late * max(1, p.pairs) for p in idle)
    return {
        "source": found.source, "mode": found.mode, "created": found.created,
        "load_average": list(found.load_average), "cpus": found.cpus,
        "wake_idle_us": _median(found, "accept-process-idle", "woke"),
        "wake_busy_us": _median(found, "accept-process-busy", "woke"),
        "return_lag_us": _median(found, "accept-process-busy", "lag_prompt"),
        "return_us": _median(found, "accept-process-busy", "ret"),
        "reconnect_us": _median(found, "accept-process-busy", "pause"),
        "connect_us": _median(found, "accept-process-busy", "connect"),
        "talk_us": _median(found, "accept-process-busy", "talk"),
        "late_share": _span(p.p_late for p in busy),
        "late_win_share": _span(p.p_late_win for p in busy),
        "stall_per_connection": round(stalls / pairs, 4) if idle else None,
        "latency_us": {path: _latency(found, f"{path}-{kind}-idle" if path not in ("shared",)
                                      else f"{path}-thread-busy")
                       for path, kind in (("accept", "process"), ("poll", "process"),
                                          ("epoll", "process"), ("lock", "process"),
                                          ("dealer", "process"), ("shared", "thread"))},
        "client_us_closed_loop": _span(found.gil_us),
        "closed_loop_talk_spread": _spread(found.pools.get("accept-process-loaded", ())),
        "client_us_open_loop": _span(found.open_gil_us),
        "cores": _span(found.cores),
        "client_cpu_us": found.client_cpu_us, "worker_cpu_us": found.worker_cpu_us,
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
    if s["late_share"] and None not in (s["return_lag_us"], s["return_us"], s["reconnect_us"],
                                        s["connect_us"]):
        margin = (s["reconnect_us"] + s["connect_us"]) - (s["return_lag_us"] + s["return_us"])
        first = "the returning worker" if margin > 0 else "the next connection"
        low, high = (round(100 * x) for x in s["late_share"])
        win_low, win_high = (round(100 * x) for x in s["late_win_share"])
        lines.append(f"  so without a gap, in the median, {first} comes first (by "
                     f"{abs(margin):.0f} µs, from hang-up to connect() returning); the worker "
                     f"was late after {low}-{high} % of connections (runs differ) and then took "
                     f"the next one itself after {win_low}-{win_high} %: each such connection "
                     f"breaks the turns")
    if s["stall_per_connection"] is not None:
        lines.append(f"  with 1 ms between connections a worker stalled past the next one after "
                     f"{100 * s['stall_per_connection']:.2f} % of connections")
    costs = [f"{_PATH_WORDS[path]} {value:.0f} µs" for path, value in s["latency_us"].items()
             if value is not None]
    if costs:
        from .calibration import HERD_WORKERS

        lines.append("  one connection, start to end, by the way the worker waits: "
                     + ", ".join(costs) + f" (paced; threads back to back; the herds and the "
                     f"shared epoll with {HERD_WORKERS} workers, the others 3)")
    if s["client_us_closed_loop"]:
        low, high = s["client_us_closed_loop"]
        lines.append(f"  a closed loop's client process needs {low:.0f}-{high:.0f} µs per "
                     f"connection (its threads take turns on one GIL): at most "
                     f"{1e6 / high:.0f}-{1e6 / low:.0f} connections/s however many clients")
    if s["closed_loop_talk_spread"]:
        fast, slow = s["closed_loop_talk_spread"]
        lines.append(f"  and its conversations are uneven: a tenth took under {fast:.2f} times "
                     f"the median, a tenth over {slow:.2f} times (its processes take turns on "
                     f"the cores; the model draws each conversation out as much)")
    if s["client_us_open_loop"]:
        low, high = s["client_us_open_loop"]
        lines.append(f"  an open loop's client (a thread per connection) needs {low:.0f}-"
                     f"{high:.0f} µs of it per connection")
    if s["cores"]:
        low, high = s["cores"]
        lines.append(f"  CPU-bound workers got {low:.2f}-{high:.2f} of the {s['cpus']} cores "
                     f"(other programs had the rest)")
    for name, why in sorted(found.unread.items()):
        lines.append(f"  not measured: {name}, the default calibration's readings stand in "
                     f"({why})")
    if found.note:
        lines.append(f"  ({found.note})")
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
