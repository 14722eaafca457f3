"""Build the course as a small static web site: every lesson executed, one HTML page each.

    .venv/bin/python tools/build_book.py --out build/book      (or: make book)

Each notebook in ``notebooks/`` (``NN_slug.ipynb``) runs top to bottom in a
fresh kernel, exactly as ``tests/test_notebooks.py`` runs it (both use
``tools/notebook_runner.py``), and is written as ``<out>/NN_slug.html`` with
its figures embedded, so the page is one self-contained file; every page
links the previous lesson, the contents and the next lesson, above and below.
``index.html`` lists the course in order, each lesson with its title, goal and
run time; ``times.csv`` has the same table.  The executed notebook is kept
beside its page (``<out>/NN_slug.ipynb``, which ``tools/build_slides.py``
reuses).  A notebook that fails still gets its page, showing the outputs up to
the failing cell; the build then exits with status 1.

It prints one line per lesson and the table of times, nothing else: the
kernels talk to the runner over Unix sockets, and what a kernel process writes
outside its cells goes to a log shown only when its lesson fails (see
``notebook_runner``).
"""

from __future__ import annotations

import argparse
import html
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebook_runner as runner  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "book_template"


@dataclass(frozen=True)
class Lesson:
    """One page of the book, known before anything runs, so every page can link its neighbours."""

    path: Path
    title: str

    @property
    def href(self) -> str:
        return self.path.stem + ".html"


def course(notebooks: list[Path]) -> list[Lesson]:
    """The lessons in course order (``NN_`` prefix), each titled by its first ``# `` heading."""
    lessons = []
    for path in sorted(notebooks):
        title, _ = runner.lesson_info(nbformat.read(path, as_version=4))
        lessons.append(Lesson(path, title or path.stem))
    return lessons


def neighbours(lessons: list[Lesson], index: int) -> dict:
    """What a page's navigation shows: its place in the course and the lessons either side."""
    def link(position: int) -> dict | None:
        if 0 <= position < len(lessons):
            return {"href": lessons[position].href, "title": lessons[position].title}
        return None

    return {"position": index + 1, "count": len(lessons),
            "prev": link(index - 1), "next": link(index + 1)}


def export_html(result: runner.NotebookResult, out: Path, *, nav: dict | None = None) -> Path:
    """Write one executed notebook as a self-contained HTML page; return its path.

    Args:
        result: the executed notebook.
        out: the book's folder.
        nav: the page's place in the course (see ``neighbours``); None leaves the links out.
    """
    # embed_images=True would re-parse raw HTML and close <details> early: figures are already
    # inline PNGs.  The "offline" template (tools/book_template/) loads nothing from the network
    # and draws the previous/contents/next links.
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    resources = {"metadata": {"name": result.title}}
    if nav is not None:
        resources["book"] = nav
    body, _ = exporter.from_notebook_node(result.notebook, resources=resources)
    target = out / (result.path.stem + ".html")
    target.write_text(body, encoding="utf-8")
    nbformat.write(result.notebook, out / result.path.name)  # executed, for the slides
    return target


def _inline(text: str) -> str:
    """A goal's inline markdown as HTML: `code` and **bold**; everything else escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def index_page(results: list[runner.NotebookResult]) -> str:
    """The table of contents: each lesson's title (a link), goal, run time and status."""
    rows = []
    for number, result in enumerate(results, start=1):
        status = "ok" if result.ok else "<strong>failed</strong>"
        rows.append(
            "<tr>"
            f"<td class=\"num\">{number}</td>"
            f"<td><a href=\"{html.escape(result.path.stem)}.html\">"
            f"{html.escape(result.title or result.path.stem)}</a></td>"
            f"<td>{_inline(result.goal)}</td>"
            f"<td class=\"num\">{result.seconds:.1f}</td>"
            f"<td>{status}</td>"
            "</tr>")
    total = sum(result.seconds for result in results)
    built = time.strftime("%Y-%m-%d %H:%M")
    where = html.escape(f"Python {platform.python_version()} on {platform.platform()}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>acceptlab: the course</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
         padding: 0 1rem; line-height: 1.45; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ text-align: left; vertical-align: top; padding: .4rem .6rem;
           border-bottom: 1px solid #ddd; }}
  td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  .note {{ color: #555; font-size: .9rem; }}
</style>
</head>
<body>
<h1>acceptlab: the course</h1>
<p>Watch the kernel hand out TCP connections to workers that share one listening socket.
The lessons are meant to be taken in this order; each page links the next.
Each lesson below was executed from top to bottom in a fresh kernel when this book was built;
the numbers in it are that run's, on that machine.</p>
<table>
<thead><tr><th>#</th><th>Lesson</th><th>Goal</th><th>Seconds</th><th>Run</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
<tfoot><tr><td colspan="3">Total</td><td class="num">{total:.1f}</td><td></td></tr></tfoot>
</table>
<p class="note">Built {built} with {where}.
Times include starting each kernel. The same table is in <a href="times.csv">times.csv</a>.</p>
</body>
</html>
"""


def build(out: Path, notebooks: list[Path], *,
          timeout: int = runner.CELL_TIMEOUT) -> list[runner.NotebookResult]:
    """Run and export every notebook, then write the index and the times table.

    Prints one progress line per lesson (``[3/9] 02_slug ... 12.3 s``) and, for a lesson that
    failed, the end of its error.

    Args:
        out: the book's folder.
        notebooks: the lessons (put in course order here).
        timeout: seconds any one cell may take.
    """
    out.mkdir(parents=True, exist_ok=True)
    lessons = course(notebooks)
    results = []
    for index, lesson in enumerate(lessons):
        print(f"[{index + 1}/{len(lessons)}] {lesson.path.name} ...", end=" ", flush=True)
        result = runner.run_notebook(lesson.path, timeout=timeout)
        export_html(result, out, nav=neighbours(lessons, index))
        print(f"{result.seconds:.1f} s" + ("" if result.ok else "  FAILED"), flush=True)
        if not result.ok:
            print(runner.failure_report(result), file=sys.stderr)
        results.append(result)
    write_index(out, results)
    return results


def write_index(out: Path, results: list[runner.NotebookResult]) -> None:
    """The book's ``index.html`` and ``times.csv``, for lessons already executed and exported."""
    (out / "index.html").write_text(index_page(results), encoding="utf-8")
    runner.write_times(results, out / "times.csv")


def write_book(out: Path, results: list[runner.NotebookResult]) -> None:
    """The whole book from lessons executed elsewhere (the test suite runs each lesson once and
    builds the book from those runs): every page, the index and the times table.

    Args:
        out: the book's folder.
        results: the executed lessons, in any order (put in course order here).
    """
    out.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda result: result.path.name)
    lessons = [Lesson(result.path, result.title or result.path.stem) for result in results]
    for index, result in enumerate(results):
        export_html(result, out, nav=neighbours(lessons, index))
    write_index(out, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=runner.ROOT / "build" / "book",
                        help="where to write the pages (default: build/book)")
    parser.add_argument("--notebooks", type=Path, default=runner.NOTEBOOKS,
                        help="folder holding the NN_slug.ipynb lessons")
    parser.add_argument("--timeout", type=int, default=runner.CELL_TIMEOUT,
                        help="seconds any one cell may take (default: %(default)s)")
    args = parser.parse_args(argv)
    notebooks = runner.notebook_paths(args.notebooks)
    if not notebooks:
        parser.error(f"no NN_slug.ipynb notebooks in {args.notebooks}")
    results = build(args.out, notebooks, timeout=args.timeout)
    print()
    print(runner.format_times(results))
    print(f"\nwrote {args.out / 'index.html'}")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
