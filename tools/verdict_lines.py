"""Run every lesson once and list the answers its verdict cells printed, lesson by lesson.

    .venv/bin/python tools/verdict_lines.py --label quiet            # on an idle machine
    .venv/bin/python tools/verdict_lines.py --label "beside make test"

A lesson's verdict cells compute each answer from the run in front of the learner
(:func:`acceptlab.views.verdicts.verdict` prints lines that begin "The answer:").  Running
the course twice, once on a quiet machine and once on a busy one, and setting the two lists
side by side shows which answers follow the machine's state and that no prose decides them.
Each invocation appends one labelled section, with the date and the load average before and
after, to ``build/verdicts.md`` (``--out`` elsewhere) and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebook_runner as runner  # noqa: E402

MARK = "The answer:"


def answers(notebook) -> list[str]:
    """Every line of the notebook's text outputs that starts with :data:`MARK`, in order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            if not text and "data" in output:
                text = output["data"].get("text/plain", "")
            found.extend(line.strip() for line in str(text).splitlines()
                         if line.strip().startswith(MARK))
    return found


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="what the machine was doing meanwhile")
    parser.add_argument("--out", type=Path, default=runner.ROOT / "build" / "verdicts.md")
    args = parser.parse_args(argv)

    lines = [f"## {args.label}", "",
             f"{time.strftime('%Y-%m-%dT%H:%M:%S')}, {os.cpu_count()} CPUs; "
             f"load average before {_load()}"]
    failed = 0
    body = []
    for path in runner.notebook_paths():
        result = runner.run_notebook(path)
        status = "" if result.ok else " (FAILED: " + (result.error or "; ".join(
            result.error_outputs)).splitlines()[-1][:200] + ")"
        failed += not result.ok
        said = answers(result.notebook)
        body.append(f"### {path.stem}{status}")
        if not said:
            said = ["(no verdict cell: this lesson prints its measurements and predictions)"]
        body.extend(f"- {line}" for line in said)
        body.append("")
    lines[-1] += f", after {_load()}"
    section = "\n".join(lines + [""] + body)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write(section + "\n")
    print(section)
    print(f"(appended to {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
