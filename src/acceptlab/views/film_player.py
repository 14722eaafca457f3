"""The film's HTML player: frames, a slider and five buttons, with no network and no icon font.

Why not matplotlib's ``to_jshtml``: its ``<img>`` has no picture until its script sets one.
In JupyterLab 4 (default "contentVisibility" windowing), when Run All has scrolled past the
cell by then, Chromium never lays that picture out again: it stays 0 px high until a click.
Here the first frame and its size are in the markup, so the picture shows before any script
runs (JupyterLab, the book, a file opened from disk, an untrusted notebook), and the buttons
are inline SVG (matplotlib's link a CDN icon font, which a classroom may not reach).
"""

from __future__ import annotations

import html as html_text
import json
import uuid
from typing import Sequence

__all__ = ["player_html"]


# Inline SVG icons (24 x 24): no icon font to fetch, so every button draws offline.
_ICONS = {
    "first": '<path d="M5 5h2.5v14H5zM19 5v14L8.5 12z"/>',
    "previous": '<path d="M17 5v14L6 12z"/>',
    "play": '<path d="M7 5v14l12-7z"/>',
    "pause": '<path d="M6 5h4v14H6zM14 5h4v14h-4z"/>',
    "next": '<path d="M7 5v14l11-7z"/>',
    "last": '<path d="M16.5 5H19v14h-2.5zM5 5v14l10.5-7z"/>',
}
_BUTTONS = [("first", "first frame"), ("previous", "previous frame"),
            ("play", "Play"), ("next", "next frame"), ("last", "last frame")]

_STYLE = """<style>
.acceptlab-film { display: inline-block; max-width: 100%; font-family: sans-serif; }
.acceptlab-film img.acceptlab-film-frame { display: block; max-width: 100%; height: auto; }
.acceptlab-film-controls { display: flex; align-items: center; gap: 6px; margin: 6px 0;
  flex-wrap: wrap; }
.acceptlab-film-controls button { display: inline-flex; align-items: center; gap: 4px;
  padding: 3px 8px; font-size: 14px; cursor: pointer; }
.acceptlab-film-controls svg { width: 18px; height: 18px; fill: currentColor; }
.acceptlab-film-controls input[type=range] { flex: 1 1 200px; }
.acceptlab-film-counter { font-size: 14px; min-width: 7em; }
</style>"""

# The player: the frames, a slider, the buttons.  It finds its own container (the script's
# parent), so two films on a page do not meet, and needs no global name.
_SCRIPT = """<script>
(function () {
  var root = (document.currentScript && document.currentScript.parentNode)
             || document.getElementById("%(id)s");
  var frames = %(frames)s, captions = %(captions)s, interval = %(interval)d;
  var img = root.querySelector("img.acceptlab-film-frame");
  var slider = root.querySelector("input[type=range]");
  var counter = root.querySelector(".acceptlab-film-counter");
  var play = root.querySelector("button[data-action=play]");
  var icons = {play: %(play_icon)s, pause: %(pause_icon)s};
  var current = 0, timer = null;
  function show(n) {
    current = Math.max(0, Math.min(frames.length - 1, n));
    img.src = frames[current];
    img.alt = captions[current];
    slider.value = current;
    counter.textContent = "step " + (current + 1) + " of " + frames.length;
  }
  function label(name) {  // the button says what a click does now: Play, or Pause
    play.title = name;
    play.setAttribute("aria-label", name);
  }
  function stop() {
    if (timer) { clearInterval(timer); timer = null; }
    play.innerHTML = icons.play + " play";
    label("Play");
  }
  function start() {
    if (current >= frames.length - 1) show(0);
    play.innerHTML = icons.pause + " pause";
    label("Pause");
    timer = setInterval(function () {
      if (current >= frames.length - 1) { stop(); } else { show(current + 1); }
    }, interval);
  }
  var actions = {
    first: function () { stop(); show(0); },
    previous: function () { stop(); show(current - 1); },
    play: function () { if (timer) { stop(); } else { start(); } },
    next: function () { stop(); show(current + 1); },
    last: function () { stop(); show(frames.length - 1); }
  };
  root.querySelectorAll("button[data-action]").forEach(function (button) {
    button.addEventListener("click", actions[button.getAttribute("data-action")]);
  });
  slider.addEventListener("input", function () { stop(); show(parseInt(slider.value, 10)); });
  root.acceptlabFilm = {play: actions.play, show: show};
  show(0);
})();
</script>"""


def _svg(name: str) -> str:
    return (f'<svg viewBox="0 0 24 24" aria-hidden="true">{_ICONS[name]}</svg>')


def player_html(sources: Sequence[str], captions: Sequence[str], *, width: int, height: int,
                interval: int) -> str:
    """An HTML fragment that shows ``sources[0]`` at once and plays the frames on one click.

    Args:
        sources: every frame as a ``data:`` URL.
        captions: one sentence per frame (the picture's ``alt`` text).
        width, height: a frame's size in pixels (the picture's size before it loads).
        interval: milliseconds per frame when playing.
    """
    ident = f"acceptlab-film-{uuid.uuid4().hex}"
    buttons = "".join(
        f'<button type="button" data-action="{name}" title="{label}" aria-label="{label}">'
        f'{_svg(name)}{" play" if name == "play" else ""}</button>'
        for name, label in _BUTTONS)
    player = _SCRIPT % {
        "id": ident, "frames": json.dumps(list(sources)), "captions": json.dumps(list(captions)),
        "interval": interval, "play_icon": json.dumps(_svg("play")),
        "pause_icon": json.dumps(_svg("pause"))}
    return (f'{_STYLE}<div class="acceptlab-film" id="{ident}">'
            f'<img class="acceptlab-film-frame" src="{sources[0]}" width="{width}" '
            f'height="{height}" alt="{html_text.escape(captions[0])}">'
            f'<div class="acceptlab-film-controls">{buttons}'
            f'<input type="range" min="0" max="{len(sources) - 1}" value="0" step="1" '
            f'aria-label="frame">'
            f'<span class="acceptlab-film-counter">step 1 of {len(sources)}</span></div>'
            f'{player}</div>')
