"""Build the printable handout: one Markdown file to one A4 page, as HTML and PDF.

    .venv/bin/python tools/build_handout.py docs/handout.md --out build/handout   (make handout)

``<out>/handout.html`` is one self-contained page (its local images inlined) laid
out for print: A4, narrow margins, small type, tables kept whole.  With Chromium
installed (``apt-get install chromium``) the same page is printed to
``<out>/handout.pdf`` and the build says how many pages it came to; the handout is
meant to fit on one, and the build warns when it does not.  The Markdown is
rendered by nbconvert's renderer, the one the book's lesson pages use.
"""

from __future__ import annotations

import argparse
import base64
import html
import mimetypes
import re
import sys
from pathlib import Path

from nbconvert.filters.markdown_mistune import markdown2html_mistune

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chromium as headless  # noqa: E402

PAGE_TARGET = 1  # pages the handout is meant to fit on
PRINT_CSS = """
@page { size: A4; margin: 11mm 12mm; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; font-size: 9pt; line-height: 1.3;
       color: #111; max-width: 186mm; margin: 0 auto; }
h1 { font-size: 15pt; margin: 0 0 .3em; }
h2 { font-size: 11pt; margin: .8em 0 .3em; border-bottom: 1px solid #999; }
h3 { font-size: 9.5pt; margin: .6em 0 .2em; }
p, ul, ol { margin: .25em 0 .45em; }
ul, ol { padding-left: 1.3em; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 .5em; break-inside: avoid; }
th, td { border: 1px solid #bbb; padding: .15em .35em; text-align: left; vertical-align: top; }
th { background: #eee; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; }
pre { background: #f4f4f4; padding: .3em .5em; white-space: pre-wrap; break-inside: avoid; }
img { max-width: 100%; }
a { color: inherit; }
a.anchor-link { display: none; }  /* nbconvert's ¶ after each heading */
@media screen { body { margin: 2rem auto; font-size: 11pt; } }
"""

__all__ = ["HandoutError", "render_html", "print_pdf", "count_pdf_pages", "build"]


class HandoutError(Exception):
    """A problem the user can fix (no such file): one line, no traceback."""


def _inline_images(body: str, base: Path) -> str:
    """Local ``<img src="relative/path">`` become data: URIs, so the page stands alone."""
    def replace(match: re.Match) -> str:
        src = html.unescape(match.group(2))
        if re.match(r"[a-z][a-z0-9+.-]*:", src, re.IGNORECASE):
            return match.group(0)  # data:, http:, file: ... left as written
        image = (base / src).resolve()
        if not image.is_file():
            raise HandoutError(f"the handout shows {src}, which is not at {image}")
        kind = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        return f"{match.group(1)}data:{kind};base64,{data}{match.group(3)}"

    return re.sub(r'(<img\b[^>]*\bsrc=")([^"]+)(")', replace, body)


def render_html(markdown: str, *, base: Path, title: str) -> str:
    """The handout as one self-contained, print-ready HTML page.

    Args:
        markdown: the handout's text.
        base: the folder its relative image paths start from.
        title: the page's title (the browser tab, the PDF's metadata).
    """
    body = _inline_images(markdown2html_mistune(markdown), base)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{PRINT_CSS}</style>
</head>
<body>
{body}
</body>
</html>
"""


def print_pdf(page: Path, pdf: Path, *, binary: str) -> Path:
    """Print ``page`` to ``pdf`` with headless Chromium, without its header and footer lines.

    Args:
        page: the HTML file.
        pdf: where the PDF goes.
        binary: the Chromium executable.
    """
    pdf.unlink(missing_ok=True)
    headless.run_chromium(binary, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                          page.resolve().as_uri())
    if not pdf.is_file() or not pdf.read_bytes().startswith(b"%PDF"):
        raise HandoutError(f"chromium printed no PDF to {pdf}")
    return pdf


def count_pdf_pages(pdf: Path) -> int:
    """Pages in a PDF Chromium printed: its ``/Type /Page`` objects (Skia writes them plain)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))


def build(source: Path, out: Path, *, pdf: bool = True) -> tuple[Path, Path | None, int | None]:
    """Write ``out/handout.html`` and, with Chromium, ``out/handout.pdf``.

    Args:
        source: the handout's Markdown file.
        out: the output folder.
        pdf: also print the PDF when Chromium is installed.

    Returns:
        (the HTML, the PDF or None, its page count or None).
    """
    if not source.is_file():
        raise HandoutError(f"{source} does not exist (the handout's Markdown; "
                           "HANDOUT=path/to/file.md builds another one)")
    text = source.read_text(encoding="utf-8")
    heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    title = heading.group(1).strip() if heading else source.stem
    out.mkdir(parents=True, exist_ok=True)
    page = out / "handout.html"
    page.write_text(render_html(text, base=source.parent, title=title), encoding="utf-8")
    binary = headless.find_chromium() if pdf else None
    if binary is None:
        return page, None, None
    printed = print_pdf(page, out / "handout.pdf", binary=binary)
    return page, printed, count_pdf_pages(printed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the handout's Markdown (docs/handout.md)")
    parser.add_argument("--out", type=Path, default=Path("build") / "handout",
                        help="where to write handout.html and handout.pdf "
                             "(default: build/handout)")
    parser.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    args = parser.parse_args(argv)
    try:
        page, pdf, pages = build(args.source, args.out, pdf=not args.no_pdf)
    except (HandoutError, headless.ChromiumFailed) as exc:
        first = str(exc).strip().splitlines()[0]
        print(f"build_handout: {first}", file=sys.stderr)
        return 2
    print(f"wrote {page}")
    if pdf is None and not args.no_pdf:
        print("no PDF: Chromium is not installed (apt-get install chromium); "
              "print the HTML from a browser instead")
    elif pdf is not None:
        print(f"wrote {pdf} ({pages} page{'s' if pages != 1 else ''}, A4)")
        if pages > PAGE_TARGET:
            print(f"note: the handout is meant to fit on {PAGE_TARGET} page; "
                  f"this one runs to {pages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
