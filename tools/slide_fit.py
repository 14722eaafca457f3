"""Cutting a lesson into reveal.js slides that fit the frame: the part of ``build_slides`` that
decides where each slide ends.

A notebook with no slide metadata is cut at its headings and *fitted to the frame*
(:func:`fit_to_frame`): a markdown cell opening with a ``#`` or ``##`` heading starts a slide,
one opening with ``###`` a sub-slide (below, in reveal's vertical order), and the cells after it
fill that slide until the next one would not fit in the :data:`FRAME` (1280 x 720, a
projector's 16:9); then a sub-slide continues below.

A cell too tall for any slide is split where it can be:

* a markdown cell between its paragraphs (a single block, e.g. a long markdown table, cannot be);
* a code cell between its input and its outputs (the outputs' slides hide the input), and a long
  input between its blank lines;
* a long printout (a stream, a traceback, plain text) into runs of the lines it *shows*: a
  printed line longer than the frame is wide wraps into several, and is counted so;
* an HTML table (a DataFrame's) between its rows, each part with the table's header, never
  inside a group of rows that a ``rowspan`` label holds together.

How tall each piece is comes from :func:`estimate_markdown`, :func:`estimate_code` and
:func:`estimate_outputs`, in the frame's pixels, from the deck's own fixed sizes (:data:`STYLE`,
which the slide template's CSS sets); ``tests/test_slides.py`` measures every slide of every deck
in Chromium, so an estimate that is too low fails there.  The cuts are made on the copy being
converted, never on the notebook file.
"""

from __future__ import annotations

import base64
import copy
import html
import math
import re
import struct
from dataclasses import dataclass

import nbformat

__all__ = ["FRAME", "STYLE", "Style", "SLIDE_TYPES", "has_slide_metadata", "tag_by_headings",
           "count_slides", "fit_to_frame", "estimate_markdown", "estimate_code",
           "estimate_outputs"]

SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}

FRAME = (1280, 720)  # a slide's size in CSS pixels; reveal scales it to the screen (16:9)


@dataclass(frozen=True)
class Style:
    """The deck's fixed sizes, in the frame's pixels: the template's CSS and the estimates share them.

    ``budget`` is how much of a slide's height the cells may fill by estimate;
    the rest is reveal's margin and room for an estimate that comes out short.
    """

    text_px: int = 20            # markdown body text
    text_line: float = 28.0      # its line height
    text_chars: int = 100        # characters on one line of markdown text (fewer than fit)
    code_px: int = 15            # code cells' input and text outputs
    code_line: float = 20.0      # their line height
    code_chars: int = 118        # characters of code on one line before it wraps
    table_line: float = 24.0     # a line of text in a table's cell (20px text)
    table_row_pad: float = 10.0  # a table row's padding and border, beyond its lines
    table_char: float = 10.5     # the width of one character in a table cell (x 1.2 in bold)
    table_padding: float = 20.0  # a table cell's padding left and right, in pixels
    table_width: int = 1230      # the width an HTML table may take (1242 in Chromium)
    image_max: int = 470         # no output image is drawn taller than this
    image_margin: int = 56       # the space above and below an output image
    content_width: int = 1180    # the width a cell's content gets
    budget: int = 600            # estimated pixels one slide may hold


STYLE = Style()


# -- cutting a notebook into slides ------------------------------------------------------------

def has_slide_metadata(notebook: nbformat.NotebookNode) -> bool:
    """Did the notebook's author mark any cell's slide type (JupyterLab's or RISE's metadata)?"""
    return any(cell.get("metadata", {}).get("slideshow", {}).get("slide_type") in SLIDE_TYPES
               for cell in notebook.cells)


def _heading_level(cell: nbformat.NotebookNode) -> int:
    if cell.cell_type != "markdown":
        return 0
    match = re.match(r"\s*(#{1,6})\s", cell.source)
    return len(match.group(1)) if match else 0


def tag_by_headings(notebook: nbformat.NotebookNode) -> int:
    """Cut an untagged notebook at its headings, in place; return the number of slides.

    ``#``/``##`` starts a slide, ``###`` a sub-slide, anything else continues the slide.
    The first cell always opens a slide, so no cell is left before the first cut.
    """
    slides = 0
    for index, cell in enumerate(notebook.cells):
        level = _heading_level(cell)
        if index == 0 or 1 <= level <= 2:
            kind = "slide"
            slides += 1
        elif level == 3:
            kind = "subslide"
        else:
            kind = "-"
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
    return slides


def count_slides(notebook: nbformat.NotebookNode) -> int:
    """Slides and sub-slides a deck will have (every cut a presenter steps through)."""
    return sum(cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
               in ("slide", "subslide") for cell in notebook.cells) or 1


# -- fitting slides into the frame ------------------------------------------------------------

_HEADING_PX = {1: 62, 2: 54, 3: 44, 4: 36, 5: 34, 6: 34}  # a heading line with its margins
_DETAILS = re.compile(r"<details>\s*<summary>(.*?)</summary>.*?</details>", re.S)


def _wrapped(text: str, chars: int) -> int:
    """Lines ``text`` takes when wrapped at ``chars`` characters (at least one).

    A link shows its text only; inline code is set in a wider font with padding, so its
    characters count for more; and a line breaks at a word, not at a character.
    """
    plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).strip()
    spans = re.findall(r"`[^`]*`", plain)
    width = len(plain) + 0.3 * sum(len(span) for span in spans) + 2 * len(spans)
    width += sum(len(word) // 2 for word in plain.split() if len(word) > 20)  # breaks early
    return max(1, math.ceil(width / (chars * 0.92)))


def _blocks(markdown: str) -> list[str]:
    """A markdown text's blocks: paragraphs, list items, headings, tables, fenced code."""
    blocks, current, fenced = [], [], False
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            current.append(line)
            fenced = not fenced
            if not fenced:  # the fence closed: the code block is done
                blocks.append("\n".join(current))
                current = []
            continue
        starts = re.match(r"\s{0,3}(#{1,6}\s|[*+-]\s|\d+\.\s)", line)
        if not fenced and (not line.strip() or starts):
            if current:
                blocks.append("\n".join(current))
            current = [line] if line.strip() else []
            if starts and starts.group(1).startswith("#"):  # a heading is a block of one line
                blocks.append(line)
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return [block for block in blocks if block.strip()]


def _block_px(block: str, style: Style) -> float:
    heading = re.match(r"\s{0,3}(#{1,6})\s", block)
    if heading:
        return _HEADING_PX[len(heading.group(1))] * _wrapped(block, style.text_chars * 2 // 3)
    lines = block.splitlines()
    if block.lstrip().startswith("```"):  # reveal's theme caps a <pre><code> at 400 px and scrolls it
        return min((len(lines) - 2) * style.code_line, 400) + 32
    if all(line.lstrip().startswith("|") for line in lines):  # a table: one row per line
        rows = [[cell for cell in line.strip().strip("|").split("|")] for line in lines
                if not re.fullmatch(r"[\s|:-]+", line)]
        columns = max(len(row) for row in rows)
        per_cell = max(8, int(style.text_chars * 0.9) // columns)
        return sum(max(_wrapped(cell, per_cell) for cell in row) * 26 + 12 for row in rows) + 12
    if re.match(r"\s{0,3}([*+-]|\d+\.)\s", block):  # a list item
        return _wrapped(" ".join(lines), style.text_chars - 8) * style.text_line + 6
    return _wrapped(" ".join(lines), style.text_chars) * style.text_line + 18


def estimate_markdown(source: str, style: Style = STYLE) -> list[tuple[str, float]]:
    """A markdown cell as (block, estimated height in frame pixels) pairs.

    A collapsed ``<details>`` block (an exercise's solution) shows only its
    summary line, so only that line is counted.
    """
    shown = _DETAILS.sub(lambda match: f"\u25b6 {match.group(1)}", source)
    return [(block, _block_px(block, style)) for block in _blocks(shown)]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a traceback's colours: not shown as characters


def _shown_lines(line: str, style: Style) -> int:
    """Lines one line of text takes in the code font: it wraps at ``style.code_chars``."""
    return max(1, math.ceil(len(_ANSI.sub("", line)) / style.code_chars))


def _code_lines(text: str, style: Style) -> int:
    """Lines a text takes in a code font, long lines wrapped."""
    return sum(_shown_lines(line, style) for line in text.splitlines()) or 1


def estimate_code(source: str, style: Style = STYLE) -> float:
    """A code cell's input, in frame pixels: its lines and the editor's padding."""
    return _code_lines(source, style) * style.code_line + 24


@dataclass(frozen=True)
class _Row:
    """One ``<tr>`` of an HTML table: where it is in the text, and what the fitter needs."""

    start: int
    end: int
    header: bool        # in <thead> (repeated on every part of a cut table)
    px: float
    cut_before: bool    # no rowspan from a row above reaches into this one


def _span(attributes: str, name: str) -> int:
    found = re.search(name + r"""\s*=\s*["']?(\d+)""", attributes)
    return max(1, int(found.group(1))) if found else 1


def _table_rows(table: str, style: Style) -> list[_Row]:
    """The rows of the first HTML table in ``table``, each as tall as its most wrapped cell.

    The browser's automatic layout gives each column the width of its longest text when the
    table fits the slide's width, and shares the width out in proportion to those when it does
    not; so the same is done here, with cells placed in their columns past any ``rowspan``
    label from above (a DataFrame's grouped index).
    """
    heads = [match.span() for match in re.finditer(r"<thead\b.*?</thead>", table, re.S)]
    found, carried = [], {}  # carried: column -> how many rows below a rowspan still takes
    for match in re.finditer(r"<tr\b.*?</tr>", table, re.S):
        column, cells, cut_before = 0, [], not carried
        for tag, attributes, inner in re.findall(r"<(t[hd])\b([^>]*)>(.*?)</t[hd]>",
                                                 match.group(), re.S):
            while column in carried:  # a label from above stands in this column
                column += 1
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inner)).split())
            colspan, rowspan = _span(attributes, "colspan"), _span(attributes, "rowspan")
            char = style.table_char * (1.2 if tag == "th" else 1.0)  # a heading cell is bold
            cells.append((column, colspan, rowspan, text, char))
            column += colspan
        carried = {column: left - 1 for column, left in carried.items() if left > 1}
        for column, colspan, rowspan, *_ in cells:
            for taken in range(column, column + colspan) if rowspan > 1 else ():
                carried[taken] = max(carried.get(taken, 0), rowspan - 1)
        header = any(start <= match.start() < end for start, end in heads)
        found.append((match.span(), header, cut_before,
                      [(column, colspan, text, char) for column, colspan, _, text, char in cells]))
    widest: dict[int, float] = {}   # a column's width with its longest text on one line
    narrowest: dict[int, float] = {}  # ... with its longest word on one line
    for *_, cells in found:
        for column, colspan, text, char in cells:
            if colspan == 1:
                word = max(map(len, re.split(r"\s+|(?<=-)", text)))  # breaks after a hyphen too
                widest[column] = max(widest.get(column, 0.0),
                                     len(text) * char + style.table_padding)
                narrowest[column] = max(narrowest.get(column, 0.0),
                                        word * char + style.table_padding)
    widths = _column_widths(narrowest, widest, style.table_width)
    rows = []
    for (start, end), header, cut_before, cells in found:
        lines = 1
        for column, colspan, text, char in cells:
            room = sum(widths.get(column + offset, 4 * char + style.table_padding)
                       for offset in range(colspan)) - style.table_padding
            if len(text) * char > room:  # it wraps, at a word
                lines = max(lines, _wrapped(text, max(4, int(room / char))))
        rows.append(_Row(start, end, header, lines * style.table_line + style.table_row_pad,
                         cut_before))
    return rows


def _column_widths(narrowest: dict[int, float], widest: dict[int, float], room: float
                   ) -> dict[int, float]:
    """Columns' widths as a browser's automatic table layout sets them (CSS 2.1, 17.5.2.2).

    Each column as wide as its longest text if they all fit; else at least as wide as its
    longest word, the room left shared in proportion to how much wider each would like to be.
    """
    if sum(widest.values()) <= room:
        return dict(widest)
    spare = room - sum(narrowest.values())
    wish = sum(widest[column] - narrowest[column] for column in widest)
    if spare <= 0 or wish <= 0:
        return dict(narrowest)
    return {column: narrowest[column] + spare * (widest[column] - narrowest[column]) / wish
            for column in widest}


def _html_px(text: str, style: Style) -> float:
    """An HTML output: its table's rows, its image, and its text outside them."""
    rows = _table_rows(text, style) if "<table" in text else []
    shown = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
    shown = re.sub(r"<table\b.*</table>", " ", shown, flags=re.S)  # its rows are counted
    px = 16.0 + sum(row.px for row in rows)
    image = re.search(r"<img\b[^>]*>", shown)
    if image:  # a film's frame: drawn as a figure is
        width, height = (_span(image.group(), name) for name in ("width", "height"))
        height = height * min(1.0, style.content_width / width) if height > 1 else style.image_max
        px += min(height, style.image_max) + style.image_margin
    plain = " ".join(re.sub(r"<[^>]+>", " ", shown).split())
    if plain:
        px += _wrapped(plain, style.text_chars) * style.text_line + 8
    return px


def _png_size(data: str) -> tuple[int, int] | None:
    raw = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", raw[16:24])


def _printout(output: nbformat.NotebookNode) -> str | None:
    """The text a printout shows (a stream, a traceback, a plain-text result), else None."""
    if output.get("output_type") == "stream":
        return output.get("text", "").rstrip("\n")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return data.get("text/plain", "") if set(data) <= {"text/plain"} else None


def _output_px(output: nbformat.NotebookNode, style: Style) -> float:
    text = _printout(output)
    if text is not None:
        return _code_lines(text, style) * style.code_line + 16
    data = output.get("data", {})
    if "image/png" in data:
        size = _png_size(data["image/png"])
        width, height = size if size else (640, 480)
        shown = output.get("metadata", {}).get("image/png", {})  # a retina figure says its size
        width, height = shown.get("width", width), shown.get("height", height)
        height *= min(1.0, style.content_width / max(width, 1))
        return min(height, style.image_max) + style.image_margin
    if "text/html" in data:
        return _html_px(data["text/html"], style)
    return _code_lines(data.get("text/plain", ""), style) * style.code_line + 16


def estimate_outputs(outputs: list, style: Style = STYLE) -> list[float]:
    """Each output of a code cell, in frame pixels (an image no taller than ``style.image_max``)."""
    return [_output_px(output, style) for output in outputs]


def _runs(text: str, lines: int, style: Style) -> list[str]:
    """``text`` in runs that each show at most ``lines`` lines, a long line counted as it wraps.

    A line that alone would wrap past ``lines`` is cut into pieces that do not.
    """
    longest = lines * style.code_chars
    runs, run, shown = [], [], 0
    for line in text.splitlines():
        for start in range(0, max(len(line), 1), longest):
            piece = line[start:start + longest]
            if run and shown + _shown_lines(piece, style) > lines:
                runs.append("\n".join(run))
                run, shown = [], 0
            run.append(piece)
            shown += _shown_lines(piece, style)
    return runs + ["\n".join(run)] if run else runs or [text]


def _table_parts(table: str, style: Style) -> list[str]:
    """An HTML table cut between its rows into tables that each fit a slide, header repeated.

    A cut never falls inside a group of rows a ``rowspan`` label holds together; a table
    whose body cannot be cut (one row, or one group) comes back whole.  Each part is measured
    as the table it becomes: the browser lays its columns out from its own rows.
    """
    if table.count("<table") != 1:
        return [table]
    body = [row for row in _table_rows(table, style) if not row.header]
    if not body:
        return [table]
    groups: list[list[_Row]] = []  # the rows no cut may separate
    for row in body:
        if row.cut_before or not groups:
            groups.append([])
        groups[-1].append(row)
    before, after = table[:body[0].start], table[body[-1].end:]

    def part(rows: list[_Row]) -> str:
        return before + table[rows[0].start:rows[-1].end] + after

    parts, rows = [], []
    for group in groups:
        if rows and _html_px(part(rows + group), style) > style.budget:
            parts.append(part(rows))
            rows = []
        rows += group
    return parts + [part(rows)] if parts else [table]


def _cut_output(output: nbformat.NotebookNode, style: Style) -> list[nbformat.NotebookNode]:
    """An output too tall for a slide as several that each fit, where a cut can be made."""
    text = _printout(output)
    if text is not None:
        texts = _runs(text, int((style.budget - 24) // style.code_line), style)
    elif "<table" in output.get("data", {}).get("text/html", ""):
        texts = _table_parts(output.data["text/html"], style)
    else:
        return [output]
    parts = []
    for text in texts:
        part = copy.deepcopy(output)
        if part.get("output_type") == "stream":
            part["text"] = text + "\n"
        elif part.get("output_type") == "error":
            part["traceback"] = text.split("\n")
        elif "text/html" in part.get("data", {}):
            part["data"] = {"text/html": text}  # not the whole table's text/plain
        else:
            part["data"]["text/plain"] = text
        parts.append(part)
    return parts


def _code_pieces(cell: nbformat.NotebookNode, style: Style) -> list[tuple[nbformat.NotebookNode, float]]:
    """A code cell as slide pieces: whole if it fits one slide, else input chunks and outputs."""
    outputs = cell.get("outputs", [])
    heights = estimate_outputs(outputs, style)
    whole = estimate_code(cell.source, style) + sum(heights)
    if whole <= style.budget:
        return [(cell, whole)]
    pieces = []
    lines, chunk, shown = cell.source.splitlines(), [], 0
    per_slide = int((style.budget - 24) // style.code_line)
    for number, line in enumerate(lines):
        chunk.append(line)
        shown += _shown_lines(line, style)
        rest = lines[number + 1:]
        at_break = not line.strip() and rest and shown >= per_slide // 2
        if shown + (_shown_lines(rest[0], style) if rest else 0) > per_slide or at_break \
                or not rest:
            part = copy.deepcopy(cell)
            part.source, part.outputs = "\n".join(chunk).strip("\n"), []
            pieces.append((part, estimate_code(part.source, style)))
            chunk, shown = [], 0
    split_outputs, split_heights = [], []
    for output, px in zip(outputs, heights):  # a long printout or table: a slide's worth at a time
        for part in (_cut_output(output, style) if px > style.budget else [output]):
            split_outputs.append(part)
            split_heights.append(_output_px(part, style) if part is not output else px)
    group, group_px = [], 0.0
    for output, px in zip(split_outputs, split_heights):  # slides of their own, input hidden
        if group and group_px + px > style.budget:
            pieces.append(_outputs_only(cell, group, group_px))
            group, group_px = [], 0.0
        group.append(output)
        group_px += px
    if group:
        pieces.append(_outputs_only(cell, group, group_px))
    return pieces


def _outputs_only(cell: nbformat.NotebookNode, outputs: list, px: float
                  ) -> tuple[nbformat.NotebookNode, float]:
    part = copy.deepcopy(cell)
    part.outputs = outputs
    part.metadata.setdefault("transient", {})["remove_source"] = True  # nbconvert hides the input
    return part, px


def _markdown_pieces(cell: nbformat.NotebookNode, style: Style
                     ) -> list[tuple[nbformat.NotebookNode, float]]:
    """A markdown cell as slide pieces: whole if it fits one slide, else runs of its blocks."""
    blocks = estimate_markdown(cell.source, style)
    total = sum(px for _, px in blocks)
    if total <= style.budget:
        return [(cell, total)]
    pieces, group, group_px = [], [], 0.0
    for block, px in blocks:
        if group and group_px + px > style.budget:
            pieces.append((group, group_px))
            group, group_px = [], 0.0
        group.append(block)
        group_px += px
    pieces.append((group, group_px))
    parts = []
    for group, px in pieces:
        part = copy.deepcopy(cell)
        part.source = "\n\n".join(group)
        parts.append((part, px))
    return parts


def fit_to_frame(notebook: nbformat.NotebookNode, style: Style = STYLE) -> int:
    """Cut an untagged notebook at its headings and into slides that fit the frame, in place.

    Returns the number of slides and sub-slides.  Each cell becomes one piece
    or several (see the module's docstring); a ``#``/``##`` heading starts a
    slide and ``###`` a sub-slide, as :func:`tag_by_headings` does, and a
    piece that would overflow the slide it joins starts a sub-slide instead.
    """
    cells, used, slides = [], 0.0, 0
    for cell in notebook.cells:
        pieces = (_markdown_pieces(cell, style) if cell.cell_type == "markdown" else
                  _code_pieces(cell, style) if cell.cell_type == "code" else [(cell, style.text_line)])
        for number, (piece, px) in enumerate(pieces):
            if number:  # a copy needs an id of its own (nbformat 4.5 ids are unique)
                piece["id"] = f"{str(cell.get('id', 'cell'))[:56]}-{number}"
            level = _heading_level(piece) if number == 0 else 0
            if not cells or 1 <= level <= 2:
                kind = "slide"
            elif level == 3 or used + px > style.budget:
                kind = "subslide"
            else:
                kind = "-"
            used = px if kind != "-" else used + px
            slides += kind != "-"
            piece.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
            cells.append(piece)
    notebook.cells = cells
    return slides


