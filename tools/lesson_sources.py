"""Give every lesson a last cell listing its sources, with links a learner opens directly.

A lesson cites its sources inline as anchors of ``docs/sources.md`` (one page, our words, the
context of each source).  That page is one click away; the source itself is two.  So each
notebook ends with a cell, tagged ``sources``, that lists every source the lesson cites, in
the order it first cites them: the entry's title and its own links (kernel source, man page,
paper, post, issue), taken from ``docs/sources.md`` so the two cannot drift apart.

    python tools/lesson_sources.py           # rewrite the cells where they changed
    python tools/lesson_sources.py --check   # exit 1 and name the notebooks that are stale

``tests/test_lessons.py`` runs the check, so a lesson that cites a new source without
regenerating its list fails the suite with the command to run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "docs" / "sources.md"
NOTEBOOKS = ROOT / "notebooks"
TAG = "sources"
HEADING = "### Sources for this lesson"
_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
_CITED = re.compile(r"\]\(\.\./docs/sources\.md#([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_TITLE = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


def entries(text: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each anchor of the sources page: (its bold title, its external links in order)."""
    found = {}
    marks = list(_ANCHOR.finditer(text))
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        body = text[mark.end():end].split("\n## ")[0]  # stop at the next section heading
        title = _TITLE.search(body)
        name = " ".join(title.group(1).split()).rstrip(".:") if title else mark.group(1)
        found[mark.group(1)] = (name,
                                _LINK.findall(body))
    return found


def cited(notebook: nbformat.NotebookNode) -> list[str]:
    """The sources.md anchors the lesson's prose links, in the order of first citation."""
    prose = "\n".join(cell.source for cell in notebook.cells
                      if cell.cell_type == "markdown" and TAG not in cell.metadata.get("tags", []))
    return list(dict.fromkeys(_CITED.findall(prose)))


def sources_cell(anchors: list[str], known: dict) -> str:
    """The markdown of the lesson's sources cell."""
    lines = [HEADING, "",
             "Each source this lesson cites, with its own links; "
             "[docs/sources.md](../docs/sources.md) says what each one shows.", ""]
    for anchor in anchors:
        title, links = known[anchor]
        opened = ", ".join(f"[{text}]({url})" for text, url in links) or "(no link: a book)"
        lines.append(f"* [{title}](../docs/sources.md#{anchor}): {opened}")
    return "\n".join(lines)


def refresh(path: Path, known: dict) -> bool:
    """Bring ``path``'s sources cell up to date; return whether it changed."""
    notebook = nbformat.read(path, as_version=4)
    text = sources_cell(cited(notebook), known)
    cells = [cell for cell in notebook.cells if TAG in cell.metadata.get("tags", [])]
    if cells and cells[0].source == text:
        return False
    if cells:
        cells[0].source = text
    else:
        cell = nbformat.v4.new_markdown_cell(text)
        cell.metadata["tags"] = [TAG]
        notebook.cells.append(cell)
    nbformat.write(notebook, path)
    return True


def stale(known: dict) -> list[str]:
    """Notebooks whose sources cell is missing or out of date."""
    names = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        cells = [cell for cell in notebook.cells if TAG in cell.metadata.get("tags", [])]
        if not cells or cells[0].source != sources_cell(cited(notebook), known):
            names.append(path.name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a lesson's sources cell is stale")
    args = parser.parse_args(argv)
    known = entries(SOURCES.read_text(encoding="utf-8"))
    if args.check:
        names = stale(known)
        for name in names:
            print(f"{name}: its sources cell is missing or stale; run python tools/lesson_sources.py")
        return 1 if names else 0
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if refresh(path, known):
            print(f"updated {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
