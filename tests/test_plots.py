"""Every figure of acceptlab.views.plots renders, on small synthetic runs of several strategies.

These tests check that a figure is drawn and labelled, not what it looks
like: the numbers behind it are tested in test_analysis.py.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display needed: draw into memory

from types import SimpleNamespace  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from acceptlab import analysis, plots  # noqa: E402
from acceptlab.views import style  # noqa: E402
# The synthetic runs are shared with the analysis tests (tests/ is on the path: pyproject.toml).
from helpers import (  # noqa: E402
    one_worker,
    random_sequence,
    round_robin,
    synth_client,
    synth_events,
)

WORKERS = 4

# What each strategy looks like under light load (analysis.expected_share), as a synthetic run.
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
    """A figure a learner can read: it has axes, each axis that shows tick labels is named,
    and the figure has a title."""
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    fig.canvas.draw()  # tick labels exist once drawn
    for ax in visible:
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if any(t.get_visible() and t.get_text() for t in axis.get_ticklabels()):
                assert label, f"{ax.get_title()!r}: its {axis.axis_name} axis shows ticks unnamed"
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


def raster_points(fig: Figure) -> np.ndarray:
    """The (x, y) of the squares an accept raster drew."""
    return fig.axes[0].collections[0].get_offsets()


def test_accept_raster_zooms_on_the_first_two_dozen_so_order_shows():
    events = synth_events(round_robin(WORKERS, 50), WORKERS)
    fig = plots.accept_raster(events, WORKERS)
    points = raster_points(fig)
    assert len(points) == plots.ORDER_ZOOM == 24
    assert points[:, 1].tolist() == round_robin(WORKERS, 6)  # the staircase, in order
    path = fig.axes[0].lines[0].get_ydata()  # the line that joins them in accept order
    assert list(path) == round_robin(WORKERS, 6)
    assert "first 24 of 200" in fig.axes[0].get_title()
    wide = plots.accept_raster(events, WORKERS, max_connections=200)
    assert len(raster_points(wide)) == 200 and not wide.axes[0].lines  # no path through 200


def test_accept_raster_takes_a_title_so_two_runs_can_differ():
    events = synth_events(round_robin(WORKERS, 12), WORKERS)
    default = plots.accept_raster(events, WORKERS).axes[0].get_title()
    assert "synthetic-blocking" in default  # the run's label, not only its strategy
    fig = plots.accept_raster(events, WORKERS, title="no gap between connections")
    assert fig.axes[0].get_title() == "no gap between connections"


def swatch_colours(legend) -> list[tuple]:
    """The fill colours of the little rectangles a legend draws, in order."""
    return [patch.get_facecolor() for patch in legend.findobj(Rectangle)
            if patch.get_visible() and patch is not legend.legendPatch]


def test_per_worker_bars_legend_swatch_has_every_workers_colour():
    fig = plots.per_worker_bars(LOOKS_LIKE["blocking"](), WORKERS)
    colours = swatch_colours(fig.axes[0].get_legend())
    assert colours[:WORKERS] == [plots.worker_colour(w) for w in range(WORKERS)]


@pytest.mark.parametrize("strategy", ["blocking", "poll", "shared-epoll"])
def test_worker_timeline(strategy):
    fig = plots.worker_timeline(LOOKS_LIKE[strategy](), WORKERS)
    assert_labelled(fig)
    assert fig.legends  # what light, solid and × mean


def test_timeline_legend_swatches_are_the_workers_colours():
    fig = plots.worker_timeline(LOOKS_LIKE["blocking"](), WORKERS)
    texts = [text.get_text() for text in fig.legends[0].get_texts()]
    assert texts[:2] == ["waiting for a connection", "serving a connection (accept → done)"]
    light = [to_rgba(plots.worker_colour(w), 0.25) for w in range(WORKERS)]
    solid = [to_rgba(plots.worker_colour(w)) for w in range(WORKERS)]
    assert swatch_colours(fig.legends[0]) == light + solid  # no grey stand-in


def bar_widths(fig: Figure, lane: int) -> list[float]:
    """Widths of every bar drawn in a timeline lane (waits and conversations)."""
    widths = []
    for bars in fig.axes[0].collections:
        for path in bars.get_paths():
            x, y = path.vertices[:, 0], path.vertices[:, 1]
            if y.min() <= lane <= y.max():
                widths.append(float(x.max() - x.min()))
    return widths


def test_timeline_draws_a_short_conversation_wide_enough_to_see():
    # One 1 µs conversation in a run that lasts a second: 1e-6 of the axis, drawn 0.4 % wide.
    events = synth_events([0, 1], 2, gap_ns=1_000_000_000, service_ns=1_000)
    fig = plots.worker_timeline(events, 2)
    span = fig.axes[0].dataLim.width
    assert min(bar_widths(fig, 0)) >= 0.004 * span * 0.99
    exact = plots.worker_timeline(events, 2, min_width=0)
    assert min(bar_widths(exact, 0)) < 0.0001 * span


def test_timeline_marks_kills_and_replacements():
    events = synth_events(round_robin(2, 4), 2)
    # worker 1 killed 0.5 ms after the third connection; its replacement (generation 1)
    # takes the last connection of the lane
    killed_at = int(events["t_done_ns"].dropna().iloc[2]) + 500_000
    last = events.index[events["worker"] == 1][-1]
    events.loc[last, "generation"] = 1
    fig = plots.worker_timeline(events, 2, kills=[(1, killed_at)])
    texts = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "worker killed" in texts and "replacement starts waiting" in texts
    start = int(events["t_wait_ns"].min())
    kill_marks = [line for line in fig.axes[0].lines if line.get_color() == "red"
                  and line.get_marker() != ">"]
    assert kill_marks[0].get_xdata()[0] == pytest.approx((killed_at - start) / 1e6)
    assert kill_marks[0].get_ydata()[0] == 1
    # a pool's Replacement records work as well as (slot, t_ns) pairs
    record = SimpleNamespace(slot=1, t_detected_ns=killed_at)
    again = plots.worker_timeline(events, 2, kills=[record])
    assert "worker killed" in [text.get_text() for text in again.legends[0].get_texts()]
    quiet = plots.worker_timeline(synth_events(round_robin(2, 4), 2), 2)
    assert "worker killed" not in [text.get_text() for text in quiet.legends[0].get_texts()]


def test_timeline_takes_a_title():
    fig = plots.worker_timeline(LOOKS_LIKE["blocking"](), WORKERS, title="after the kill")
    assert fig.axes[0].get_title() == "after the kill"


def test_wakeups_by_strategy():
    runs = {name: (make(), None, WORKERS) for name, make in LOOKS_LIKE.items()}
    summary = analysis.summarize_runs(runs)
    assert_labelled(plots.wakeups_by_strategy(summary))
    # a platform without per-thread context switch counts: "n/a" instead of a bar
    unknown = summary.assign(wakeups_per_accept=np.nan)
    fig = plots.wakeups_by_strategy(unknown)
    assert_labelled(fig)
    assert "n/a" in [text.get_text() for text in fig.axes[0].texts]


def test_wakeups_by_strategy_draws_context_switches_as_wakeups():
    # poll: each connection woke 3 workers in the kernel, but only the winner's wait returned
    events = synth_events(random_sequence(WORKERS, 40, 2), WORKERS, "poll")
    events["nvcsw"] = 3
    summary = analysis.summarize_runs({"poll/process": (events, WORKERS)})
    fig = plots.wakeups_by_strategy(summary)
    ax = fig.axes[0]
    (bar,) = ax.patches  # one strategy, one kind: one horizontal bar, as long as the wakeups
    assert bar.get_width() == pytest.approx(3.0)
    marks = {line.get_marker(): line.get_xdata()[0] for line in ax.lines if line.get_marker()
             in ("D", "x")}
    assert marks == {"D": 1.0, "x": 0.0}  # returns and EAGAIN, on the same row
    assert [t.get_text() for t in ax.get_yticklabels()] == ["poll"]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert any("context switches" in text for text in legend)


def test_wakeups_by_strategy_puts_kinds_side_by_side_in_their_colours():
    runs = {f"{name}/{kind}": (synth_events(round_robin(WORKERS, 6), WORKERS, name), WORKERS)
            for name in ("blocking", "poll", "reuseport") for kind in ("process", "thread")}
    fig = plots.wakeups_by_strategy(analysis.summarize_runs(runs))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["blocking", "poll", "reuseport"]
    colours = [bar.get_facecolor() for bar in ax.patches]
    assert len(colours) == 6
    assert colours[0::2] == [to_rgba(style.kind_colour("process"))] * 3
    assert colours[1::2] == [to_rgba(style.kind_colour("thread"))] * 3
    width, height = fig.get_size_inches()
    assert width / height <= style.MAX_ASPECT and height / width <= style.MAX_ASPECT


@pytest.mark.parametrize("sockets", [("shared",), ("inode:1", "inode:2", "inode:3")])
def test_queue_depth(sockets):
    assert_labelled(plots.queue_depth(queue_samples(sockets)))
    assert_labelled(plots.queue_depth(queue_samples(sockets), backlog_line=False))


def queue_legend(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.legends[0].get_texts()]


def test_queue_depth_labels_sockets_by_worker_or_by_order_never_by_inode():
    queue = queue_samples(("inode:3681251", "inode:3681299", "inode:3681302"))
    fig = plots.queue_depth(queue, owners={"inode:3681299": 2}, backlog_line=False)
    labels = queue_legend(fig)
    assert labels == ["listener 1 (whose worker the data do not show): waiting for accept()",
                      "worker 2's socket: waiting for accept()",
                      "listener 2 (whose worker the data do not show): waiting for accept()"]
    assert not any("inode" in label for label in labels)
    assert fig.axes[0].lines[1].get_color() == plots.worker_colour(2)  # the worker's colour
    shared = queue_legend(plots.queue_depth(queue_samples(("shared",)), backlog_line=False))
    assert shared == ["shared socket: waiting for accept()"]


def test_queue_depth_finds_the_owners_in_the_events_when_given_them():
    # the reference run of lesson 06: the slow worker 0's socket is the one that fills
    from pathlib import Path

    from acceptlab.lab.experiment import Run

    run = Run.load(Path(__file__).resolve().parents[1] / "data" / "reuseport-process-slowworker")
    labels = queue_legend(plots.queue_depth(run.queue, events=run.events))
    assert "worker 0's socket: waiting for accept()" in labels
    blind = queue_legend(plots.queue_depth(run.queue))
    assert not any("worker 0" in label for label in blind)


def test_latency_cdf():
    fast = synth_client(LOOKS_LIKE["blocking"]())
    slow = synth_client(LOOKS_LIKE["reuseport"]())
    slow["t_done_ns"] = slow["t_done_ns"] + 50_000_000
    fig = plots.latency_cdf({"blocking": fast, "reuseport": slow})
    assert_labelled(fig)
    assert fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_legend().get_texts()) == 2


def test_latency_cdf_legend_is_the_analysis_table():
    # An even count of connections: np.median and the table agree, but a legend built any
    # other way than from analysis.latency would show it on an odd count; take the table's.
    client = synth_client(LOOKS_LIKE["reuseport"]())
    client["t_done_ns"] = client["t_done_ns"] + pd.array(np.arange(len(client)) * 1_000_000,
                                                         dtype="Int64")
    table = analysis.latency(client).iloc[0]
    legend = plots.latency_cdf({"run": client}).axes[0].get_legend().get_texts()[0].get_text()
    assert legend == f"run: p50 {plots.costs._ms(table['p50_ms'])}, p99 {plots.costs._ms(table['p99_ms'])}"


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
def test_compare_strategies_gives_each_run_a_row(how_many):
    runs = {name: (make(), WORKERS) for name, make in list(LOOKS_LIKE.items())[:how_many]}
    fig = plots.compare_strategies(runs)
    assert_labelled(fig)
    assert suptitle(fig)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 * how_many  # a raster and a split per strategy, one row each
    assert [ax.get_ylabel() for ax in visible[0::2]] == list(runs)


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
