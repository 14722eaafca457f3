"""Write the strategy tables of README.md and docs/handout.md from acceptlab.registry.

Each document marks where its table goes with two comments, e.g.
``<!-- strategy-table: kernel -->`` and ``<!-- /strategy-table -->``; what lies between
is replaced.  ``tests/test_registry.py`` fails when a document and the registry disagree,
and says to run this:

    PYTHONPATH=src python tools/strategy_tables.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from acceptlab.registry import markdown_table  # noqa: E402

# document: {marker: (family, columns, link to docs/sources.md)}
TABLES = {
    "README.md": {
        "all": (None, ("strategy", "origin", "prediction", "requires", "lesson"),
                "docs/sources.md"),
    },
    "docs/handout.md": {
        "kernel": ("kernel", ("strategy", "waits", "mechanism", "prediction", "wakeups"),
                   "sources.md"),
    },
}
_BLOCK = re.compile(r"(<!-- strategy-table: (\w+) -->\n)(?:.*?\n)?(<!-- /strategy-table -->)", re.S)


def rendered(document: str, text: str) -> str:
    """``text`` with each marked table rewritten from the registry."""
    tables = TABLES[document]

    def table(match: re.Match) -> str:
        family, columns, link = tables[match.group(2)]
        return match.group(1) + markdown_table(family, columns, link=link) + "\n" + match.group(3)

    return _BLOCK.sub(table, text)


def main() -> int:
    for document in TABLES:
        path = ROOT / document
        text = path.read_text(encoding="utf-8")
        new = rendered(document, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
