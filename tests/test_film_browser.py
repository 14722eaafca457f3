"""The wait-queue film plays in a real browser, offline, on the first click.

A film is the kit's player (:mod:`acceptlab.views.film_player`) with every frame
embedded as a PNG.  "It shows" is checked before anything is pressed: the
picture is on the page with its height.  "It plays" is checked from what
Chromium shows: a script presses play ONCE on every player, Chromium runs a
minute of virtual time, and the picture must then show a later frame than the
first.  "Offline" is checked from Chromium's own net log: the page makes no
request to another host.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import frames_of, load_page, plays, remote_loads, shown_images

from acceptlab.lab.experiment import Run
from acceptlab.views.film import offline_html, replay

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.system  # starts Chromium


@pytest.mark.parametrize("strategy", ["blocking", "epoll-exclusive", "poll"])
def test_a_film_of_a_recorded_run_plays_offline(chromium: str, tmp_path: Path, strategy: str):
    run = Run.load(ROOT / "data" / f"trace-{strategy}-process-light")
    page = tmp_path / f"{strategy}.html"
    page.write_text(f"<!DOCTYPE html><html><body>{offline_html(replay(run, max_connections=6))}"
                    f"</body></html>")
    assert not remote_loads(page.read_text())
    moved, remote = plays(chromium, page)
    assert moved, f"the {strategy} film did not move past its first frame"
    assert not remote, f"the film asked the network for {remote}"


def test_the_check_notices_a_film_that_does_not_play(chromium: str, tmp_path: Path):
    """Without the play button pressed the player stays on frame 0: the check must say so."""
    run = Run.load(ROOT / "data" / "trace-blocking-process-light")
    html = offline_html(replay(run, max_connections=4))
    page = tmp_path / "still.html"
    page.write_text(f"<!DOCTYPE html><html><body>{html}</body></html>")
    loaded = load_page(chromium, page.as_uri(), settle_ms=5_000)
    shown = shown_images(loaded.dom)
    assert shown and shown[0] == frames_of(html)[0]
