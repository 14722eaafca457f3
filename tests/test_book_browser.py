"""The course as a reader sees it: the built HTML book opened in a real browser (headless Chromium).

What is checked:

* every lesson page (``build/book/NN_slug.html``) loads in Chromium and shows its figures
  (``<img>`` elements holding ``data:image/png``), at least as many as the executed notebook
  produced, and no error output (no traceback, no stderr output mentioning an error), except
  output a lesson shows on purpose: a cell tagged ``shows-error`` (or one listed in
  ``KNOWN_DEMONSTRATIONS``);
* every exercise's solution is inside its collapsed ``<details>`` block;
* the index links every lesson;
* one page (06) is photographed at 1280x2000 into ``build/book-screenshot.png``, for a person
  to look at;
* the ``http`` demo: a pre-forked pool serving HTTP is loaded several times by the browser, and
  more than one worker must have served it.

The book is built with ``tools/build_book.py`` into a temporary folder, which executes every
notebook (up to two minutes).  If ``build/book`` is already fresh (every page newer than its
notebook, the kit and the tools, and every lesson built without errors), it is reused instead;
set ``ACCEPTLAB_REBUILD_BOOK=1`` to force a new build.

Chromium is found as ``chromium`` on the PATH (the Debian package) or at
``$ACCEPTLAB_CHROMIUM``.  Without it, every test here is skipped, and the skip says so loudly.
Everything stays on this machine: ``file://`` pages and a server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LESSONS = [path.stem for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
SCREENSHOT = ROOT / "build" / "book-screenshot.png"
SCREENSHOT_PAGE = "06_"  # the page photographed for a person to look at
BROWSER_TIMEOUT = 60  # seconds one Chromium run may take
HTTP_LOADS = 4  # browser loads of the http demo
STDERR_MIME = "application/vnd.jupyter.stderr"
# A cell tagged `shows-error` may show a traceback on purpose (nbconvert renders the tag as the
# class `celltag_shows-error`): lesson 02 shows a spawned child failing to find a function that
# was defined in the notebook.
INTENDED_ERROR_TAG = "celltag_shows-error"
KNOWN_DEMONSTRATIONS: list[tuple[str, str]] = []

NO_CHROMIUM = (
    "CHROMIUM IS NOT INSTALLED: the real-browser tests of the HTML book DID NOT RUN. "
    "Install it with `sudo apt-get install chromium` (Debian/Ubuntu; CI does this in .ci/run), "
    "or point ACCEPTLAB_CHROMIUM at a Chromium/Chrome binary, and run the tests again."
)

# One self-contained headless browser per call: its own throwaway profile, no background
# network services, no proxy, and every host name but 127.0.0.1 left unresolved, so the scripts
# nbconvert's pages link from a CDN are never fetched: it loads only files and 127.0.0.1.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--hide-scrollbars",
]

pytestmark = pytest.mark.timeout(900)  # includes building the book when it is not fresh


# -- helpers -------------------------------------------------------------------------------

def chromium_path() -> str | None:
    """The Chromium binary to drive, or None."""
    return os.environ.get("ACCEPTLAB_CHROMIUM") or shutil.which("chromium")


def run_chromium(binary: str, *args: str) -> str:
    """Run one headless Chromium with its own throwaway profile; return what it printed."""
    with tempfile.TemporaryDirectory(prefix="acceptlab-chromium-") as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"chromium {' '.join(args)} exited with {done.returncode}:\n"
                             f"{done.stderr[-2000:]}")
    return done.stdout


def dump_dom(binary: str, url: str) -> str:
    """The page's DOM after it has loaded and run its scripts, as Chromium serialises it."""
    return run_chromium(binary, "--dump-dom", url)


@dataclass
class OutputBlock:
    """One cell output as the page shows it."""

    mime: str  # data-mime-type: 'text/plain', 'application/vnd.jupyter.stderr', ...
    intended: bool  # inside a cell tagged ``shows-error``: an error shown on purpose
    text: str = ""


class PageReader(HTMLParser):
    """Collects what the checks need from a page: images, links, and every cell output's text.

    nbconvert marks each output with the class ``jp-OutputArea-output`` and a
    ``data-mime-type`` (``application/vnd.jupyter.stderr`` for stderr and for
    errors), and each cell with ``celltag_<tag>`` for every tag it has.
    """

    VOID = {"img", "br", "hr", "meta", "link", "input", "source", "wbr", "area", "col",
            "embed", "param", "track", "base"}

    def __init__(self) -> None:
        super().__init__()
        self.png_images = 0
        self.links: list[str] = []
        self.outputs: list[OutputBlock] = []
        # per open element: (inside an intended-error cell, inside an output block)
        self._stack: list[tuple[bool, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "img" and attributes.get("src", "").startswith("data:image/png;base64,"):
            self.png_images += 1
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        if tag in self.VOID:
            return  # no end tag will come
        classes = attributes.get("class", "").split()
        intended, in_output = self._stack[-1] if self._stack else (False, False)
        intended = intended or INTENDED_ERROR_TAG in classes
        if "jp-OutputArea-output" in classes and not in_output:
            self.outputs.append(OutputBlock(attributes.get("data-mime-type", ""), intended))
            in_output = True
        self._stack.append((intended, in_output))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1][1]:
            self.outputs[-1].text += data

    def errors(self, lesson: str) -> list[str]:
        """Outputs that show a traceback, or stderr that mentions an error, not shown on purpose."""
        found = []
        for block in self.outputs:
            bad = "Traceback" in block.text or (block.mime == STDERR_MIME and "Error" in block.text)
            on_purpose = block.intended or any(
                lesson.startswith(prefix) and marker in block.text
                for prefix, marker in KNOWN_DEMONSTRATIONS)
            if bad and not on_purpose:
                found.append(block.text.strip()[-400:])
        return found


def read_page(dom: str) -> PageReader:
    reader = PageReader()
    reader.feed(dom)
    reader.close()
    return reader


def book_is_fresh(book: Path) -> bool:
    """Is ``book`` a complete, error-free build newer than everything it was built from?"""
    times = book / "times.csv"
    if not (book / "index.html").exists() or not times.exists():
        return False
    with times.open() as file:
        rows = {row["notebook"]: row for row in csv.DictReader(file)}
    sources = [*NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"), *(ROOT / "src" / "acceptlab").glob("*.py"),
               *(ROOT / "tools").glob("*.py"), *(ROOT / "tools" / "book_template").rglob("*.*")]
    newest_source = max(path.stat().st_mtime for path in sources)
    for stem in LESSONS:
        page = book / f"{stem}.html"
        row = rows.get(f"{stem}.ipynb")
        if not page.exists() or row is None or row["status"] != "ok":
            return False
        if page.stat().st_mtime < newest_source:
            return False
    return True


def expected_images(book: Path) -> dict[str, int]:
    """Figures per lesson in the executed notebooks, from the build's times.csv."""
    with (book / "times.csv").open() as file:
        return {row["notebook"].removesuffix(".ipynb"): int(row["images"] or 0)
                for row in csv.DictReader(file) if row["notebook"] != "total"}


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium() -> str:
    binary = chromium_path()
    if binary is None or not Path(binary).exists():
        pytest.skip(NO_CHROMIUM)
    return binary


@pytest.fixture(scope="session")
def book(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The built book: {'path', 'returncode', 'log', 'reused'} (no browser: no build either)."""
    existing = ROOT / "build" / "book"
    if not os.environ.get("ACCEPTLAB_REBUILD_BOOK") and book_is_fresh(existing):
        return {"path": existing, "returncode": 0, "log": "reused build/book", "reused": True}
    out = tmp_path_factory.mktemp("book")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    if not (out / "index.html").exists():
        pytest.fail(f"tools/build_book.py wrote no index.html (exit {done.returncode}):\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"path": out, "returncode": done.returncode,
            "log": done.stdout[-3000:] + done.stderr[-3000:], "reused": False}


@pytest.fixture(scope="session")
def pages(chromium: str, book: dict) -> dict[str, str]:
    """Every lesson page and the index, loaded in Chromium (three browsers at a time)."""
    names = [*LESSONS, "index"]
    urls = [(book["path"] / f"{name}.html").resolve().as_uri() for name in names]
    with ThreadPoolExecutor(max_workers=3) as browsers:
        doms = list(browsers.map(lambda url: dump_dom(chromium, url), urls))
    return dict(zip(names, doms))


# -- tests ---------------------------------------------------------------------------------------

def test_the_book_built_without_errors(book: dict) -> None:
    assert book["returncode"] == 0, f"tools/build_book.py failed:\n{book['log']}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_page_shows_its_figures_and_no_errors(lesson: str, book: dict,
                                                   pages: dict[str, str]) -> None:
    page = read_page(pages[lesson])
    assert page.outputs, f"{lesson}: the page shows no cell outputs at all"
    errors = page.errors(lesson)
    assert not errors, f"{lesson}: the page shows error output: {errors}"
    wanted = max(1, expected_images(book["path"]).get(lesson, 1))
    assert page.png_images >= wanted, (
        f"{lesson}: {page.png_images} figures shown in the browser, the notebook made {wanted}")


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_pages_solutions_are_collapsed(lesson: str, pages: dict[str, str]) -> None:
    """Every <details> block holds its solution, so the reader sees it only on a click."""
    blocks = re.findall(r"<details[^>]*>(.*?)</details>", pages[lesson], re.DOTALL)
    empty = [block[:80] for block in blocks
             if len(re.sub(r"<[^>]+>|\s", "", block.split("</summary>", 1)[-1])) < 20]
    assert not empty, (f"{lesson}: {len(empty)} of {len(blocks)} <details> blocks are empty, "
                       f"so their solutions show expanded after them: {empty}")


def test_the_book_reads_offline(book: dict) -> None:
    """No page fetches a script or a stylesheet from the network (a classroom may have none).

    Links a reader may follow (sources cited in the prose) are fine; things the page loads
    by itself are not.
    """
    remote = re.compile(r"<(?:script|img|iframe)[^>]*\ssrc=[\"']?(?:https?:)?//"
                        r"|<link[^>]*\shref=[\"']?(?:https?:)?//|@import\s+url\([\"']?(?:https?:)?//")
    for page in sorted(book["path"].glob("*.html")):
        found = remote.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.name} loads from the network: {found[:3]}"


def test_the_index_links_every_lesson(pages: dict[str, str]) -> None:
    links = set(read_page(pages["index"]).links)
    missing = [lesson for lesson in LESSONS if f"{lesson}.html" not in links]
    assert not missing, f"index.html does not link {missing}"


def test_a_screenshot_of_one_page(chromium: str, book: dict) -> None:
    """Photograph lesson 06 for a person to look at: build/book-screenshot.png."""
    lesson = next((name for name in LESSONS if name.startswith(SCREENSHOT_PAGE)), LESSONS[0])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        run_chromium(chromium, "--window-size=1280,2000", f"--screenshot={shot}",
                     (book["path"] / f"{lesson}.html").resolve().as_uri())
        assert shot.exists() and shot.stat().st_size > 20_000, "the screenshot is missing or blank"
        shutil.copyfile(shot, SCREENSHOT)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_http_demo_is_served_by_more_than_one_worker(chromium: str) -> None:
    """Load the http demo in the browser a few times: the kernel hands the loads to different workers."""
    from acceptlab import WorkerPool

    served = []
    with WorkerPool(protocol="http", workers=4, kind="process") as pool:
        host, port = pool.address
        for _ in range(HTTP_LOADS):
            dom = dump_dom(chromium, f"http://{host}:{port}/")
            match = re.search(r"served by worker (\d+) \(pid (\d+), thread (\d+)\)", dom)
            assert match, f"the page did not name its worker:\n{dom[:500]}"
            served.append(int(match.group(1)))
    assert len(set(served)) > 1, f"every load was served by the same worker: {served}"


def test_the_page_check_catches_errors_and_spares_intended_ones() -> None:
    """The check above, on hand-made nbconvert-style HTML: no browser needed."""
    def cell(text: str, tags: str = "") -> str:
        return (f'<div class="jp-Cell jp-CodeCell {tags}"><div class="jp-OutputArea-child">'
                f'<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="{STDERR_MIME}">'
                f"<pre>{text}</pre></div></div></div>")

    crash = "ZeroDivisionError   Traceback (most recent call last)\nZeroDivisionError: division by zero"
    assert read_page(cell(crash)).errors("05_thundering_herd")
    assert read_page(cell("OSError: [Errno 98] Address already in use")).errors("05_x")
    assert not read_page(cell("a harmless progress line")).errors("05_x")
    assert not read_page(cell(crash, INTENDED_ERROR_TAG)).errors("05_x")
