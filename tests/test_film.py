"""The film: its claims about the wait queue checked as data; what it writes plays offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import io

import pytest
from matplotlib.figure import Figure
from PIL import Image

from acceptlab.lab.experiment import Run
from acceptlab.views import style
from acceptlab.views.film import (PHASES, Film, caption, offline_html, replay, save_film, script,
                                  still_strip)

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
    assert len(frames) == len(PHASES) * 24 == 3 * 24
    arrivals = [f for f in frames if f.phase == "wakes" and f.winner in f.sleeping]
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
    arrivals = [f for f in frames if f.phase == "wakes" and f.winner in f.sleeping]
    assert _share([f.sleeping[0] == f.winner for f in arrivals]) >= 0.9


def test_reuseport_has_one_accept_queue_per_listener_and_counters_add_up():
    run = _load("reuseport-process-light")
    frames = script(run, max_connections=12)
    assert all(len(f.queued) == run.workers for f in frames)
    arrives = [f for f in frames if f.phase == "wakes"]
    assert all(f.queued[f.winner] >= 1 for f in arrives)  # it waits in its own listener's queue
    winners = [f.winner for f in arrives]
    assert list(frames[-1].counts) == [winners.count(w) for w in range(run.workers)]


def test_the_html_shows_its_first_frame_without_a_script_and_plays_offline(tmp_path):
    film = replay(_load("poll-process-light"), max_connections=3)
    assert isinstance(film, Film)
    html = save_film(film, tmp_path / "film.html").read_text()
    assert not re.search(r"https?://", html), "the film would load something from the network"
    assert "font-awesome" not in html and "<i class=" not in html  # no icon font
    frames = re.findall(r'"(data:image/png;base64,[^"]*)"', html.split("<script>", 1)[1])
    assert len(frames) == 3 * 3  # three frames per connection, all embedded
    # The picture is in the markup with its first frame and its size: JupyterLab lays it out
    # at once, even when its cell is off screen when the output arrives (issue 28).
    picture = re.search(r'<img class="acceptlab-film-frame"[^>]*>', html).group(0)
    assert f'src="{frames[0]}"' in picture
    width, height = Image.open(io.BytesIO(film.pngs()[0])).size
    assert f'width="{width}"' in picture and f'height="{height}"' in picture
    # Every control is a button drawn with inline SVG, each named for a screen reader.
    buttons = re.findall(r"<button[^>]*>.*?</button>", html)
    assert len(buttons) == 5 and all("<svg" in b and "aria-label=" in b for b in buttons)
    assert [c for c in film.captions] and 'alt="' in picture


def test_a_frame_reads_at_the_books_width_and_is_drawn_once():
    film = replay(_load("blocking-process-light"), max_connections=2)
    pngs = film.pngs()
    assert film.pngs() is pngs  # offline_html, save_film and _repr_html_ reuse the drawing
    width, height = Image.open(io.BytesIO(pngs[0])).size
    assert width >= 880 and width / height <= style.MAX_ASPECT
    smallest = min(text.get_fontsize() for text in film.figure.findobj(
        lambda artist: hasattr(artist, "get_fontsize") and artist.get_visible()
        and getattr(artist, "get_text", lambda: "")()))
    assert style.shown_size(smallest, film.figure.get_figwidth()) >= style.MIN_FONT_PT
    assert offline_html(film) and film._repr_html_()


def test_the_gif_has_every_frame(tmp_path):
    film = replay(_load("poll-process-light"), max_connections=3)
    gif = save_film(film, tmp_path / "f.gif")
    with Image.open(gif) as image:
        assert image.n_frames == 9
    with pytest.raises(ValueError, match=r"\.html or \.gif"):
        save_film(film, tmp_path / "film.mp4")


def test_captions_say_what_the_frame_shows():
    run = _load("blocking-process-light")
    frames = script(run, max_connections=12)
    words = [caption(frame, "tail") for frame in frames]
    woken_head = [w for f, w in zip(frames, words) if f.phase == "wakes"
                  and f.sleeping and f.sleeping[0] == f.winner and f.woken == (f.winner,)]
    assert woken_head and all("the longest sleeper, at the head of the queue" in w
                              for w in woken_head)
    assert all(f"worker {f.winner}" in w for f, w in zip(frames, words) if f.phase == "wakes"
               and f.sleeping)
    backs = [w for f, w in zip(frames, words) if f.phase == "back" and f.sleeping
             and f.sleeping[-1] == f.winner and len(f.sleeping) > 1]
    assert backs and all("joins the tail of the queue" in w for w in backs)
    assert all(w.startswith(f"Worker {f.winner} accepts connection {f.connection + 1}")
               for f, w in zip(frames, words) if f.phase == "taken")


def test_a_herds_caption_names_everyone_woken():
    frames = script(_load("trace-poll-process-light"), max_connections=6)
    herd = [f for f in frames if f.phase == "wakes" and len(set(f.woken) & set(f.sleeping)) > 1]
    assert herd
    for frame in herd:
        assert "they race for it" in caption(frame, "all")


def test_an_epoll_exclusive_winner_is_captioned_back_at_the_head():
    frames = script(_load("epoll-exclusive-process-light"), max_connections=12)
    backs = [f for f in frames if f.phase == "back" and f.sleeping and f.sleeping[0] == f.winner
             and len(f.sleeping) > 1]
    assert backs and all("back at the head" in caption(f, "fixed") for f in backs)


def test_the_still_strip_shows_the_first_connections_step_by_step():
    run = _load("blocking-process-light")
    fig = still_strip(run)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 6
    titles = [ax.get_title(loc="left") for ax in panels]
    assert [t.split(".")[0] for t in titles] == ["1", "2", "3", "4", "5", "6"]
    assert "arrives" in titles[0] and "accepts" in titles[1] and "waits again" in titles[2]
    four = still_strip(run, steps=[0, 3, 6, 9])
    assert len([ax for ax in four.axes if ax.get_visible()]) == 4
    with pytest.raises(ValueError, match="steps"):
        still_strip(run, steps=[])


@pytest.mark.system  # starts a Python process, to see what a fresh interpreter imports
def test_the_library_neither_uses_pyplot_nor_picks_a_backend():
    code = ("import sys, matplotlib\n"
            "from acceptlab.lab.experiment import Run\n"
            "from acceptlab.views.film import replay, offline_html, still_strip\n"
            f"offline_html(replay(Run.load({str(DATA / 'blocking-process-light')!r}), "
            "max_connections=2))\n"
            f"still_strip(Run.load({str(DATA / 'blocking-process-light')!r})).savefig('/dev/null', "
            "format='png')\n"
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
