"""Every figure of acceptlab.plots renders, on small synthetic runs of several strategies.

These tests check that a figure is drawn and labelled, not what it looks
like: the numbers behind it are tested in test_analysis.py.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display needed: draw into memory

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from acceptlab import analysis, plots  # noqa: E402
# The synthetic runs are shared with the analysis tests (tests/ is on sys.path, see conftest.py).
from test_analysis import (  # noqa: E402
    one_worker,
    random_sequence,
    round_robin,
    synth_client,
    synth_events,
)

WORKERS = 4

# What each strategy looks like under light load (kernel-notes.md), as a synthetic run.
LOOKS_LIKE = {
    "blocking": lambda: synth_events(round_robin(WORKERS, 12), WORKERS, "blocking"),
    "locked": lambda: synth_events(round_robin(WORKERS, 12), WORKERS, "locked"),
    "epoll-exclusive": lambda: synth_events(one_worker(48), WORKERS, "epoll-exclusive"),
    "shared-epoll": lambda: synth_events(one_worker(48, 2), WORKERS, "shared-epoll", herd=True),
    "reuseport": lambda: synth_events(random_sequence(WORKERS, 48), WORKERS, "reuseport"),
    "poll": lambda: synth_events(random_sequence(WORKERS, 48, 2), WORKERS, "poll", herd=True),
    "epoll": lambda: synth_events(random_sequence(WORKERS, 48, 3), WORKERS, "epoll", herd=True),
    "timeout": lambda: synth_events(random_sequence(WORKERS, 48, 4), WORKERS, "timeout"),
}


def queue_samples(sockets: tuple[str, ...] = ("shared",), samples: int = 50) -> pd.DataFrame:
    """An accept queue that fills up and drains again, sampled every 2 ms."""
    depth = np.concatenate([np.arange(samples // 2), np.arange(samples - samples // 2)[::-1]])
    frames = [pd.DataFrame({"t_ns": 10**9 + np.arange(samples) * 2_000_000, "socket": name,
                            "queue_len": depth, "backlog": pd.array([128] * samples, "Int64")})
              for name in sockets]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def suptitle(fig: Figure) -> str:
    """The figure's overall title ('' if none); Figure.get_suptitle needs matplotlib >= 3.8."""
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def assert_labelled(fig: Figure) -> None:
    """A figure a learner can read: it has axes, and each visible one has a title and labels."""
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    for ax in visible:
        assert ax.get_xlabel() and ax.get_ylabel()
    assert any(ax.get_title() for ax in visible) or suptitle(fig)


@pytest.mark.parametrize("strategy", list(LOOKS_LIKE))
def test_per_worker_bars(strategy):
    fig = plots.per_worker_bars(LOOKS_LIKE[strategy](), WORKERS, strategy)
    assert_labelled(fig)
    assert strategy in fig.axes[0].get_title()
    assert fig.axes[0].get_legend() is not None


def test_per_worker_bars_reads_the_strategy_and_draws_into_a_given_axes():
    fig, ax = plt.subplots()
    assert plots.per_worker_bars(LOOKS_LIKE["reuseport"](), WORKERS, ax=ax) is fig
    assert "reuseport" in ax.get_title()


def test_per_worker_bars_have_one_colour_per_worker():
    fig = plots.per_worker_bars(LOOKS_LIKE["blocking"](), WORKERS)
    bars = fig.axes[0].patches[:WORKERS]
    assert [bar.get_facecolor() for bar in bars] == [plots.worker_colour(w) for w in range(4)]


@pytest.mark.parametrize("strategy", list(LOOKS_LIKE))
def test_accept_raster(strategy):
    assert_labelled(plots.accept_raster(LOOKS_LIKE[strategy](), WORKERS))


def test_accept_raster_says_when_it_shows_only_the_first_connections():
    events = synth_events(round_robin(WORKERS, 100), WORKERS)
    fig = plots.accept_raster(events, WORKERS, max_connections=50)
    assert "first 50 of 400" in fig.axes[0].get_title()


@pytest.mark.parametrize("strategy", ["blocking", "poll", "shared-epoll"])
def test_worker_timeline(strategy):
    fig = plots.worker_timeline(LOOKS_LIKE[strategy](), WORKERS)
    assert_labelled(fig)
    assert fig.legends  # what light, solid and × mean


def test_wakeups_by_strategy():
    runs = {name: (make(), None, WORKERS) for name, make in LOOKS_LIKE.items()}
    summary = analysis.summarize_runs(runs)
    assert_labelled(plots.wakeups_by_strategy(summary))
    # a platform without per-thread context switch counts: "n/a" instead of a bar
    unknown = summary.assign(nvcsw_per_accept=np.nan)
    assert_labelled(plots.wakeups_by_strategy(unknown))


@pytest.mark.parametrize("sockets", [("shared",), ("inode:1", "inode:2", "inode:3")])
def test_queue_depth(sockets):
    assert_labelled(plots.queue_depth(queue_samples(sockets)))
    assert_labelled(plots.queue_depth(queue_samples(sockets), backlog_line=False))


def test_latency_cdf():
    fast = synth_client(LOOKS_LIKE["blocking"]())
    slow = synth_client(LOOKS_LIKE["reuseport"]())
    slow["t_done_ns"] = slow["t_done_ns"] + 50_000_000
    fig = plots.latency_cdf({"blocking": fast, "reuseport": slow})
    assert_labelled(fig)
    assert fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_legend().get_texts()) == 2


def test_figures_of_empty_runs_still_render():
    empty_events = synth_events([], WORKERS)
    empty_queue = queue_samples().iloc[0:0]
    failed = synth_client(LOOKS_LIKE["blocking"]()).assign(ok=False)
    for fig in (plots.per_worker_bars(empty_events, WORKERS, "blocking"),
                plots.accept_raster(empty_events, WORKERS),
                plots.worker_timeline(empty_events, WORKERS),
                plots.queue_depth(empty_queue),
                plots.latency_cdf({"all failed": failed}),
                plots.compare_strategies({"blocking": (empty_events, WORKERS)})):
        assert_labelled(fig)
        fig.canvas.draw()


@pytest.mark.parametrize("how_many", [1, 3, 8])
def test_compare_strategies_wraps_into_rows(how_many):
    runs = {name: (make(), WORKERS) for name, make in list(LOOKS_LIKE.items())[:how_many]}
    fig = plots.compare_strategies(runs)
    assert_labelled(fig)
    assert suptitle(fig)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 * how_many  # a raster and a bar chart per strategy
    assert {ax.get_title() for ax in visible} >= set(runs)


def test_compare_strategies_saves_to_png(tmp_path):
    runs = {name: (make(), WORKERS) for name, make in LOOKS_LIKE.items()}
    path = tmp_path / "compare.png"
    plots.compare_strategies(runs).savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_figures_are_not_kept_by_pyplot():
    # Built with Figure(), not plt.subplots(): a notebook shows each figure once, and a loop
    # of plots does not pile up figures in pyplot's memory.
    before = plt.get_fignums()
    plots.accept_raster(LOOKS_LIKE["blocking"](), WORKERS)
    assert plt.get_fignums() == before
