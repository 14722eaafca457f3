"""The slide decks (`make slides`): every lesson's deck opens in a real browser, offline.

What is checked:

* every lesson's deck (``NN_slug.slides.html``, built from the notebooks as they are, without
  executing them) loads in headless Chromium, reveal.js initialises (``.reveal`` is ``ready``,
  the first slide is ``present``) and shows at least as many slides as the notebook was cut
  into, and the page makes no network request (Chromium's net log) and links no script or
  style sheet from another host; reveal.js comes from the ``reveal.js/`` folder beside it;
* an executed lesson's figures are in its deck (a fixture notebook that draws one);
* a notebook without slide metadata is cut at its headings, one with metadata where its author
  said, and building never writes to the notebooks;
* the render check fails on a deck whose reveal.js is missing (so it can fail at all);
* **every slide of every deck fits the 1280 x 720 frame**: each deck is loaded with a small
  script that steps through every slide and measures how far its content reaches; none may reach
  past the frame's height (``tools/build_slides.py`` cuts the slides by estimate, this is the
  measurement). The same holds for a deck whose cells have outputs (a tall figure, a long
  printout, a table, a long code cell and a long markdown cell), for one whose printouts' lines
  wrap (one line longer than a slide, a long traceback) and whose DataFrame table, in rowspan
  groups, is taller than a slide, and for the lessons' executed decks (the session's run of the
  course); code is drawn at the size the estimates assume; a deck with a block no cut can split
  overflows and the check says so (so it can fail at all);
* the cuts themselves, without a browser: a printout is cut by the lines it shows and loses no
  character; a table is cut between its row groups, each part with the header;
* one deck (06) is photographed into ``build/slides-screenshot.png`` for a person to look at.

reveal.js comes from its npm package, installed once into ``build/.npm``.  Without npm and
without that folder, the browser tests skip and say why; without Chromium, likewise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
import html
from pathlib import Path

import nbformat
import pytest
from browser import LoadedPage, load_page, remote_loads, run_chromium

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_slides  # noqa: E402
import notebook_runner as runner  # noqa: E402
import slide_fit  # noqa: E402

NOTEBOOKS = runner.notebook_paths()
LESSONS = [path.stem for path in NOTEBOOKS]
SCREENSHOT = ROOT / "build" / "slides-screenshot.png"
SCREENSHOT_DECK = "06_"
SETTLE_MS = 3000  # virtual time for reveal.js to lay the deck out

# one pytest-xdist worker for all: the session builds the decks once, and installs reveal.js
# into build/.npm once (two workers would race for it)
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("slides")]


class DeckReader(HTMLParser):
    """What the render check needs from a deck's DOM: reveal's state, slides, images, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.reveal_classes: set[str] = set()
        self.sections = 0
        self.present = 0
        self.png_images = 0
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = set(attributes.get("class", "").split())
        if tag == "div" and "reveal" in classes:
            self.reveal_classes = classes
        elif tag == "section":
            self.sections += 1
            self.present += "present" in classes
        elif tag == "img" and attributes.get("src", "").startswith("data:image/png;base64,"):
            self.png_images += 1
        elif tag == "script" and attributes.get("src"):
            self.scripts.append(attributes["src"])


# Steps through every slide (the current one is laid out; the others may be hidden) and writes,
# for each, how far its content reaches below the slide's top, as JSON in <pre id=slide-heights>,
# with the font size the deck's code and printouts are drawn in.
MEASURE = """<script>
(function () {
  function measure() {
    var config = Reveal.getConfig(), rows = [];
    Reveal.getSlides().forEach(function (slide) {
      var at = Reveal.getIndices(slide), bottom = 0;
      Reveal.slide(at.h, at.v);
      Array.prototype.forEach.call(slide.children, function (child) {
        bottom = Math.max(bottom, child.offsetTop + child.offsetHeight);
      });
      var heading = slide.querySelector('h1, h2, h3, h4');
      rows.push({h: at.h, v: at.v || 0, bottom: bottom,
                 title: heading ? heading.textContent.replace('\u00b6', '') : ''});
    });
    var code = document.querySelector('.jp-OutputArea-output pre, .jp-InputArea-editor pre');
    var pre = document.createElement('pre');
    pre.id = 'slide-heights';
    pre.textContent = JSON.stringify({width: config.width, height: config.height, slides: rows,
                                      code_px: code ? parseFloat(getComputedStyle(code).fontSize)
                                                    : null});
    document.body.appendChild(pre);
  }
  if (Reveal.isReady()) { measure(); } else { Reveal.on('ready', measure); }
})();
</script>"""
HEIGHTS = re.compile(r'<pre id="slide-heights">(.*?)</pre>', re.S)


def slide_heights(chromium: str, deck: Path) -> dict:
    """Load ``deck`` with :data:`MEASURE` appended; return the frame and every slide's extent."""
    probe = deck.with_name(deck.stem + "-measured.html")
    probe.write_text(deck.read_text(encoding="utf-8").replace("</html>", MEASURE + "</html>"),
                     encoding="utf-8")
    try:
        page = load_page(chromium, probe.as_uri(), settle_ms=SETTLE_MS)
    finally:
        probe.unlink()
    found = HEIGHTS.search(page.dom)
    assert found, f"{deck.name}: the measuring script wrote nothing (did reveal.js start?)"
    return json.loads(html.unescape(found.group(1)))


def overflowing(measured: dict) -> list[str]:
    """The slides whose content reaches past the frame, as 'h.v "title": N px of H'."""
    height = build_slides.FRAME[1]
    return [f'{row["h"]}.{row["v"]} "{row["title"][:50]}": {row["bottom"]} px of {height}'
            for row in measured["slides"] if row["bottom"] > height]


def read_deck(dom: str) -> DeckReader:
    reader = DeckReader()
    reader.feed(dom)
    reader.close()
    return reader


def render_problems(page: LoadedPage, *, slides: int) -> list[str]:
    """Why a deck did not render as a presenter needs it, or [] if it did."""
    deck = read_deck(page.dom)
    problems = []
    if "ready" not in deck.reveal_classes:
        problems.append(f"reveal.js did not initialise (.reveal classes: "
                        f"{sorted(deck.reveal_classes) or 'no .reveal element'})")
    if deck.sections < slides:
        problems.append(f"{deck.sections} <section>s for {slides} slides")
    if not deck.present:
        problems.append("no slide is shown (no section is 'present')")
    if page.remote_requests:
        problems.append(f"network requests: {page.remote_requests[:3]}")
    not_local = [src for src in deck.scripts if "//" in src or src.startswith("/")]
    if not_local:
        problems.append(f"scripts not loaded from beside the deck: {not_local}")
    return problems


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def reveal() -> Path:
    """The unpacked reveal.js npm package (installed once into build/.npm)."""
    try:
        return build_slides.npm_reveal()
    except build_slides.SlidesError as exc:
        pytest.skip(f"THE SLIDE DECKS WERE NOT TESTED: {exc}")


def _digest(paths: list[Path]) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


@pytest.fixture(scope="session")
def decks(reveal: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every lesson's deck, from the notebooks as committed (no outputs: fast)."""
    if not NOTEBOOKS:
        pytest.skip("no notebooks/NN_*.ipynb yet")
    out = tmp_path_factory.mktemp("slides")
    before = _digest(NOTEBOOKS)
    ok = build_slides.build(out, NOTEBOOKS, book=None, execute=False, reveal=reveal)
    assert ok
    assert _digest(NOTEBOOKS) == before, "building the slides changed a notebook"
    slides = {}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        if not build_slides.has_slide_metadata(notebook):
            build_slides.fit_to_frame(notebook)
        slides[path.stem] = build_slides.count_slides(notebook)
    return {"path": out, "slides": slides}


@pytest.fixture(scope="session")
def loaded_decks(chromium: str, decks: dict) -> dict[str, LoadedPage]:
    urls = [(decks["path"] / f"{lesson}.slides.html").resolve().as_uri() for lesson in LESSONS]
    with ThreadPoolExecutor(max_workers=3) as browsers:
        found = list(browsers.map(lambda url: load_page(chromium, url, settle_ms=SETTLE_MS), urls))
    return dict(zip(LESSONS, found))


@pytest.fixture(scope="session")
def measured_decks(chromium: str, decks: dict) -> dict[str, dict]:
    paths = [decks["path"] / f"{lesson}.slides.html" for lesson in LESSONS]
    with ThreadPoolExecutor(max_workers=3) as browsers:
        found = list(browsers.map(lambda deck: slide_heights(chromium, deck), paths))
    return dict(zip(LESSONS, found))


# -- the lessons' decks ----------------------------------------------------------------------------

@pytest.mark.system
@pytest.mark.parametrize("lesson", LESSONS)
def test_every_slide_fits_the_frame(lesson: str, decks: dict,
                                    measured_decks: dict[str, dict]) -> None:
    """Issue 22 item 6: no slide of a lesson's deck reaches past the 1280 x 720 frame."""
    measured = measured_decks[lesson]
    assert (measured["width"], measured["height"]) == build_slides.FRAME
    assert len(measured["slides"]) == decks["slides"][lesson], "not every slide was measured"
    assert not overflowing(measured), (f"{lesson}.slides.html overflows the frame: "
                                       + "; ".join(overflowing(measured)))


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_deck_renders_offline(lesson: str, decks: dict,
                                   loaded_decks: dict[str, LoadedPage]) -> None:
    page = loaded_decks[lesson]
    problems = render_problems(page, slides=decks["slides"][lesson])
    assert not problems, f"{lesson}.slides.html: " + "; ".join(problems)
    source = (decks["path"] / f"{lesson}.slides.html").read_text(encoding="utf-8")
    assert not remote_loads(source), f"{lesson}: loads from the network: {remote_loads(source)}"
    assert 'src="reveal.js/dist/reveal.js"' in source


@pytest.mark.system
def test_the_decks_are_listed_in_course_order(decks: dict) -> None:
    index = (decks["path"] / "index.html").read_text(encoding="utf-8")
    listed = re.findall(r'href="([^"]+)\.slides\.html"', index)
    assert listed == LESSONS


@pytest.mark.system
def test_a_screenshot_of_one_deck(chromium: str, decks: dict) -> None:
    """Photograph deck 06's first slide for a person to look at: build/slides-screenshot.png."""
    lesson = next((name for name in LESSONS if name.startswith(SCREENSHOT_DECK)), LESSONS[0])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "deck.png"
        run_chromium(chromium, "--window-size=1280,720", f"--virtual-time-budget={SETTLE_MS}",
                     f"--screenshot={shot}",
                     (decks["path"] / f"{lesson}.slides.html").resolve().as_uri())
        assert shot.exists() and shot.stat().st_size > 10_000, "the screenshot is missing or blank"
        shutil.copyfile(shot, SCREENSHOT)


@pytest.mark.system
def test_the_render_check_fails_without_reveal(chromium: str, decks: dict,
                                               tmp_path: Path) -> None:
    """A deck copied away from its reveal.js folder does not initialise, and the check says so."""
    lesson = LESSONS[0]
    shutil.copyfile(decks["path"] / f"{lesson}.slides.html", tmp_path / "alone.slides.html")
    page = load_page(chromium, (tmp_path / "alone.slides.html").as_uri(), settle_ms=SETTLE_MS)
    problems = render_problems(page, slides=decks["slides"][lesson])
    assert any("did not initialise" in problem for problem in problems), problems


def _figure_png(width_in: float, height_in: float) -> str:
    """A real matplotlib figure as base64 PNG, the way an inline backend stores it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    figure.subplots().plot([0, 1, 2], [2, 0, 1])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def _with_outputs() -> nbformat.NotebookNode:
    """A lesson-like notebook whose cells have every kind of output the lessons have, tall ones."""
    md, code, out = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell, nbformat.v4
    table = "<table>" + "".join(f"<tr><td>{row}</td><td>{row * row}</td></tr>"
                                for row in range(15)) + "</table>"
    paragraphs = "\n\n".join(f"Paragraph {n}: " + "a sentence that takes some room. " * 6
                              for n in range(30))
    return _notebook(
        md("# A lesson with outputs\n\n**Goal:** fit.\n\n" + paragraphs),
        code("\n".join(f"x{n} = {n}  # a long cell" for n in range(90)), outputs=[
            out.new_output("stream", name="stdout", text="".join(f"line {n}\n" for n in range(40))),
            out.new_output("display_data", data={"image/png": _figure_png(6, 12),
                                                 "text/plain": "<Figure>"}),
            out.new_output("execute_result", data={"text/html": table, "text/plain": "table"},
                           execution_count=1)]),
        md("## Two wide figures"),
        code("fig", outputs=[out.new_output("display_data", data={
            "image/png": _figure_png(14, 4), "text/plain": "<Figure>"})] * 2))


def _grouped_table(groups: int) -> str:
    """A DataFrame with a two-level index as a notebook shows it: rowspan labels, a long column."""
    import pandas as pd

    rows = [{"server": f"server-{group}", "load": load, "strategy": "epoll-exclusive",
             "note": f"a remark long enough to wrap in a narrow column, number {group}",
             "share": round(0.25 + group / 100, 2)}
            for group in range(groups) for load in ("sequential", "closed")]
    return pd.DataFrame(rows).set_index(["server", "load"])._repr_html_()


def _printouts_and_tables() -> nbformat.NotebookNode:
    """What a run prints that the fitter must cut by what it shows, not by its text's lines:
    long printed lines that wrap (lesson 05's verdicts), one line longer than a slide, a long
    traceback, and a DataFrame table taller than a slide whose rows come in rowspan groups
    (lesson 09's table of servers)."""
    md, code, out = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell, nbformat.v4
    verdict = ("The answer: busiest worker's share 0.28, outside 0.25–0.27 (the model calibrated "
               "for this machine, 90 % of 20 simulated runs) by 0.01: the race came out more "
               "(or less) uneven than in the model's runs; who runs first depends on how busy "
               "the machine is. ")
    return _notebook(
        md("# Printouts and tables"),
        code("report()", outputs=[out.new_output(
            "stream", name="stdout", text="".join(f"{n}: {verdict * 2}\n" for n in range(24)))]),
        code("print(word * 4000)", outputs=[out.new_output(
            "stream", name="stdout", text="0123456789 " * 700 + "\n")]),
        code("fail()", outputs=[out.new_output(
            "error", ename="RuntimeError", evalue="deep",
            traceback=[f"\x1b[0;31mframe {n}\x1b[0m in level_{n}(): " + "x = y " * 30
                       for n in range(45)])]),
        md("## A grouped table"),
        code("table", outputs=[out.new_output(
            "execute_result", data={"text/html": _grouped_table(24), "text/plain": "table"},
            execution_count=1)]))


def _fitted_deck(chromium: str, reveal: Path, tmp_path: Path,
                 notebook: nbformat.NotebookNode) -> dict:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(notebook, folder / "00_fixture.ipynb")
    build_slides.build(tmp_path / "slides", runner.notebook_paths(folder), execute=False,
                       reveal=reveal)
    return slide_heights(chromium, tmp_path / "slides" / "00_fixture.slides.html")


@pytest.mark.system
def test_a_deck_with_tall_outputs_fits_the_frame(chromium: str, reveal: Path,
                                                 tmp_path: Path) -> None:
    measured = _fitted_deck(chromium, reveal, tmp_path, _with_outputs())
    assert len(measured["slides"]) >= 8, "the tall cells were not cut into several slides"
    assert not overflowing(measured), "; ".join(overflowing(measured))


@pytest.mark.system
def test_wrapped_printouts_and_grouped_tables_fit_the_frame(chromium: str, reveal: Path,
                                                             tmp_path: Path) -> None:
    """The executed lessons' overflows, reproduced without running them: a printout whose long
    lines wrap (cut by the lines it shows), and a table taller than a slide (cut between its
    row groups). Code is drawn at the size the estimates assume (nbconvert's 19px once won)."""
    measured = _fitted_deck(chromium, reveal, tmp_path, _printouts_and_tables())
    assert measured["code_px"] == slide_fit.STYLE.code_px
    assert len(measured["slides"]) >= 8, "the tall outputs were not cut into several slides"
    assert not overflowing(measured), "; ".join(overflowing(measured))


@pytest.mark.system
def test_the_fit_check_fails_on_a_slide_too_tall(chromium: str, reveal: Path,
                                                 tmp_path: Path) -> None:
    """A markdown table of 40 rows is one block: no cut can split it, and the check says so."""
    table = "| n | n² |\n|---|---|\n" + "\n".join(f"| {n} | {n * n} |" for n in range(40))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(_notebook(nbformat.v4.new_markdown_cell("# Too tall\n\n" + table)),
                   folder / "00_tall.ipynb")
    build_slides.build(tmp_path / "slides", runner.notebook_paths(folder), execute=False,
                       reveal=reveal)
    measured = slide_heights(chromium, tmp_path / "slides" / "00_tall.slides.html")
    assert overflowing(measured), measured


@pytest.mark.system
@pytest.mark.xdist_group("course")  # beside tests/test_notebooks.py: the course runs once
def test_the_executed_lessons_decks_fit_the_frame(chromium: str, reveal: Path, course,
                                                  tmp_path: Path) -> None:
    """With figures and tables: the decks `make slides` builds, from the session's one run of
    every lesson (the ``course`` fixture of tests/conftest.py, which tests/test_notebooks.py
    checks), as `make slides` builds them from `make book`'s executed lessons."""
    book = tmp_path / "book"
    book.mkdir()
    for result in course.run_all():
        nbformat.write(result.notebook, book / result.path.name)
    build_slides.build(tmp_path / "slides", NOTEBOOKS, book=book, execute=False, reveal=reveal)
    problems = []
    for path in NOTEBOOKS:
        measured = slide_heights(chromium, tmp_path / "slides" / f"{path.stem}.slides.html")
        problems += [f"{path.stem}: {slide}" for slide in overflowing(measured)]
    assert not problems, "executed decks overflow the frame: " + "; ".join(problems)


# -- cutting and executing, on fixture notebooks ----------------------------------------------------

def _notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=list(cells))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def _slide_types(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.metadata.slideshow.slide_type for cell in notebook.cells]


def test_an_untagged_notebook_is_cut_at_its_headings() -> None:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    notebook = _notebook(md("intro without a heading"), md("# Title\n\ntext"), code("x = 1"),
                         md("## Part\n\nmore"), md("### Detail"), md("#### small"),
                         md("text with a # inside"), code("# a comment, not a heading"))
    assert not build_slides.has_slide_metadata(notebook)
    assert build_slides.tag_by_headings(notebook) == 3
    assert _slide_types(notebook) == ["slide", "slide", "-", "slide", "subslide", "-", "-", "-"]


def _body_rows(table: str) -> list[str]:
    return re.findall(r"<tr\b.*?</tr>", table.split("</thead>")[-1], re.S)


def test_a_printout_is_cut_by_the_lines_it_shows() -> None:
    """Wrapped lines count: 24 printed lines of ~800 characters, a 7,700-character line and a
    45-frame traceback each become several parts that fit a slide, and no character is lost."""
    budget = slide_fit.STYLE.budget  # pixels of a slide's height: a layout fact, not a time
    for cell in _printouts_and_tables().cells[1:4]:
        (original,) = cell.outputs
        pieces = slide_fit._code_pieces(cell, slide_fit.STYLE)
        parts = [output for piece, _ in pieces for output in piece.outputs]
        assert len(parts) >= 2, original.output_type
        assert max(px for _, px in pieces) <= budget
        assert max(slide_fit.estimate_outputs(parts)) <= budget
        shown = ("".join(part.text for part in parts) if original.output_type == "stream" else
                 "".join("".join(part.traceback) for part in parts))
        whole = original.text if original.output_type == "stream" else "".join(original.traceback)
        assert shown.replace("\n", "") == whole.replace("\n", "")


def test_a_tall_table_is_cut_between_its_row_groups() -> None:
    """Every part repeats the header, starts at a group's label (rowspan), fits a slide, and the
    parts' rows are the table's rows, in order."""
    cell = _printouts_and_tables().cells[-1]
    table = cell.outputs[0].data["text/html"]
    pieces = slide_fit._code_pieces(cell, slide_fit.STYLE)
    parts = [output.data["text/html"] for piece, _ in pieces for output in piece.outputs]
    assert len(parts) >= 2
    assert max(px for _, px in pieces) <= slide_fit.STYLE.budget
    assert [row for part in parts for row in _body_rows(part)] == _body_rows(table)
    for part in parts:
        assert "<thead>" in part and part.count("<table") == 1 and part.count("</table>") == 1
        assert 'rowspan="2"' in _body_rows(part)[0]


def test_a_table_too_tall_for_a_slide_is_estimated_so() -> None:
    """The estimate that decides the cut sees the table's height: more rows, taller, and long
    text in a squeezed column wraps onto more lines than short text does."""
    short, tall = (slide_fit.estimate_outputs([nbformat.v4.new_output(
        "display_data", data={"text/html": _grouped_table(groups)})])[0] for groups in (3, 24))
    assert short < slide_fit.STYLE.budget < tall
    assert tall > 48 * slide_fit.STYLE.table_line


@pytest.mark.system
def test_an_authors_tags_are_kept(reveal: Path, tmp_path: Path) -> None:
    md = nbformat.v4.new_markdown_cell
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = _notebook(
        md("# One", metadata={"slideshow": {"slide_type": "slide"}}),
        md("## not a cut: the author said so", metadata={"slideshow": {"slide_type": "-"}}),
        md("Two", metadata={"slideshow": {"slide_type": "slide"}}),
        md("speaker only", metadata={"slideshow": {"slide_type": "notes"}}),
        md("never shown", metadata={"slideshow": {"slide_type": "skip"}}))
    nbformat.write(notebook, folder / "00_tagged.ipynb")
    build_slides.build(tmp_path / "slides", runner.notebook_paths(folder), execute=False,
                       reveal=reveal)
    deck = (tmp_path / "slides" / "00_tagged.slides.html").read_text(encoding="utf-8")
    assert deck.count("<section") == 4  # two slides, each a stack of one
    assert '<aside class="notes">' in deck and "never shown" not in deck


@pytest.mark.system
@pytest.mark.timeout(180)
def test_an_executed_lessons_figure_is_in_its_deck(chromium: str, reveal: Path,
                                                   tmp_path: Path) -> None:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(_notebook(
        md("# A figure\n\n**Goal:** draw."),
        code("import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
             "%matplotlib inline\nplt.plot([0, 1], [1, 0]); plt.show()")),
        folder / "00_figure.ipynb")
    assert build_slides.build(tmp_path / "slides", runner.notebook_paths(folder), book=None,
                              execute=True, reveal=reveal)
    page = load_page(chromium, (tmp_path / "slides" / "00_figure.slides.html").as_uri(),
                     settle_ms=SETTLE_MS)
    assert not render_problems(page, slides=1)
    assert read_deck(page.dom).png_images >= 1, "the executed figure is not in the deck"


def test_without_npm_the_build_says_what_to_install(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """No npm and no reveal.js yet: one line naming the fix, exit code 2, no traceback."""
    monkeypatch.setattr(build_slides, "NPM_CACHE", tmp_path / "empty-cache")
    monkeypatch.setattr(build_slides.shutil, "which", lambda name: None)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(_notebook(nbformat.v4.new_markdown_cell("# One")), folder / "00_one.ipynb")
    code = build_slides.main(["--notebooks", str(folder), "--out", str(tmp_path / "slides"),
                              "--no-execute"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(errors) == 1, errors
    assert "apt-get install npm" in errors[0] and "--reveal" in errors[0]
