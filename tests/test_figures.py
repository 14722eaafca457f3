"""Every figure the kit draws reads at the book's width: the checker of issue 27.

The figure-making functions are found in the package itself (every public function
of ``acceptlab`` whose return annotation is ``Figure`` or ``Film``), so a new one cannot
be forgotten: :data:`RECIPES` must say how to draw each, with small parameters (the
synthetic runs of ``tests/helpers.py`` and the reference runs in ``data/``), in every
shape the demo and the lessons ask for.  Each drawing is then checked for:

* **aspect**: width and height within 3 : 1 of each other, as the figure is made and as
  a notebook shows it (cropped to its content);
* **text size**: the smallest text (titles, labels, ticks, legends, notes) is at least
  8 pt once the figure is shrunk to the page's width (900 px; ``style.shown_size``);
* **labels**: every axes that shows tick labels names what they measure;
* **series**: no two series of one axes (or of one figure legend) look alike: the same
  colour (CIE76 ΔE under 24, so three near-identical greys count as one colour) with the
  same marker and line style.

The checks themselves are checked on figures made to fail them (the last tests).
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import Collection  # noqa: E402
from matplotlib.colors import to_rgba_array  # noqa: E402
from matplotlib.container import Container  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

import acceptlab  # noqa: E402
from acceptlab import analysis, plots  # noqa: E402
from acceptlab.lab.experiment import Run  # noqa: E402
from acceptlab.views import film, shares, strategy_map, style  # noqa: E402
from helpers import (one_worker, random_sequence, round_robin, synth_client,  # noqa: E402
                     synth_events)

DATA = Path(__file__).resolve().parents[1] / "data"
WORKERS = 4
SAME_COLOUR = 24.0  # CIE76 ΔE below which two colours read as one

# --------------------------------------------------------------------------- finding them


def figure_functions() -> dict[str, Callable[..., Any]]:
    """Every public function of the package that returns a Figure (or a Film), by name."""
    found = {}
    for info in pkgutil.walk_packages(acceptlab.__path__, "acceptlab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            returns = inspect.signature(function).return_annotation
            if str(getattr(returns, "__name__", returns)) in ("Figure", "Film"):
                found[name] = function
    return found


# --------------------------------------------------------------------------- small runs


def synthetic(strategy: str, kind: str = "process") -> pd.DataFrame:
    """A light-load run of ``strategy`` as tests/helpers.py writes it."""
    sequences = {"blocking": round_robin(WORKERS, 12), "locked": round_robin(WORKERS, 12),
                 "epoll-exclusive": one_worker(48), "shared-epoll": one_worker(48, 2),
                 "reuseport": random_sequence(WORKERS, 48), "poll": random_sequence(WORKERS, 48, 2),
                 "epoll": random_sequence(WORKERS, 48, 3), "timeout": random_sequence(WORKERS, 48, 4)}
    herd = strategy in ("poll", "epoll", "shared-epoll")
    events = synth_events(sequences[strategy], WORKERS, strategy, herd=herd)
    events["kind"] = kind
    events["run"] = f"{strategy}/{kind}"
    return events


def reference(name: str) -> Run:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"reference run {name} is missing from data/")
    return Run.load(path)


def light_runs() -> dict[str, Run]:
    """The reference light-load runs of data/: every strategy × kind of the demo, recorded."""
    runs = {}
    for path in sorted(DATA.glob("*-light")):
        if not path.name.startswith("trace-"):
            run = Run.load(path)
            runs[f"{run.meta['strategy']}/{run.meta['kind']}"] = run
    return runs


def demo_sized_summary() -> pd.DataFrame:
    """A summary as big as the demo's: 15 strategies × 2 kinds (synthetic ones repeated)."""
    names = ["blocking", "timeout", "poll", "epoll", "epoll-exclusive", "shared-epoll",
             "reuseport", "locked", "reorder", "busy-sleep", "exact", "handoff",
             "handoff-least-busy", "reuseport-cpu", "reuseport-incoming-cpu"]
    looks = ["blocking", "timeout", "poll", "epoll", "epoll-exclusive", "shared-epoll",
             "reuseport", "locked"]
    runs = {}
    for index, name in enumerate(names):
        for kind in ("process", "thread"):
            events = synthetic(looks[index % len(looks)], kind).assign(strategy=name)
            runs[f"{name}/{kind}"] = (events, WORKERS)
    return analysis.summarize_runs(runs)


def queue_samples(sockets: tuple[str, ...]) -> pd.DataFrame:
    depth = np.concatenate([np.arange(25), np.arange(25)[::-1]])
    return pd.concat([pd.DataFrame({"t_ns": 10**9 + np.arange(50) * 2_000_000, "socket": name,
                                    "queue_len": depth * (i + 1),
                                    "backlog": pd.array([128] * 50, "Int64")})
                      for i, name in enumerate(sockets)], ignore_index=True)


def real_server_runs() -> dict[str, dict[str, Run]]:
    """Lesson 09's runs: each real server's reference runs, by load."""
    servers = {}
    for path in sorted(DATA.glob("real-*")):
        name, load = path.name.removeprefix("real-").rsplit("-", 1)
        servers.setdefault(name, {})[load] = Run.load(path)
    if not servers:
        pytest.skip("no real-server reference runs in data/")
    return servers


# How to draw each figure function, in every shape the demo and the lessons use.  A function
# the package gains without an entry here fails test_every_figure_function_has_a_recipe.
RECIPES: dict[str, Callable[[], list[Figure]]] = {
    "per_worker_bars": lambda: [plots.per_worker_bars(synthetic(s), WORKERS, s)
                                for s in ("blocking", "reuseport", "epoll-exclusive", "poll")],
    "accept_raster": lambda: [plots.accept_raster(synthetic("blocking"), WORKERS),
                              plots.accept_raster(synthetic("reuseport"), WORKERS,
                                                     max_connections=6 * WORKERS)],
    "worker_timeline": lambda: [plots.worker_timeline(synthetic("poll"), WORKERS),
                                plots.worker_timeline(synthetic("blocking"), 1)],
    "wakeups_by_strategy": lambda: [
        plots.wakeups_by_strategy(demo_sized_summary()),  # the demo's 30 runs
        plots.wakeups_by_strategy(analysis.summarize_runs(  # lesson 05's few
            {s: (synthetic(s), WORKERS) for s in ("blocking", "poll", "epoll-exclusive")}))],
    "queue_depth": lambda: [
        plots.queue_depth(queue_samples(("shared",))),
        # lesson 04: three runs stacked as three "sockets"
        plots.queue_depth(queue_samples(("closed loop, 8 clients", "open loop, 200/s",
                                            "open loop, 1000/s")), backlog_line=False),
        # lesson 06: SO_REUSEPORT's queues, owners found in the events
        plots.queue_depth(reference("reuseport-process-slowworker").queue,
                             events=reference("reuseport-process-slowworker").events)],
    "latency_cdf": lambda: [
        plots.latency_cdf({"blocking": reference("blocking-process-slowworker").client,
                              "reuseport": reference("reuseport-process-slowworker").client}),
        plots.latency_cdf({"closed": synth_client(synthetic("blocking")),
                              "open": synth_client(synthetic("reuseport")),
                              "open, faster": synth_client(synthetic("poll"))})],
    "compare_strategies": lambda: [
        plots.compare_strategies({name: (run.events, run.workers)  # the demo, per kind
                                     for name, run in light_runs().items()
                                     if run.meta["kind"] == "process"}),
        plots.compare_strategies({"processes": (synthetic("blocking"), WORKERS),  # lesson 02
                                     "threads": (synthetic("blocking", "thread"), WORKERS)})],
    "sweep_heatmaps": lambda: [plots.sweep_heatmaps(
        pd.read_csv(DATA / "sweep" / "sweep.csv"),
        ["jain", "p99_ms", "conn_per_s", "cpu_us_per_conn"]),  # lesson 10's four
        plots.sweep_heatmaps(pd.read_csv(DATA / "sweep" / "sweep.csv"))],  # acceptlab sweep's
    "restart_losses": lambda: [plots.restart_losses({
        "shared socket": pd.DataFrame({"refused": [0, 1], "reset": [0, 0], "delayed": [2, 3]}),
        "reuseport": pd.DataFrame({"refused": [4, 6], "reset": [1, 0], "delayed": [0, 1]})})],
    "real_server_shares": lambda: [shares.real_server_shares(real_server_runs())],
    "replay": lambda: [film.replay(reference("blocking-process-light"), max_connections=2).figure],
    "still_strip": lambda: [film.still_strip(reference(name))
                            for name in ("blocking-process-light", "reuseport-process-light")],
    "strategy_map": lambda: [strategy_map.strategy_map(light_runs())],
}


# --------------------------------------------------------------------------- the checks


def _lab(colour: Any) -> np.ndarray:
    """CIE L*a*b* of an sRGB colour (D65) as drawn on white, for a distance people see."""
    red, green, blue, alpha = to_rgba_array(colour)[0]
    rgb = alpha * np.array([red, green, blue]) + (1 - alpha)  # a light fill is a light colour
    rgb = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _look(handle: Any) -> tuple | None:
    """(colours, marker, line style) of a legend entry; None for an entry that draws nothing."""
    if isinstance(handle, tuple):  # a swatch of several colours (every worker's)
        looks = [_look(part) for part in handle]
        return (tuple(c for look in looks if look for c in look[0]), "swatch", "")
    if isinstance(handle, Container):
        handle = handle[0] if len(handle) else None
    if isinstance(handle, Line2D):
        marker, style_ = str(handle.get_marker()), str(handle.get_linestyle())
        if marker in ("None", "", " ") and style_ in ("None", "", " "):
            return None  # a words-only entry ("predicted: one worker takes most")
        colour = handle.get_markerfacecolor() if style_ in ("None", "") else handle.get_color()
        if str(colour) in ("none", "white", "#ffffff"):
            colour = handle.get_markeredgecolor()
        return ((tuple(to_rgba_array(colour)[0]),), marker, style_)
    if isinstance(handle, Patch):
        return ((tuple(handle.get_facecolor()),), "patch", str(handle.get_hatch() or ""))
    if isinstance(handle, Collection):
        colours = handle.get_facecolor()
        return ((tuple(colours[0]),) if len(colours) else (), "collection", "")
    return None


def _alike(one: tuple, other: tuple) -> bool:
    colours_a, colours_b = one[0], other[0]
    if one[1:] != other[1:] or len(colours_a) != len(colours_b) or not colours_a:
        return False
    return all(np.linalg.norm(_lab(a) - _lab(b)) < SAME_COLOUR
               for a, b in zip(colours_a, colours_b))


def look_alikes(fig: Figure) -> list[str]:
    """Pairs of series, in one axes or one figure legend, that a reader cannot tell apart."""
    groups = []
    for ax in fig.axes:
        if ax.get_visible():
            handles, labels = ax.get_legend_handles_labels()
            groups.append((ax.get_title() or "an axes", handles, labels))
    for legend in fig.legends:
        groups.append(("the figure legend", legend.legend_handles,
                       [text.get_text() for text in legend.get_texts()]))
    found = []
    for where, handles, labels in groups:
        looks = [(label, _look(handle)) for handle, label in zip(handles, labels)]
        for (label_a, look_a), (label_b, look_b) in combinations(
                [(label, look) for label, look in looks if look], 2):
            if _alike(look_a, look_b):
                found.append(f"{where!r}: {label_a!r} and {label_b!r} look alike")
    return found


def shown_png(fig: Figure, *, tight: bool) -> tuple[int, int]:
    """The PNG's size in pixels as the demo saves it (whole) or a notebook shows it (tight)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight" if tight else None)
    return Image.open(io.BytesIO(buffer.getvalue())).size


def aspect_problems(fig: Figure) -> list[str]:
    problems = []
    for tight in (False, True):
        width, height = shown_png(fig, tight=tight)
        if max(width / height, height / width) > style.MAX_ASPECT:
            problems.append(f"{'a notebook' if tight else 'the demo'} shows it {width} × {height}"
                            f" px, beyond {style.MAX_ASPECT:g} : 1")
    return problems


def smallest_text(fig: Figure) -> tuple[float, str]:
    """(points once shrunk to the page, the text) of the figure's smallest visible text."""
    fig.canvas.draw()  # tick labels exist once drawn
    shown_width = max(fig.get_figwidth(), shown_png(fig, tight=True)[0] / 100)
    texts = [text for text in fig.findobj(Text) if text.get_visible() and text.get_text().strip()
             and _on_figure(text)]
    if not texts:
        return float("inf"), ""
    text = min(texts, key=lambda t: t.get_fontsize())
    return style.shown_size(text.get_fontsize(), shown_width), text.get_text()


def _on_figure(text: Text) -> bool:
    """Is the text drawn inside the figure (tick labels past an axis' end are not)?"""
    axes = text.axes
    if axes is not None and text in axes.get_xticklabels() + axes.get_yticklabels():
        box = text.get_window_extent()
        return box.width > 0 and fig_contains(text.figure, box) and _tick_in_view(text)
    return True


def fig_contains(fig: Figure, box: Any) -> bool:
    return box.x1 >= 0 and box.y1 >= 0 and box.x0 <= fig.bbox.width and box.y0 <= fig.bbox.height


def _tick_in_view(text: Text) -> bool:
    axes = text.axes
    for axis, limits in ((axes.xaxis, axes.get_xlim()), (axes.yaxis, axes.get_ylim())):
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if text in (tick.label1, tick.label2):
                low, high = sorted(limits)
                return tick.get_visible() and low - 1e-9 <= tick.get_loc() <= high + 1e-9
    return True


def unlabelled_axes(fig: Figure) -> list[str]:
    """Axes that show tick labels on an axis without naming what it measures."""
    fig.canvas.draw()
    found = []
    supx = fig._supxlabel.get_text() if getattr(fig, "_supxlabel", None) else ""
    supy = fig._supylabel.get_text() if getattr(fig, "_supylabel", None) else ""
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, label, shared in ((ax.xaxis, ax.get_xlabel(), supx),
                                    (ax.yaxis, ax.get_ylabel(), supy)):
            ticks = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            if ticks and not (label or shared):
                found.append(f"{ax.get_title() or 'an axes'!r}: its {axis.axis_name} axis has no "
                             f"label")
    return found


def problems_of(fig: Figure) -> list[str]:
    found = aspect_problems(fig) + unlabelled_axes(fig) + look_alikes(fig)
    size, words = smallest_text(fig)
    if size < style.MIN_FONT_PT - 1e-6:
        found.append(f"text {words[:40]!r} shows at {size:.1f} pt at the page's width")
    return found


# --------------------------------------------------------------------------- the tests


def test_every_figure_function_has_a_recipe():
    """A figure function added to the package without a way to draw it here fails this test."""
    found = set(figure_functions())
    assert found, "found no figure functions in the package: the discovery is broken"
    assert found == set(RECIPES), (f"without a recipe: {sorted(found - set(RECIPES))}; "
                                   f"recipes for no function: {sorted(set(RECIPES) - found)}")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_figure_reads_at_the_books_width(name):
    figures = RECIPES[name]()
    assert figures
    problems = [f"#{i}: {problem}" for i, fig in enumerate(figures) for problem in problems_of(fig)]
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_the_checks_catch_what_they_look_for():
    wide = Figure(figsize=(14, 3))
    ax = wide.subplots()
    ax.plot([1, 2], [1, 2], color="0.2", label="one")
    ax.plot([1, 2], [2, 1], color="0.3", label="two")  # a near-identical grey
    ax.set_xlabel("x")  # no y label
    ax.legend(fontsize="x-small")
    problems = problems_of(wide)
    assert any("beyond 3 : 1" in p for p in problems)
    assert any("y axis has no label" in p for p in problems)
    assert any("'one' and 'two' look alike" in p for p in problems)
    assert any("pt at the page's width" in p for p in problems)
    fine = Figure(figsize=(8, 4))
    ax = fine.subplots()
    ax.plot([1, 2], [1, 2], color=style.worker_colour(0), label="worker 0")
    ax.plot([1, 2], [2, 1], color=style.worker_colour(1), label="worker 1")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend()
    assert problems_of(fine) == []


@pytest.mark.system  # starts worker processes: a small `acceptlab compare`, as make demo runs it
def test_the_demo_draws_the_map_first_and_every_png_within_3_to_1(tmp_path):
    from acceptlab.views.report import write_comparison

    result = write_comparison(tmp_path, strategies=["blocking", "poll"], kinds=["process"],
                              connections=40, slow_worker=False, progress=False)
    pngs = [path for path in result.written if path.suffix == ".png"]
    assert pngs and pngs[0].name == "strategy-map.png"
    for path in pngs:
        width, height = Image.open(path).size
        assert max(width / height, height / width) <= style.MAX_ASPECT, (path.name, width, height)
