"""Headless Chromium for the tests of what a reader sees: the HTML book and the slide decks.

One self-contained browser per call: its own throwaway profile, no background network
services, no proxy, and every host name but 127.0.0.1 left unresolved.  Whatever a page tries
to fetch from the network is still *seen*: each run writes Chromium's net log, and
``LoadedPage.remote_requests`` lists every http(s)/ws request the page itself started (the
browser's own housekeeping requests, which have no page origin, are not counted).  So "no
network request" is checked from what the browser did, not only from the page's source.

Chromium is found as ``chromium`` on the PATH (the Debian package) or at
``$ACCEPTLAB_CHROMIUM``; tests that need it skip with ``NO_CHROMIUM`` when it is missing.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import chromium as headless  # noqa: E402  (tools/chromium.py: the flags, finding the binary)

NO_CHROMIUM = (
    "CHROMIUM IS NOT INSTALLED: the real-browser tests DID NOT RUN. "
    "Install it with `sudo apt-get install chromium` (Debian/Ubuntu; CI does this in .ci/run), "
    "or point ACCEPTLAB_CHROMIUM at a Chromium/Chrome binary, and run the tests again."
)

# What a page's source would load by itself from another host (links a reader may follow are
# fine): <script|img|iframe src=//...>, <link href=//...>, CSS @import url(//...).
REMOTE_LOAD = re.compile(
    r"<(?:script|img|iframe)[^>]*\ssrc=[\"']?(?:https?:)?//"
    r"|<link[^>]*\shref=[\"']?(?:https?:)?//|@import\s+url\([\"']?(?:https?:)?//")

NETWORK_SCHEMES = {"http", "https", "ws", "wss"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None."""
    return headless.find_chromium()


@dataclass
class LoadedPage:
    """What one headless load of a page gave: its DOM after scripts ran, and its own requests."""

    dom: str
    remote_requests: list[str]


def _page_requests(netlog: Path) -> list[str]:
    """URLs of the network requests pages made, from a Chromium net log.

    A request a page made carries the page's origin as its ``initiator`` (``null`` for a
    file:// page); the browser's own requests (component updates, accounts) say
    ``not an origin`` and are left out.
    """
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip()
    try:
        log = json.loads(text)
    except ValueError:  # the browser was stopped before it closed the JSON
        log = json.loads(text.rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params", {})
        if event.get("type") == start_job and "url" in params \
                and params.get("initiator") != "not an origin":
            urls.append(params["url"])
    return urls


def run_chromium(binary: str, *args: str) -> LoadedPage:
    """Run one headless Chromium with its own throwaway profile and net log.

    Returns what it printed to stdout (the DOM, with ``--dump-dom``) and the remote
    requests pages made, loopback excepted.
    """
    with tempfile.TemporaryDirectory(prefix="acceptlab-netlog-") as scratch:
        netlog = Path(scratch) / "netlog.json"
        try:
            done = headless.run_chromium(binary, f"--log-net-log={netlog}", *args,
                                         profile=Path(scratch) / "profile")
        except headless.ChromiumFailed as exc:
            raise AssertionError(str(exc)) from None
        if not netlog.exists():
            raise AssertionError("chromium wrote no net log: cannot tell whether the page "
                                 "used the network")
        requests = _page_requests(netlog)
    return LoadedPage(done.stdout, [url for url in requests if _is_remote(url)])


def _is_remote(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in NETWORK_SCHEMES and parts.hostname not in LOOPBACK_HOSTS


def load_page(binary: str, url: str, *, settle_ms: int = 0) -> LoadedPage:
    """Load ``url``, let its scripts run (``settle_ms`` more of virtual time), dump its DOM."""
    extra = [f"--virtual-time-budget={settle_ms}"] if settle_ms else []
    return run_chromium(binary, *extra, "--dump-dom", url)


def remote_loads(html_text: str) -> list[str]:
    """Tags in a page's source that would load something from another host."""
    return REMOTE_LOAD.findall(html_text)


# -- films: acceptlab's film player (acceptlab.views.film.offline_html) -------------------------

# After the page loads: note how tall each film's picture is BEFORE anyone presses anything
# (a picture that only appears on the first click fails a learner), then press play ONCE on
# each film, as a learner's first click would.
PRESS_PLAY = ("<script>addEventListener('load', () => setTimeout(() => {"
              "for (const film of document.querySelectorAll('.acceptlab-film')) {"
              "  const img = film.querySelector('img.acceptlab-film-frame');"
              "  img.setAttribute('data-height-before-play', img.getBoundingClientRect().height);"
              "  img.setAttribute('data-natural-width', img.naturalWidth);"
              "  film.querySelector('button[data-action=play]').click();"
              "}}, 50));</script>")
FRAME = re.compile(r'"(data:image/png;base64,[A-Za-z0-9+/=]*)"')
PLAYER = re.compile(r'<div class="acceptlab-film".*?</script>', re.S)
PICTURE = re.compile(r'<img\b[^>]*\bclass="acceptlab-film-frame"[^>]*>')


def frames_of(html: str) -> list[str]:
    """The frames of every film player in ``html``, in order (its first picture not repeated)."""
    frames = []
    for player in PLAYER.findall(html):
        script = player[player.index("<script>"):]
        frames += FRAME.findall(script)
    return frames


def _attribute(tag: str, name: str) -> str:
    found = re.search(rf'\b{name}="([^"]*)"', tag)  # nbconvert may reorder the attributes
    return found.group(1) if found else ""


def shown_images(dom: str) -> list[str]:
    """What each film player's picture shows now."""
    return [_attribute(tag, "src") for tag in PICTURE.findall(dom)]


def heights_before_play(dom: str) -> list[float]:
    """How tall (CSS pixels) each film's picture was on the page before play was pressed."""
    return [float(_attribute(tag, "data-height-before-play") or 0)
            for tag in PICTURE.findall(dom)]


def plays(binary: str, page: Path) -> tuple[bool, list[str]]:
    """Load ``page``, press play once on every film; (every picture showed and moved on, requests).

    "Showed": before the click, each picture was on the page with a height.  "Moved on":
    after a minute of Chromium's virtual time, each shows a later frame than its first.
    """
    html = page.read_text(encoding="utf-8")
    frames = frames_of(html)
    assert len(frames) >= 2, f"{page.name}: no film with frames in it"
    played = page.with_name(page.stem + "-played.html")
    played.write_text(html.replace("</body>", PRESS_PLAY + "</body>")
                      if "</body>" in html else html + PRESS_PLAY, encoding="utf-8")
    loaded = load_page(binary, played.as_uri(), settle_ms=60_000)
    shown = shown_images(loaded.dom)
    visible = heights_before_play(loaded.dom)
    moved = (bool(shown) and all(height > 0 for height in visible)
             and all(src != frames[0] and src in frames for src in shown))
    return moved, loaded.remote_requests


# -- figures: every picture of a page, as a reader at the book's width sees it -----------------

PAGE_WIDTH = 900  # CSS pixels: the book's page on a laptop, and the width the figures are made for
MEASURE = ("<script>addEventListener('load', () => setTimeout(() => {"
           "document.body.setAttribute('data-page-width', document.documentElement.clientWidth);"
           "for (const img of document.querySelectorAll('img')) {"
           "  const box = img.getBoundingClientRect();"
           "  img.setAttribute('data-shown', [box.left, box.right, box.width, box.height,"
           "                                  img.naturalWidth].join(' '));"
           "}}, 50));</script>")


@dataclass
class ShownFigure:
    """One picture of a page as the browser laid it out (CSS pixels)."""

    left: float
    right: float
    width: float
    height: float
    natural_width: float


def figures_as_shown(binary: str, page: Path, *, width: int = PAGE_WIDTH) -> tuple[float,
                                                                                    list[ShownFigure]]:
    """(the page's width, every embedded PNG figure as laid out) in a ``width``-pixel window."""
    html = page.read_text(encoding="utf-8")
    measured = page.with_name(page.stem + "-measured.html")
    measured.write_text(html.replace("</body>", MEASURE + "</body>")
                        if "</body>" in html else html + MEASURE, encoding="utf-8")
    loaded = run_chromium(binary, f"--window-size={width},1600", "--virtual-time-budget=5000",
                          "--dump-dom", measured.as_uri())
    body = re.search(r'<body\b[^>]*\bdata-page-width="([\d.]+)"', loaded.dom)
    shown = []
    for tag in re.findall(r'<img\b[^>]*>', loaded.dom):
        if 'src="data:image/png' in tag and "data-shown=" in tag \
                and "acceptlab-film-frame" not in tag:
            shown.append(ShownFigure(*map(float, _attribute(tag, "data-shown").split())))
    return (float(body.group(1)) if body else 0.0), shown
