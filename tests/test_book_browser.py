"""The course as a reader sees it: the built HTML book opened in a real browser (headless Chromium).

What is checked:

* every lesson page (``build/book/NN_slug.html``) loads in Chromium and shows its figures
  (``<img>`` elements holding ``data:image/png``), at least as many as the executed notebook
  produced, and no error output (no traceback, no stderr output mentioning an error), except
  output a lesson shows on purpose: a cell tagged ``shows-error`` (or one listed in
  ``KNOWN_DEMONSTRATIONS``);
* every exercise's solution is inside its collapsed ``<details>`` block;
* the index links every lesson, in course order, and every page links the previous lesson,
  the contents and the next lesson (a small course built from fixture notebooks checks the
  same without a browser);
* no page loads anything from the network: neither its source nor, in the browser, a request
  it made (Chromium's net log);
* one page (06) is photographed at 1280x2000 into ``build/book-screenshot.png``, for a person
  to look at;
* at the book's width (900 CSS pixels), every figure of every page is on screen with a
  height, inside the page (none cut off at the right edge), and no smaller than half its own
  size; every film shows its picture before any click and plays on the first;
* the ``http`` demo: a pre-forked pool serving HTTP is loaded several times by the browser, and
  more than one worker must have served it.

The book is written by ``tools/build_book.py``'s page writer into a temporary folder, from
the session's one run of every lesson (the ``course`` fixture of tests/conftest.py, whose
runs tests/test_notebooks.py checks: the course is executed once per session).  If
``build/book`` is already fresh (every page newer than its notebook, the kit and the tools,
and every lesson built without errors), it is reused instead; set
``ACCEPTLAB_REBUILD_BOOK=1`` to force a new build.

Chromium is found as ``chromium`` on the PATH (the Debian package) or at
``$ACCEPTLAB_CHROMIUM`` (``tests/browser.py`` drives it).  Without it, every browser test here
is skipped, and the skip says so loudly.  Everything stays on this machine: ``file://`` pages
and a server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from browser import (PAGE_WIDTH, LoadedPage, figures_as_shown, load_page, plays, remote_loads,
                     run_chromium)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LESSONS = [path.stem for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
SCREENSHOT = ROOT / "build" / "book-screenshot.png"
SCREENSHOT_PAGE = "06_"  # the page photographed for a person to look at
HTTP_LOADS = 4  # browser loads of the http demo
STDERR_MIME = "application/vnd.jupyter.stderr"
# A cell tagged `shows-error` may show a traceback on purpose (nbconvert renders the tag as the
# class `celltag_shows-error`): lesson 02 shows a spawned child failing to find a function that
# was defined in the notebook.
INTENDED_ERROR_TAG = "celltag_shows-error"
KNOWN_DEMONSTRATIONS: list[tuple[str, str]] = []

# The timeout includes running the course when no test ran it yet; the group keeps these
# tests on the pytest-xdist worker that holds the session's runs of the lessons.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("course"), pytest.mark.system]


# -- helpers -------------------------------------------------------------------------------

def dump_dom(binary: str, url: str) -> str:
    """The page's DOM after it has loaded and run its scripts, as Chromium serialises it."""
    return load_page(binary, url).dom


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
        self.rel_links: dict[str, list[str]] = {}  # rel="prev"/"next"/"contents" -> hrefs
        self.outputs: list[OutputBlock] = []
        # per open element: (inside an intended-error cell, inside an output block)
        self._stack: list[tuple[bool, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "img" and attributes.get("src", "").startswith("data:image/png;base64,"):
            self.png_images += 1
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
            for rel in attributes.get("rel", "").split():
                self.rel_links.setdefault(rel, []).append(attributes["href"])
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
    sources = [*NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"), *(ROOT / "src" / "acceptlab").rglob("*.py"),
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
def book(chromium: str, course, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The built book: {'path', 'failed', 'log', 'reused'} (no browser: no build either).

    Built with tools/build_book.py's own page writer from the session's one run of each
    lesson (the ``course`` fixture, which tests/test_notebooks.py checks), so the course is
    executed once per session, not once for the tests and again for the book.
    """
    sys.path.insert(0, str(ROOT / "tools"))
    import build_book
    import notebook_runner

    existing = ROOT / "build" / "book"
    if not os.environ.get("ACCEPTLAB_REBUILD_BOOK") and book_is_fresh(existing):
        return {"path": existing, "failed": [], "log": "reused build/book", "reused": True}
    out = tmp_path_factory.mktemp("book")
    results = course.run_all()
    build_book.write_book(out, results)
    failed = [result for result in results if not result.ok]
    return {"path": out, "failed": [result.path.name for result in failed],
            "log": "\n\n".join(f"{result.path.name}:\n{notebook_runner.failure_report(result)}"
                               for result in failed), "reused": False}


@pytest.fixture(scope="session")
def loaded(chromium: str, book: dict) -> dict[str, LoadedPage]:
    """Every lesson page and the index, loaded in Chromium (three browsers at a time)."""
    names = [*LESSONS, "index"]
    urls = [(book["path"] / f"{name}.html").resolve().as_uri() for name in names]
    with ThreadPoolExecutor(max_workers=3) as browsers:
        found = list(browsers.map(lambda url: load_page(chromium, url), urls))
    return dict(zip(names, found))


@pytest.fixture(scope="session")
def pages(loaded: dict[str, LoadedPage]) -> dict[str, str]:
    """Each page's DOM after its scripts ran."""
    return {name: page.dom for name, page in loaded.items()}


# -- tests ---------------------------------------------------------------------------------------

@pytest.mark.system
def test_the_book_built_without_errors(book: dict) -> None:
    assert not book["failed"], f"lessons of the book failed: {book['failed']}\n{book['log']}"


@pytest.mark.system
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


@pytest.mark.system
@pytest.mark.parametrize("lesson", LESSONS)
def test_each_pages_solutions_are_collapsed(lesson: str, pages: dict[str, str]) -> None:
    """Every <details> block holds its solution, so the reader sees it only on a click."""
    blocks = re.findall(r"<details[^>]*>(.*?)</details>", pages[lesson], re.DOTALL)
    empty = [block[:80] for block in blocks
             if len(re.sub(r"<[^>]+>|\s", "", block.split("</summary>", 1)[-1])) < 20]
    assert not empty, (f"{lesson}: {len(empty)} of {len(blocks)} <details> blocks are empty, "
                       f"so their solutions show expanded after them: {empty}")


@pytest.mark.system
def test_the_book_reads_offline(book: dict, loaded: dict[str, LoadedPage]) -> None:
    """No page fetches a script or a stylesheet from the network (a classroom may have none).

    Links a reader may follow (sources cited in the prose) are fine; things the page loads
    by itself are not: neither in its source nor in what the browser requested for it.
    """
    for page in sorted(book["path"].glob("*.html")):
        found = remote_loads(page.read_text(encoding="utf-8"))
        assert not found, f"{page.name} loads from the network: {found[:3]}"
    requested = {name: page.remote_requests for name, page in loaded.items()
                 if page.remote_requests}
    assert not requested, f"pages made network requests in the browser: {requested}"


@pytest.mark.system
def test_the_index_links_every_lesson(pages: dict[str, str]) -> None:
    links = set(read_page(pages["index"]).links)
    missing = [lesson for lesson in LESSONS if f"{lesson}.html" not in links]
    assert not missing, f"index.html does not link {missing}"


def lesson_links_problems(lessons: list[str], pages: dict[str, str]) -> list[str]:
    """What is wrong with the course's order in ``pages`` (name -> HTML), or [] if nothing.

    The index lists the lessons in course order; each lesson links the one before (none for
    the first), the one after (none for the last) and the contents, above and below.
    """
    problems = []
    listed = [link.removesuffix(".html") for link in read_page(pages["index"]).links
              if link.removesuffix(".html") in lessons]
    order = list(dict.fromkeys(listed))
    if order != lessons:
        problems.append(f"index.html lists {order}, the course is {lessons}")
    for position, lesson in enumerate(lessons):
        rel = read_page(pages[lesson]).rel_links
        wanted = {"prev": lessons[position - 1] if position > 0 else None,
                  "next": lessons[position + 1] if position + 1 < len(lessons) else None,
                  "contents": "index"}
        for kind, target in wanted.items():
            found = set(rel.get(kind, []))
            expected = set() if target is None else {f"{target}.html"}
            if found != expected:
                problems.append(f"{lesson}: rel={kind} links {sorted(found) or 'nothing'}, "
                                f"expected {sorted(expected) or 'nothing'}")
            if target is not None and len(rel.get(kind, [])) < 2:
                problems.append(f"{lesson}: rel={kind} should be both above and below the lesson")
    return problems


@pytest.mark.system
def test_every_page_links_its_neighbours_and_the_contents(pages: dict[str, str]) -> None:
    assert not (problems := lesson_links_problems(LESSONS, pages)), "\n".join(problems)


@pytest.mark.system
def test_a_small_course_is_linked_in_order(tmp_path: Path) -> None:
    """The same check on a three-lesson course built from fixture notebooks (no browser)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import build_book

    folder = tmp_path / "notebooks"
    folder.mkdir()
    names = ["00_first", "01_second", "02_third"]
    for name in reversed(names):  # written out of order: the book must sort them
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# Lesson {name}\n\n**Goal:** see {name}."),
            nbformat.v4.new_code_cell(f"print({name!r})")])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, folder / f"{name}.ipynb")
    out = tmp_path / "book"
    results = build_book.build(out, sorted(folder.glob("*.ipynb"), reverse=True), timeout=60)
    assert all(result.ok for result in results), [result.error for result in results]
    built = {name: (out / f"{name}.html").read_text(encoding="utf-8")
             for name in [*names, "index"]}
    assert not (problems := lesson_links_problems(names, built)), "\n".join(problems)
    # ... and the check itself can fail: swap two lessons' places in the course
    assert lesson_links_problems([names[1], names[0], names[2]], built)


@pytest.mark.system
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


@pytest.mark.system
@pytest.mark.serial
def test_the_http_demo_is_served_by_more_than_one_worker(start_pool, chromium: str) -> None:
    """Load the http demo in the browser a few times: the kernel hands the loads to different workers."""
    served = []
    pool = start_pool(protocol="http", workers=4, kind="process")
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


FILMS = ["02_many_workers_one_socket", "05_thundering_herd", "06_when_round_robin_breaks"]


@pytest.mark.system
@pytest.mark.parametrize("lesson", FILMS)
def test_the_wait_queue_films_play_in_the_book(lesson: str, chromium: str, book: dict,
                                                tmp_path: Path) -> None:
    """Each lesson with a film: its picture shows before any click, ONE click on play moves it,
    offline (``browser.plays``)."""
    page = tmp_path / f"{lesson}.html"
    page.write_text((book["path"] / f"{lesson}.html").read_text(encoding="utf-8"),
                    encoding="utf-8")
    moved, remote = plays(chromium, page)
    assert moved, f"{lesson}: the film did not move past its first frame"
    assert not remote, f"{lesson}: the film asked the network for {remote}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_pages_figures_are_visible_at_the_books_width(lesson: str, chromium: str, book: dict,
                                                           tmp_path: Path) -> None:
    """The figures read at 900 px: laid out with a height, inside the page, not shrunk past half.

    Figures are made for that width (tests/test_figures.py checks their text and shape); this
    checks that the page shows them so: a figure wider than the page is shrunk to fit (its
    text with it), and one shrunk to less than half its size is too small to read.
    """
    page = tmp_path / f"{lesson}.html"
    page.write_text((book["path"] / f"{lesson}.html").read_text(encoding="utf-8"),
                    encoding="utf-8")
    width, figures = figures_as_shown(chromium, page, width=PAGE_WIDTH)
    assert width > 0, f"{lesson}: the page did not report its width"
    wanted = expected_images(book["path"]).get(lesson, 0)
    assert len(figures) >= min(wanted, 1), f"{lesson}: no figure found on the page"
    hidden = [f for f in figures if f.height <= 0 or f.width <= 0]
    assert not hidden, f"{lesson}: {len(hidden)} figures are laid out with no size"
    cut = [f for f in figures if f.right > width + 1]
    assert not cut, (f"{lesson}: {len(cut)} figures run past the page's {width:g} px "
                     f"(rightmost edge {max(f.right for f in cut):g} px)")
    tiny = [f for f in figures if f.width < 0.5 * f.natural_width]
    assert not tiny, (f"{lesson}: {len(tiny)} figures shown at less than half their size "
                      f"({[round(f.width / f.natural_width, 2) for f in tiny]})")



def test_the_figure_check_measures_what_a_reader_sees(chromium: str, tmp_path: Path) -> None:
    """The measurement above, on a hand-made page: one figure that fits, one far too wide."""
    import base64
    import io

    from PIL import Image

    def png(width: int) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (width, 100), "white").save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    page = tmp_path / "page.html"
    page.write_text(f'<!DOCTYPE html><html><body style="margin:0"><img src="{png(600)}">'
                    f'<div style="max-width:100%"><img src="{png(2400)}" style="max-width:100%">'
                    f'</div><img src="{png(1500)}"></body></html>')
    width, figures = figures_as_shown(chromium, page, width=PAGE_WIDTH)
    assert 880 <= width <= PAGE_WIDTH
    fits, shrunk, cut = figures
    assert fits.width == 600 and fits.height == 100 and fits.right <= width
    assert shrunk.width < 0.5 * shrunk.natural_width  # the check's "too small to read"
    assert cut.right > width + 1  # the check's "runs past the page"
