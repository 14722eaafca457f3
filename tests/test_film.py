"""The film: its claims about the wait queue checked as data; what it writes plays offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.animation import FuncAnimation
from PIL import Image

from acceptlab.lab.experiment import Run
from acceptlab.views.film import replay, save_film, script

DATA = Path(__file__).resolve().parents[1] / "data"


def _load(name: str) -> Run:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"reference run {name} is missing from data/")
    return Run.load(path)


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def test_blocking_wakes_the_head_and_the_winner_goes_back_to_the_tail():
    frames = script(_load("blocking-process-light"), max_connections=24)
    assert len(frames) == 4 * 24
    arrivals = [f for f in frames if f.phase == "arrives" and f.winner in f.sleeping]
    backs = [f for f in frames if f.phase == "back" and f.winner in f.sleeping]
    # Recorded data, so these are facts about the run; the margin allows a worker that was
    # still finishing its previous connection when the next one came.
    assert _share([f.sleeping[0] == f.winner for f in arrivals]) >= 0.9
    assert _share([f.sleeping[-1] == f.winner for f in backs]) >= 0.9


def test_epoll_exclusive_winner_is_back_at_the_head():
    frames = script(_load("epoll-exclusive-process-light"), max_connections=24)
    backs = [f for f in frames if f.phase == "back" and f.winner in f.sleeping]
    assert _share([f.sleeping[0] == f.winner for f in backs]) >= 0.9


def test_shared_epoll_wakes_the_most_recent_sleeper():
    frames = script(_load("shared-epoll-thread-light"), max_connections=24)
    arrivals = [f for f in frames if f.phase == "arrives" and f.winner in f.sleeping]
    assert _share([f.sleeping[0] == f.winner for f in arrivals]) >= 0.9


def test_reuseport_has_one_accept_queue_per_listener_and_counters_add_up():
    run = _load("reuseport-process-light")
    frames = script(run, max_connections=12)
    assert all(len(f.queued) == run.workers for f in frames)
    arrives = [f for f in frames if f.phase == "arrives"]
    assert all(f.queued[f.winner] >= 1 for f in arrives)  # it waits in its own listener's queue
    winners = [f.winner for f in arrives]
    assert list(frames[-1].counts) == [winners.count(w) for w in range(run.workers)]


def test_the_html_plays_offline_and_the_gif_has_every_frame(tmp_path):
    animation = replay(_load("poll-process-light"), max_connections=3)
    assert isinstance(animation, FuncAnimation)
    html = save_film(animation, tmp_path / "film.html").read_text()
    assert not re.search(r"https?://", html), "the film would load something from the network"
    assert "font-awesome" not in html
    assert html.count("data:image/png;base64") == 12  # 4 frames per connection, all embedded
    assert 'id="_anim_img' in html and "new Animation(" in html
    gif = save_film(replay(_load("poll-process-light"), max_connections=3), tmp_path / "f.gif")
    with Image.open(gif) as image:
        assert image.n_frames == 12
    with pytest.raises(ValueError, match=r"\.html or \.gif"):
        save_film(animation, tmp_path / "film.mp4")


@pytest.mark.system
def test_the_library_neither_uses_pyplot_nor_picks_a_backend():
    code = ("import sys, matplotlib\n"
            "from acceptlab.lab.experiment import Run\n"
            "from acceptlab.views.film import replay, offline_html\n"
            f"offline_html(replay(Run.load({str(DATA / 'blocking-process-light')!r}), "
            "max_connections=2))\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    env_src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": env_src, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_run_with_nothing_accepted_says_so():
    run = _load("blocking-process-light")
    run.events = run.events[run.events["outcome"] != "accepted"]
    with pytest.raises(ValueError, match="nothing to replay"):
        script(run)


def test_the_replay_command_writes_a_film_and_refuses_what_is_not_a_run(tmp_path, capsys):
    from acceptlab.cli import main

    out = tmp_path / "film.html"
    assert main(["replay", str(DATA / "blocking-process-light"), "--out", str(out),
                 "--connections", "2"]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out
    assert main(["replay", str(tmp_path), "--out", str(out)]) == 2
    assert main(["replay", str(DATA / "blocking-process-light"), "--out", "f.mp4"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("acceptlab: ") for line in errors)
