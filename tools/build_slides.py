"""Build the course as slide decks a teacher can project offline: one reveal.js deck per lesson.

    .venv/bin/python tools/build_slides.py --out build/slides      (or: make slides)

Each notebook ``notebooks/NN_slug.ipynb`` becomes ``<out>/NN_slug.slides.html``,
and ``<out>/index.html`` lists the decks in course order.

Which cells make a slide
------------------------
A notebook whose cells carry Jupyter's slideshow metadata
(``cell.metadata.slideshow.slide_type``: ``slide``, ``subslide``, ``fragment``,
``-``, ``skip``, ``notes``, as JupyterLab's property inspector or RISE sets
it) is cut exactly where its author said.  A notebook with no such metadata at
all is cut at its headings and *fitted to the frame* (1280 x 720): a slide holds
cells until the next would not fit, then a sub-slide continues below, and a cell
too tall for any slide is split (between paragraphs, between input and outputs,
a long printout between the lines it shows, a table between its rows).
``tools/slide_fit.py`` does the cutting and says how; ``tests/test_slides.py``
measures every slide of every deck in Chromium.

Where the outputs come from
---------------------------
A deck shows the figures of a run.  If ``make book`` has run (``--book``,
default ``build/book``) and its executed copy of a lesson is newer than the
lesson, that run is used; otherwise the lesson is executed here with
``tools/notebook_runner.py``, like the book.  ``--no-execute`` converts the
lessons as they are (code without outputs), in a second or two.

reveal.js, offline
------------------
The decks load reveal.js from ``<out>/reveal.js/`` (a relative path, no CDN),
copied from the npm package ``reveal.js`` at the pinned version: from
``--reveal DIR`` (an unpacked package) if given, else installed once with
``npm`` into ``build/.npm/`` and reused.  Without npm (``apt-get install npm``
on Debian) and without ``--reveal`` the build stops with one line saying so.
"""

from __future__ import annotations

import argparse
import fcntl
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebook_runner as runner  # noqa: E402
from slide_fit import (FRAME, STYLE, Style, count_slides, estimate_code,  # noqa: E402,F401
                       estimate_markdown, estimate_outputs, fit_to_frame, has_slide_metadata,
                       tag_by_headings)

TEMPLATES = Path(__file__).resolve().parent / "book_template"
REVEAL_PACKAGE = "reveal.js"
REVEAL_VERSION = "5.2.1"  # dist/reveal.js is a UMD build: a plain <script> defines Reveal
REVEAL_FOLDER = "reveal.js"  # beside the decks; the decks' relative url prefix
NPM_CACHE = runner.ROOT / "build" / ".npm"
# What a deck needs from the package: the library, its themes (fonts included, all local in
# the "white" theme) and the speaker-notes plugin.  Source maps are left out.
REVEAL_PARTS = ("dist", "plugin/notes", "LICENSE", "package.json")
# The cutting lives in slide_fit; its names are re-exported here, where the decks are built.
__all__ = ["SlidesError", "vendor_reveal", "has_slide_metadata", "tag_by_headings",
           "count_slides", "fit_to_frame", "estimate_markdown", "estimate_code",
           "estimate_outputs", "export_deck", "build", "FRAME", "STYLE", "Style"]


class SlidesError(Exception):
    """A problem the user can fix (no npm, a bad --reveal folder): one line, no traceback."""


# -- reveal.js -----------------------------------------------------------------------------

def _package_version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_reveal(cache: Path | None = None) -> Path:
    """The unpacked npm package reveal.js@REVEAL_VERSION, installed into ``cache`` on first use.

    Args:
        cache: folder for ``npm install --prefix`` (default ``build/.npm``); a second build
            finds the package there and needs neither npm nor the registry.
    """
    cache = NPM_CACHE if cache is None else cache
    package = cache / "node_modules" / REVEAL_PACKAGE
    if _package_version(package) == REVEAL_VERSION:
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise SlidesError("npm is not installed, and the decks need reveal.js from its package: "
                          "`apt-get install npm` (Debian), or pass --reveal DIR with an unpacked "
                          f"{REVEAL_PACKAGE}@{REVEAL_VERSION}")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:  # one install at a time into one folder:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two at once left a package without its files
        if _package_version(package) == REVEAL_VERSION:  # the other one installed it
            return package
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--no-package-lock",
             "--loglevel=error", "--prefix", str(cache), f"{REVEAL_PACKAGE}@{REVEAL_VERSION}"],
            capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or _package_version(package) != REVEAL_VERSION:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise SlidesError(f"npm could not install {REVEAL_PACKAGE}@{REVEAL_VERSION}: {last}")
    return package


def vendor_reveal(out: Path, *, source: Path | None = None) -> Path:
    """Put reveal.js beside the decks (``out/reveal.js``) so they load it by a relative path.

    Args:
        out: the decks' folder.
        source: an unpacked reveal.js package folder; None installs it with npm (once).

    Returns:
        The folder the decks load reveal.js from.
    """
    target = out / REVEAL_FOLDER
    if source is None and _package_version(target) == REVEAL_VERSION:
        return target
    source = npm_reveal() if source is None else source
    if not (source / "dist" / "reveal.js").is_file():
        raise SlidesError(f"{source} is not an unpacked reveal.js package (no dist/reveal.js)")
    if _package_version(source) != REVEAL_VERSION:
        print(f"note: {source} holds reveal.js {_package_version(source)}, "
              f"the decks were made for {REVEAL_VERSION}", file=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    for part in REVEAL_PARTS:
        origin = source / part
        if origin.is_dir():
            shutil.copytree(origin, target / part, ignore=shutil.ignore_patterns("*.map"))
        elif origin.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, target / part)
    return target


def export_deck(notebook: nbformat.NotebookNode, target: Path, *, title: str) -> Path:
    """Write ``notebook`` as a reveal.js deck that loads reveal.js from ``reveal.js/`` beside it.

    Args:
        notebook: the lesson, executed or not; untagged notebooks should be cut first
            (``tag_by_headings``).
        target: the deck's file, ``NN_slug.slides.html``.
        title: the browser tab's title.
    """
    exporter = SlidesExporter(template_name="offline-slides",
                              extra_template_basedirs=[str(TEMPLATES)],
                              reveal_url_prefix=REVEAL_FOLDER, reveal_theme="white",
                              reveal_number="c/t", reveal_width=str(FRAME[0]),
                              reveal_height=str(FRAME[1]))
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


# -- the course ------------------------------------------------------------------------------------

def _lesson(path: Path, *, book: Path | None, execute: bool, timeout: int
            ) -> tuple[nbformat.NotebookNode, str, bool]:
    """(the notebook to show, where its outputs come from, whether it ran without error)."""
    executed = book / path.name if book is not None else None
    if executed is not None and executed.is_file() and \
            executed.stat().st_mtime >= path.stat().st_mtime:
        return nbformat.read(executed, as_version=4), f"outputs of {executed}", True
    if not execute:
        return nbformat.read(path, as_version=4), "no outputs (--no-execute)", True
    result = runner.run_notebook(path, timeout=timeout)
    origin = f"executed now, {result.seconds:.1f} s"
    if not result.ok:
        print(runner.failure_report(result), file=sys.stderr)
        origin += ", FAILED"
    return result.notebook, origin, result.ok


def index_page(decks: list[tuple[Path, str, int]]) -> str:
    """A list of the decks in course order: (file, title, slides) each."""
    items = "\n".join(
        f'<li><a href="{html.escape(deck.name)}">{html.escape(title)}</a> '
        f'<span class="note">({slides} slides)</span></li>'
        for deck, title, slides in decks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>acceptlab: slides</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto;
         padding: 0 1rem; line-height: 1.5; }}
  .note {{ color: #555; font-size: .9rem; }}
</style>
</head>
<body>
<h1>acceptlab: slides</h1>
<p>One deck per lesson, in course order. Keys: arrows or space to move, <kbd>s</kbd> for the
speaker notes, <kbd>f</kbd> for full screen, <kbd>Esc</kbd> for the overview.
Everything loads from this folder: no network needed.</p>
<ol start="0">
{items}
</ol>
</body>
</html>
"""


def build(out: Path, notebooks: list[Path], *, book: Path | None = None, execute: bool = True,
          reveal: Path | None = None, timeout: int = runner.CELL_TIMEOUT) -> bool:
    """Write one deck per notebook, reveal.js beside them, and an index; True if all ran.

    Args:
        out: the decks' folder.
        notebooks: the lessons, in course order.
        book: a ``make book`` output whose executed notebooks are reused when fresh.
        execute: run a lesson that has no fresh executed copy (False: show it without outputs).
        reveal: an unpacked reveal.js package to copy (None: npm's, installed once).
        timeout: seconds any one cell may take, when a lesson is executed here.
    """
    out.mkdir(parents=True, exist_ok=True)
    vendor_reveal(out, source=reveal)
    decks, all_ok = [], True
    for number, path in enumerate(notebooks, start=1):
        print(f"[{number}/{len(notebooks)}] {path.name} ...", end=" ", flush=True)
        notebook, origin, ok = _lesson(path, book=book, execute=execute, timeout=timeout)
        all_ok = all_ok and ok
        cut = "the author's slide tags" if has_slide_metadata(notebook) else "its headings, fitted"
        if not has_slide_metadata(notebook):
            fit_to_frame(notebook)
        title = runner.lesson_info(notebook)[0] or path.stem
        deck = export_deck(notebook, out / f"{path.stem}.slides.html", title=title)
        slides = count_slides(notebook)
        decks.append((deck, title, slides))
        print(f"{slides} slides, cut at {cut}; {origin}", flush=True)
    (out / "index.html").write_text(index_page(decks), encoding="utf-8")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=runner.ROOT / "build" / "slides",
                        help="where to write the decks (default: build/slides)")
    parser.add_argument("--notebooks", type=Path, default=runner.NOTEBOOKS,
                        help="folder holding the NN_slug.ipynb lessons")
    parser.add_argument("--book", type=Path, default=runner.ROOT / "build" / "book",
                        help="a built book whose executed notebooks are reused when newer than "
                             "the lessons (default: build/book)")
    parser.add_argument("--no-execute", action="store_true",
                        help="do not run lessons that have no fresh executed copy: "
                             "their decks show code without outputs")
    parser.add_argument("--reveal", type=Path, default=None,
                        help=f"an unpacked {REVEAL_PACKAGE} npm package to use instead of "
                             "installing it with npm")
    parser.add_argument("--timeout", type=int, default=runner.CELL_TIMEOUT,
                        help="seconds any one cell may take (default: %(default)s)")
    args = parser.parse_args(argv)
    notebooks = runner.notebook_paths(args.notebooks)
    if not notebooks:
        parser.error(f"no NN_slug.ipynb notebooks in {args.notebooks}")
    try:
        ok = build(args.out, notebooks, book=args.book, execute=not args.no_execute,
                   reveal=args.reveal, timeout=args.timeout)
    except SlidesError as exc:
        print(f"build_slides: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'index.html'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
