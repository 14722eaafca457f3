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
    table_line: float = 22.0     # a line of text in a table's cell
    table_char: float = 8.5      # the width of one character in a table, in pixels
    image_max: int = 470         # no output image is drawn taller than this
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


def _code_lines(text: str, style: Style) -> int:
    """Lines a text takes in a code font, long lines wrapped."""
    return sum(max(1, math.ceil(len(line) / style.code_chars)) for line in text.splitlines()) or 1


def estimate_code(source: str, style: Style = STYLE) -> float:
    """A code cell's input, in frame pixels: its lines and the editor's padding."""
    return _code_lines(source, style) * style.code_line + 24


def _table_px(table: str, style: Style) -> float:
    """An HTML table (a DataFrame's): each row as tall as its most wrapped cell."""
    total = 24.0
    for row in re.findall(r"<tr\b.*?</tr>", table, re.S):
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
                 for cell in re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", row, re.S)]
        if not cells:
            continue
        chars = max(4, int(style.content_width / len(cells) / style.table_char))
        lines = max(max(1, math.ceil(len(cell) / chars)) for cell in cells)
        total += lines * style.table_line + 12
    return total


def _png_size(data: str) -> tuple[int, int] | None:
    raw = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", raw[16:24])


def _output_px(output: nbformat.NotebookNode, style: Style) -> float:
    if output.get("output_type") == "stream":
        return _code_lines(output.get("text", "").rstrip("\n"), style) * style.code_line + 16
    if output.get("output_type") == "error":
        return _code_lines("\n".join(output.get("traceback", [])), style) * style.code_line + 16
    data = output.get("data", {})
    if "image/png" in data:
        size = _png_size(data["image/png"])
        width, height = size if size else (640, 480)
        shown = output.get("metadata", {}).get("image/png", {})  # a retina figure says its size
        width, height = shown.get("width", width), shown.get("height", height)
        height *= min(1.0, style.content_width / max(width, 1))
        return min(height, style.image_max) + 16
    if "text/html" in data:
        text = data["text/html"]
        if "<table" in text:
            return _table_px(text, style)
        if "animation" in text.lower() and "<img" in text:  # a film's player
            return style.image_max + 80
        plain = re.sub(r"<[^>]+>", " ", text)
        return _wrapped(" ".join(plain.split()), style.text_chars) * style.text_line + 24
    return _code_lines(data.get("text/plain", ""), style) * style.code_line + 16


def estimate_outputs(outputs: list, style: Style = STYLE) -> list[float]:
    """Each output of a code cell, in frame pixels (an image no taller than ``style.image_max``)."""
    return [_output_px(output, style) for output in outputs]


def _code_pieces(cell: nbformat.NotebookNode, style: Style) -> list[tuple[nbformat.NotebookNode, float]]:
    """A code cell as slide pieces: whole if it fits one slide, else input chunks and outputs."""
    outputs = cell.get("outputs", [])
    heights = estimate_outputs(outputs, style)
    whole = estimate_code(cell.source, style) + sum(heights)
    if whole <= style.budget:
        return [(cell, whole)]
    pieces = []
    lines, chunk = cell.source.splitlines(), []
    per_slide = int((style.budget - 24) // style.code_line)
    for number, line in enumerate(lines):
        chunk.append(line)
        rest = lines[number + 1:]
        at_break = not line.strip() and rest and len(chunk) >= per_slide // 2
        if len(chunk) >= per_slide or at_break or not rest:
            part = copy.deepcopy(cell)
            part.source, part.outputs = "\n".join(chunk).strip("\n"), []
            pieces.append((part, estimate_code(part.source, style)))
            chunk = []
    split_outputs, split_heights = [], []
    for output, px in zip(outputs, heights):  # a long printout: a slide's worth of lines at a time
        if output.get("output_type") == "stream" and px > style.budget:
            text = output.get("text", "").rstrip("\n").splitlines()
            for start in range(0, len(text), per_slide):
                part = copy.deepcopy(output)
                part["text"] = "\n".join(text[start:start + per_slide]) + "\n"
                split_outputs.append(part)
                split_heights.append(_output_px(part, style))
        else:
            split_outputs.append(output)
            split_heights.append(px)
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


