"""The course where a learner works: `make lab`, in JupyterLab, every lesson run and clicked.

`make lab` is started as the Makefile has it (its own recipe, on a copy of the course as a clone
has it, on a free loopback port, with a token, in its own process group; see tests/labserver.py),
and checked in two ways:

* **Links, from the lab's contents API** (no browser): every relative link in every lesson's
  markdown (links, images and HTML ``href``/``src``, parsed with mistune) is resolved from the
  lesson's own folder, as JupyterLab resolves it, and the contents API must find the target; a
  link into a Markdown file or a notebook must name an anchor the lab renders there (an
  ``id``/``name`` attribute, or a heading, whose id JupyterLab makes from its text with spaces
  turned into ``-``, case kept).
* **A learner's session, in a real browser** (headless Chromium driven by Playwright,
  ``tests/lab_browser.mjs``): the address `make lab` printed is opened (it must show lesson 00),
  then every lesson is run with Run All (the command palette's "Run All Cells") and saved, and
  then:

  - **no error output unless the lesson declares it**: the saved notebook must have run every
    code cell, and no output may be an error (an ``error`` output, or stderr showing a
    traceback or an ``...Error``) unless its cell is tagged ``shows-error``, the one convention
    for an error a lesson shows on purpose (lesson 02's spawn demonstration; the HTML book's
    test honours the same tag);
  - **one source link per lesson opens**: clicking the lesson's first ``docs/sources.md#...``
    link must open a document tab on ``sources.md`` with the cited anchor in view;
  - **every film plays on the first click**: play is pressed ONCE on each film, and the frame
    shown must change within ``FILM_WAIT_S``.  (A film is an output holding an ``<img>`` and a
    button titled or labelled "Play", as matplotlib's player and its replacements have.);
  - **the playground's widgets work**: in lesson 08 the strategy is changed and Run pressed, and
    the panel's output must be redrawn with the new strategy's summary and figures; no label of
    the panel may be cut short;
  - **no prompt asks about Jupyter news** (the lab settings in tools/lab-settings answer it);
  - **nothing outlives the lab**: each lesson's kernel is shut down after it, and once the
    server is stopped no kernel and no worker may be left.

The browser test skips, LOUDLY, without Chromium, npm or node (playwright-core is installed by
npm into ``build/.npm-lab`` on first use).  It runs every lesson once (the notebook tests run
them too, in their own kernels: this is a second execution, through the lab); the time each
Run All took is printed.  Screenshots a person can look at are written to ``build/lab/``:
``film-02-after-one-click.png`` (the film of lesson 02, one click after Run All) and
``source-from-02.png`` (docs/sources.md opened from lesson 02's first source link).
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import mistune
import nbformat
import pytest
from browser import NO_CHROMIUM
from labserver import LabServer, copy_course
from makefile import BIN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import chromium as headless  # noqa: E402  (tools/chromium.py: the flags, finding the binary)

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [path.stem for path in LESSONS]
SCREENSHOTS = ROOT / "build" / "lab"
NPM_CACHE = ROOT / "build" / ".npm-lab"
PLAYWRIGHT = "playwright-core"
PLAYWRIGHT_VERSION = "1.65.2"
DRIVER = Path(__file__).resolve().parent / "lab_browser.mjs"
INTENDED_ERROR_TAG = "shows-error"  # a cell tagged so may show an error on purpose
FILM_WAIT_S = 5.0  # a film at a few frames per second shows its next frame well within this
# The lesson whose first Run All the driver loses on purpose (it opens the Run menu and closes
# it), to check that a click that ran nothing is noticed and made again instead of waited on for
# LESSON_TIMEOUT_S (CI failed so once, on lesson 00, on a busy machine).
LOST_CLICK_LESSON = "01"
LESSON_TIMEOUT_S = 600  # one Run All, on a busy two-core machine (they take seconds to a minute)
SCREENSHOT_LESSON = "02"  # its film and its first source link are photographed

NO_BROWSER_TOOLS = (
    "{what} IS NOT AVAILABLE: the JupyterLab browser test DID NOT RUN. "
    "It drives Chromium with Playwright from npm (`sudo apt-get install chromium npm`; "
    "CI does this in .ci/run); playwright-core is installed into build/.npm-lab on first use.")

# One pytest-xdist worker holds the module: its lab and its browser session are module-wide,
# and two workers would each start a lab, and each run npm into build/.npm-lab at once (a CI
# beside a busy job got a playwright-core without its files, and skipped every browser test).
pytestmark = [pytest.mark.timeout(2400), pytest.mark.xdist_group("jupyterlab")]
system = pytest.mark.system  # the tests that need `make lab` running (and a browser, for some)


# -- what the lessons link ------------------------------------------------------------------------

class _HrefReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def _markdown_tokens(source: str) -> list[dict]:
    return mistune.create_markdown(renderer=None)(source)


def markdown_targets(source: str) -> list[str]:
    """Every link, image and HTML href/src target in a Markdown text, code left out."""
    found: list[str] = []

    def walk(tokens: list[dict]) -> None:
        for token in tokens:
            kind = token.get("type")
            if kind in ("link", "image"):
                found.append(token["attrs"]["url"])
            elif kind in ("inline_html", "block_html"):
                reader = _HrefReader()
                reader.feed(token.get("raw", ""))
                found.extend(reader.targets)
            walk(token.get("children") or [])

    walk(_markdown_tokens(source))
    return found


def is_relative(target: str) -> bool:
    return not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith(("/", "#"))


def lab_path(lesson_path: str, target: str) -> str | None:
    """The server path JupyterLab opens for ``target`` linked from ``lesson_path`` (None: outside)."""
    file_part = urllib.parse.unquote(target.split("#", 1)[0].split("?", 1)[0])
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(lesson_path), file_part))
    return None if joined == ".." or joined.startswith("../") else joined


def _plain_text(markdown_inline: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown_inline)
    return re.sub(r"[`*_]", "", text).strip()


def lab_anchors(markdown: str) -> set[str]:
    """The fragment targets JupyterLab renders for a Markdown text.

    Explicit ``id``/``name`` attributes, and one id per heading: JupyterLab's
    ``createHeaderId`` takes the heading's text and replaces each space by ``-`` (case kept,
    unlike GitHub's lower-case slugs).
    """
    anchors = set(re.findall(r'\b(?:id|name)="([^"]+)"', markdown))
    for line in markdown.splitlines():
        heading = re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchors.add(_plain_text(heading.group(1)).replace(" ", "-"))
    return anchors


def notebook_markdown(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in notebook["cells"] if cell["cell_type"] == "markdown"]


# -- the rules themselves, without a server ------------------------------------------------------

def test_links_resolve_from_the_lessons_folder_as_jupyterlab_resolves_them() -> None:
    lesson = "notebooks/02_x.ipynb"
    assert lab_path(lesson, "../docs/sources.md#book-2nd") == "docs/sources.md"
    assert lab_path(lesson, "../data/a%20b/meta.json") == "data/a b/meta.json"
    assert lab_path(lesson, "03_y.ipynb") == "notebooks/03_y.ipynb"
    assert lab_path(lesson, "../../outside.md") is None
    assert [target for target in markdown_targets(
        "See [a](../a.md#x), ![b](b.png), <a href=\"c.md\">c</a> and `[not](code.md)`.\n\n"
        "[ref][r] and https://example.org\n\n[r]: ../d.csv") if is_relative(target)] == \
        ["../a.md#x", "b.png", "c.md", "../d.csv"]


def test_anchors_are_the_ones_jupyterlab_renders() -> None:
    found = lab_anchors('<a id="book-2nd"></a>\n\n## Laptops that are *not* `Linux`\n')
    assert {"book-2nd", "Laptops-that-are-not-Linux"} <= found
    assert "laptops-that-are-not-linux" not in found  # GitHub's slug; JupyterLab keeps the case


def test_an_error_shows_only_in_a_cell_tagged_shows_error() -> None:
    spawn_failure = nbformat.v4.new_output(
        "stream", name="stderr",
        text="Traceback (most recent call last):\nAttributeError: Can't get attribute 'greet'\n")
    warning = nbformat.v4.new_output("stream", name="stderr", text="UserWarning: slow machine\n")
    raised = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    cells = [nbformat.v4.new_code_cell("demo()", execution_count=1, outputs=[spawn_failure]),
             nbformat.v4.new_code_cell("demo()", execution_count=2, outputs=[spawn_failure],
                                       metadata={"tags": [INTENDED_ERROR_TAG]}),
             nbformat.v4.new_code_cell("warn()", execution_count=3, outputs=[warning]),
             nbformat.v4.new_code_cell("fail()", execution_count=4, outputs=[raised]),
             nbformat.v4.new_code_cell("after()"),
             nbformat.v4.new_code_cell("  ")]
    found = unintended_errors(nbformat.v4.new_notebook(cells=cells))
    assert [entry.split(" ", 2)[1] for entry in found] == ["0", "3:", "4"], found


def test_the_lab_test_finds_the_films_and_the_playground() -> None:
    """Detection from the lessons' code: a film or the playground renamed must not go unchecked."""
    assert any(path.name.startswith("02_") for path in FILM_LESSONS), FILM_LESSONS
    assert PLAYGROUNDS, "no lesson builds the playground's widgets any more"
    assert all(_plan_lesson(path)["sourceLink"] for path in LESSONS)


# -- the server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """`make lab` serving a copy of the course; stopped (and anything left ended) at the end."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed: `make lab` cannot be exercised")
    if not (BIN / "jupyter-lab").exists():
        pytest.skip(f"JupyterLab is not installed in {BIN} (pip install -e '.[notebooks]')")
    scratch = tmp_path_factory.mktemp("lab")
    server = LabServer.start(copy_course(scratch / "course"), scratch)
    yield server
    leftovers = server.stop()
    if leftovers:  # the last test asserts this; here only what a partial run left is reported
        print(f"ended by PID after the lab stopped: {leftovers}")


@system
def test_make_lab_prints_the_address_of_the_first_lesson(lab: LabServer) -> None:
    assert lab.printed_url.startswith(f"{lab.base}/lab/tree/notebooks/00_setup_check.ipynb?"), (
        f"`make lab` should print (and open) the first lesson; its log says:\n{lab.log()[-1500:]}")
    status, model = lab.contents("notebooks")
    assert status == 200 and model["type"] == "directory", "the lab is not rooted at the repository"


@system
@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_every_relative_link_of_the_lesson_opens_in_the_lab(lab: LabServer, path: Path) -> None:
    lesson = f"notebooks/{path.name}"
    status, model = lab.contents(lesson, content=True)
    assert status == 200, f"the lab cannot open {lesson} (HTTP {status})"
    targets = [target for source in notebook_markdown(model["content"])
               for target in markdown_targets(source) if is_relative(target)]
    assert targets, f"{path.name} has no relative link at all: is the parser still finding them?"
    problems, anchors_of = [], {}
    for target in dict.fromkeys(targets):
        where = lab_path(lesson, target)
        if where is None:
            problems.append(f"{target}: outside the lab's root")
            continue
        status, found = lab.contents(where, content=True)
        if status != 200:
            problems.append(f"{target}: the contents API says {status} for {where}")
            continue
        anchor = urllib.parse.unquote(target.partition("#")[2])
        if anchor and where.endswith((".md", ".ipynb")):
            if where not in anchors_of:
                text = found["content"]
                markdown = ("\n".join(notebook_markdown(text)) if where.endswith(".ipynb")
                            else text)
                anchors_of[where] = lab_anchors(markdown)
            if anchor not in anchors_of[where]:
                problems.append(f"{target}: {where} opens, but JupyterLab renders no anchor "
                                f"{anchor!r} there (add <a id=\"{anchor}\"></a>)")
    assert not problems, f"{path.name}, seen from the lab:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_no_lesson_has_an_empty_markdown_cell(path: Path) -> None:
    """An empty markdown cell shows JupyterLab's placeholder ("Type Markdown and LaTeX") to learners."""
    notebook = nbformat.read(path, as_version=4)
    empty = [index for index, cell in enumerate(notebook.cells)
             if cell.cell_type == "markdown" and not cell.source.strip()]
    assert not empty, f"{path.name}: empty markdown cells at positions {empty}"


# -- the browser session --------------------------------------------------------------------------

def _playwright() -> Path:
    """The folder holding node_modules/playwright-core (installed by npm on first use)."""
    if (NPM_CACHE / "node_modules" / PLAYWRIGHT / "package.json").exists():
        return NPM_CACHE
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(NO_BROWSER_TOOLS.format(what="NPM"))
    # npm's own cache inside this clone's build/: two clones installing at once on one machine
    # (two CI runs side by side) shared ~/.npm and one got a package without its files.  And
    # one install at a time into the folder, should the module's xdist_group fail to keep it on
    # one worker (it did with pytest 9.2 and pytest-xdist 3.8: pyproject.toml pins pytest < 9.2).
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with open(NPM_CACHE / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (NPM_CACHE / "node_modules" / PLAYWRIGHT / "package.json").exists():
            return NPM_CACHE  # the other worker installed it
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save",
                               "--no-package-lock", "--prefix", str(NPM_CACHE),
                               "--cache", str(NPM_CACHE / ".npm-cache"),
                               f"{PLAYWRIGHT}@{PLAYWRIGHT_VERSION}"],
                              capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(NO_BROWSER_TOOLS.format(what=f"{PLAYWRIGHT.upper()} ({last})"))
    return NPM_CACHE


def _plan_lesson(path: Path) -> dict:
    notebook = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    sources = [target for source in notebook_markdown(notebook) for target in markdown_targets(source)
               if is_relative(target) and "#" in target
               and target.split("#")[0].endswith("docs/sources.md")]
    number = path.name[:2]
    return {"name": path.name, "number": number, "path": f"notebooks/{path.name}",
            "films": bool(re.search(r"\bfilm\b|\breplay\(", code)),
            "playground": "ipywidgets" in code and "strategy" in code,
            "sourceLink": sources[0] if sources else None,
            "loseFirstRunAll": number == LOST_CLICK_LESSON,
            "screenshotFilm": number == SCREENSHOT_LESSON,
            "screenshotSource": number == SCREENSHOT_LESSON}


@pytest.fixture(scope="module")
def session(lab: LabServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every lesson driven through the lab in Chromium once; what the browser saw, per lesson."""
    binary = headless.find_chromium()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    node = shutil.which("node")
    if node is None:
        pytest.skip(NO_BROWSER_TOOLS.format(what="NODE"))
    playwright = _playwright()
    scratch = tmp_path_factory.mktemp("lab-browser")
    plan = {"base": lab.base, "token": lab.token, "startUrl": lab.printed_url,
            "chromium": binary, "playwright": str(playwright),
            "chromiumArgs": [flag for flag in headless.CHROMIUM_FLAGS if flag != "--headless"],
            "screenshots": str(SCREENSHOTS), "filmWaitMs": int(FILM_WAIT_S * 1000),
            "lessonTimeoutMs": LESSON_TIMEOUT_S * 1000,
            "lessons": [_plan_lesson(path) for path in LESSONS]}
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # this run's pictures only
    (scratch / "plan.json").write_text(json.dumps(plan, indent=1))
    results_path = scratch / "results.json"
    done = subprocess.run([node, str(DRIVER), str(scratch / "plan.json"), str(results_path)],
                          capture_output=True, text=True, timeout=len(LESSONS) * LESSON_TIMEOUT_S)
    print(done.stdout)  # per lesson: Run All's time, each film, each source (shown with -s)
    if not results_path.exists():
        pytest.fail(f"the browser driver wrote no results (exit {done.returncode}):\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    results = json.loads(results_path.read_text())
    results["log"] = done.stdout[-4000:] + done.stderr[-2000:]
    results["by_name"] = {record["name"]: record for record in results["lessons"]}
    results["saved"] = {path.name: lab.folder / "notebooks" / path.name for path in LESSONS}
    return results


def _record(session: dict, path: Path) -> dict:
    record = session["by_name"].get(path.name)
    assert record is not None, f"the browser never reached {path.name}:\n{session['log']}"
    return record


def _failed(record: dict, *steps: str) -> str | None:
    """The driver's failure, when it happened at one of ``steps`` (or opening/running the lesson)."""
    failure = record.get("failure")
    if failure and failure.split(":")[0] in ("open", "run all", *steps):
        where = f" (screenshot {record['screenshot']})" if record.get("screenshot") else ""
        return f"{record['name']}: {failure}{where}; dialog: {record.get('dialog')}"
    return None


@system
def test_make_lab_opens_the_first_lesson_and_asks_nothing(session: dict) -> None:
    assert session["firstTab"] == LESSONS[0].name, (
        f"the address `make lab` printed opened {session['firstTab']!r}, not {LESSONS[0].name}")
    assert not session["newsPrompt"], f"JupyterLab asked about news: {session['newsPrompt']}"


def unintended_errors(notebook: nbformat.NotebookNode) -> list[str]:
    """Error outputs of cells not tagged ``shows-error``, and code cells Run All did not run."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.source.strip() and cell.get("execution_count") is None:
            found.append(f"cell {index} did not run (Run All stopped before it)")
        if INTENDED_ERROR_TAG in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {index}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr" and re.search(
                    r"Traceback|\w+Error\b", output.text):
                found.append(f"cell {index} (stderr): {output.text.strip()[-300:]}")
    return found


@system
def test_a_run_all_that_ran_nothing_is_made_again(session: dict) -> None:
    path = next(path for path in LESSONS if path.name.startswith(LOST_CLICK_LESSON))
    record = _record(session, path)
    assert _failed(record) is None, _failed(record)
    waited = record.get("firstRunAllRanNothing")
    assert waited is not None, f"{path.name}: the lost Run All went unnoticed"
    assert waited < LESSON_TIMEOUT_S / 2, (f"{path.name}: the lost Run All was noticed only after "
                                           f"{waited:.0f} s")
    # that every cell then ran is test_run_all_shows_no_error_the_lesson_does_not_declare's check


@system
@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_run_all_shows_no_error_the_lesson_does_not_declare(session: dict, path: Path) -> None:
    record = _record(session, path)
    problem = _failed(record)
    assert problem is None, problem
    assert record.get("saved"), f"{path.name}: the lesson was not saved after Run All"
    assert not record.get("dialogAfterRun"), f"{path.name}: a dialog after Run All: {record['dialogAfterRun']}"
    print(f"{path.name}: Run All took {record['runAllSeconds']:.1f} s in the lab")
    if record.get("firstRunAllRanNothing") is not None:
        print(f"NOTE: {path.name}: the first Run All ran no cell in "
              f"{record['firstRunAllRanNothing']:.1f} s (a lost click, or a kernel not yet ready); "
              "the driver clicked it again")
    notebook = nbformat.read(session["saved"][path.name], as_version=4)
    errors = unintended_errors(notebook)
    assert not errors, (f"{path.name}, run with Run All in JupyterLab, shows errors no cell declares "
                        f"(tag a cell `{INTENDED_ERROR_TAG}` to show one on purpose):\n  "
                        + "\n  ".join(errors))


@system
@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_a_source_link_of_the_lesson_opens_in_the_lab(session: dict, path: Path) -> None:
    record = _record(session, path)
    plan = _plan_lesson(path)
    if plan["sourceLink"] is None:
        pytest.fail(f"{path.name} links no source (docs/sources.md#...) to click")
    problem = _failed(record, "source link")
    assert problem is None, problem
    assert "source" in record, f"{path.name}: not reached after {record.get('failure')}"
    source = record["source"]
    assert source["found"], f"{path.name}: no rendered link to {source['link']} in the lab's page"
    assert not source.get("dialog"), f"{path.name}: clicking {source['link']} showed: {source['dialog']}"
    assert source["tab"] == "sources.md", (
        f"{path.name}: clicking {source['link']} left the tab {source['tab']!r} current")
    assert source["anchorInView"], (
        f"{path.name}: sources.md opened ({source['url']}) but not at #{source['link'].split('#')[1]}")


FILM_LESSONS = [path for path in LESSONS if _plan_lesson(path)["films"]]


@system
@pytest.mark.parametrize("path", FILM_LESSONS, ids=[path.stem for path in FILM_LESSONS])
def test_every_film_plays_on_the_first_click(session: dict, path: Path) -> None:
    record = _record(session, path)
    problem = _failed(record, "films")
    assert problem is None, problem
    assert "films" in record, f"{path.name}: not reached after {record.get('failure')}"
    films = record["films"]
    assert films, f"{path.name} makes a film, but the lab shows no player with a Play button"
    stuck = [f"film {film['index']}: one click on play, no new frame within {FILM_WAIT_S:.0f} s "
             f"(picture {film['heightBefore']:.0f} px high before the click, "
             f"{film['heightAfter']:.0f} px after)" for film in films if not film["advanced"]]
    assert not stuck, f"{path.name}, after Run All in JupyterLab:\n  " + "\n  ".join(stuck)


PLAYGROUNDS = [path for path in LESSONS if _plan_lesson(path)["playground"]]


@system
@pytest.mark.parametrize("path", PLAYGROUNDS, ids=[path.stem for path in PLAYGROUNDS])
def test_the_playground_redraws_when_a_widget_changes(session: dict, path: Path) -> None:
    record = _record(session, path)
    problem = _failed(record, "playground")
    assert problem is None, problem
    assert "playground" in record, f"{path.name}: not reached after {record.get('failure')}"
    played = record["playground"]
    assert played.get("found"), f"{path.name}: the lab shows no strategy dropdown"
    assert played["mentionsChoice"] and played["imagesAfter"] > played["imagesBefore"], (
        f"{path.name}: after {played['changed']} and Run, the panel's output was not redrawn "
        f"({played['imagesBefore']} -> {played['imagesAfter']} figures)")


@system
@pytest.mark.parametrize("path", PLAYGROUNDS, ids=[path.stem for path in PLAYGROUNDS])
def test_no_label_of_the_playground_is_cut_short(session: dict, path: Path) -> None:
    played = _record(session, path).get("playground", {})
    if not played.get("found"):
        pytest.fail(f"{path.name}: the playground's panel was not found (see the test above)")
    assert not played["cutLabels"], f"{path.name}: labels cut short in the lab: {played['cutLabels']}"


@system
def test_the_lab_stops_leaving_no_kernel_or_worker(lab: LabServer, session: dict) -> None:
    """Last: every lesson's kernel was shut down; then the server stops and nothing is left."""
    problems = [f"{record['name']}: {record['shutdownError']}" for record in session["lessons"]
                if record.get("shutdownError")]
    leftovers = lab.stop()
    assert lab.watcher is not None
    kernels = [command for command in lab.watcher.commands.values() if "ipykernel" in command]
    assert len(kernels) >= len(LESSONS), (  # else the watcher missed them, and the check is empty
        f"the watcher saw {len(kernels)} kernels under `make lab` for {len(LESSONS)} lessons")
    assert not problems, f"kernels could not be shut down: {problems}"
    assert not leftovers, f"processes outlived `make lab` (now ended by PID): {leftovers}"
