"""Run the course's notebooks headless, each in a fresh kernel: shared by the tests and the book.

    from notebook_runner import notebook_paths, run_notebook
    result = run_notebook(notebook_paths()[0])
    print(result.title, result.seconds, result.error)

How a notebook is run
---------------------
* **A fresh kernel per notebook**, started from *this* interpreter
  (``sys.executable``), so the notebook sees the same installed acceptlab as
  the caller.  The kernel is named ``python3`` but its spec is written to a
  temporary directory that only this runner's kernel-spec manager reads: a
  ``python3`` kernel registered elsewhere on the machine (``~/.local/share/
  jupyter``, another virtual environment) cannot be picked by mistake.
* **The working directory is the notebook's folder**, as in Jupyter, so
  ``Run.load('../data/...')`` works.
* **Every cell has a timeout** (nbclient's default is none at all) and the
  kernel is shut down afterwards, error or not; the kit's worker processes
  notice their kernel has gone and exit on their own.
* **Unix sockets, not TCP**, between the runner and the kernel (on Linux and macOS): no
  ports, and no ipykernel warning about unencrypted TCP among the runner's own output.
* **The kernel's own stdout and stderr** (not the cells' outputs, which the notebook keeps:
  what the kernel process and the processes it starts write straight to their file
  descriptors, such as a spawned child's traceback) go to a log, whose end is the result's
  ``kernel_output``, so the caller's terminal shows only the caller's own lines.
* **The time** is wall-clock time from starting the kernel to shutting it
  down: what a learner waits for with "Run all".

Parameters can be overridden (``parameters={"CONNECTIONS": 50}``): a cell
tagged ``injected-parameters`` is inserted after the cell tagged
``parameters``, the convention papermill uses, so the notebook runs with the
new values and says so.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL_NAME = "python3"
CELL_TIMEOUT = 60  # seconds per cell
# The course's goals on a 2-core machine, fresh kernels, default parameters (issue 20): what
# `python -m bench.run_all --only notebooks` reports against.  Goals, not tests: the same
# lessons take longer on a slower or busier machine, so no test asserts them.
LESSON_GOAL = 15.0  # seconds per lesson ("Run all" in a fresh kernel)
COURSE_GOAL = 60.0  # seconds for every lesson, one after the other

__all__ = [
    "ROOT", "NOTEBOOKS", "CELL_TIMEOUT", "LESSON_GOAL", "COURSE_GOAL",
    "NotebookResult", "notebook_paths", "lesson_info", "run_notebook", "failure_report",
    "write_times", "format_times",
]


@dataclass
class NotebookResult:
    """What running one notebook produced."""

    path: Path
    title: str
    goal: str
    seconds: float
    notebook: nbformat.NotebookNode  # with outputs
    error: str | None = None  # None when every cell ran
    images: int = 0  # image/png outputs
    error_outputs: list[str] = field(default_factory=list)  # 'ename: evalue' of error outputs
    kernel_output: str = ""  # the end of what the kernel process wrote outside the cells

    @property
    def ok(self) -> bool:
        return self.error is None and not self.error_outputs


def notebook_paths(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lessons, in order: ``NN_slug.ipynb`` files of ``folder``."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def _markdown_text(notebook: nbformat.NotebookNode, cells: int = 3) -> str:
    return "\n\n".join(cell.source for cell in notebook.cells[:cells]
                       if cell.cell_type == "markdown")


def lesson_info(notebook: nbformat.NotebookNode) -> tuple[str, str]:
    """(title, goal) of a lesson: its first ``# `` heading, and the paragraph that states its goal.

    The goal is the text after a ``Goal`` label (``**Goal:** ...``, ``Goal: ...``)
    or under a ``## Goal`` heading, in the first few markdown cells; '' if none.
    """
    text = _markdown_text(notebook)
    title_match = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    title = title_match.group(1).strip() if title_match else ""
    goal = ""
    heading = re.search(r"^#{2,6}\s*Goal\s*:?\s*$\n+(.+?)(?:\n\s*\n|\n#|\Z)", text,
                        re.MULTILINE | re.DOTALL | re.IGNORECASE)
    label = re.search(r"^\W{0,3}Goal\W{0,4}\s*(.+?)(?:\n\s*\n|\Z)", text,
                      re.MULTILINE | re.DOTALL | re.IGNORECASE)
    for match in (heading, label):
        if match:
            goal = " ".join(match.group(1).split())
            break
    return title, goal


def _kernel_spec_dir(base: Path) -> Path:
    """Write a ``python3`` kernel spec that runs ``sys.executable``; return its kernels/ folder."""
    kernels = base / "kernels"
    spec = kernels / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 ({sys.executable})",
        "language": "python",
        "metadata": {"debugger": False},
    }, indent=1))
    return kernels


def _private_transport(base: Path) -> dict:
    """Kernel-manager options that talk to the kernel over Unix sockets inside ``base``.

    Over TCP (Jupyter's default) the kernel's messages cross loopback ports in plain text, and
    ipykernel >= 7 says so with a warning on every start, nine times in a ``make book``.  Unix
    sockets in this run's private temporary folder (mode 0700) need no port, no encryption and
    no warning, and they vanish with the folder.  Windows has no IPC transport: TCP stays there.
    """
    if os.name != "posix":
        return {}
    return {"transport": "ipc", "connection_file": str(base / "kernel.json")}


def _inject_parameters(notebook: nbformat.NotebookNode, parameters: dict) -> None:
    """Insert a cell assigning ``parameters`` right after the ``parameters``-tagged cell."""
    lines = ["# Parameters injected by tools/notebook_runner.py"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines),
                                     metadata={"tags": ["injected-parameters"]})
    for index, existing in enumerate(notebook.cells):
        if "parameters" in existing.get("metadata", {}).get("tags", []):
            notebook.cells.insert(index + 1, cell)
            return
    raise ValueError("the notebook has no cell tagged 'parameters' to override")


def _count_outputs(notebook: nbformat.NotebookNode) -> tuple[int, list[str]]:
    images, errors = 0, []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"{output.get('ename')}: {output.get('evalue')}")
            elif "image/png" in output.get("data", {}):
                images += 1
    return images, errors


def run_notebook(path: str | Path, timeout: int = CELL_TIMEOUT,
                 parameters: dict | None = None) -> NotebookResult:
    """Execute the notebook at ``path`` top to bottom in a fresh kernel; never raises for a cell.

    A cell that fails or times out stops the run; the result's ``error``
    says which and why, and ``notebook`` holds the outputs up to there.
    """
    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    title, goal = lesson_info(notebook)
    if parameters:
        _inject_parameters(notebook, parameters)
    error = None
    with tempfile.TemporaryDirectory(prefix="acceptlab-kernel-") as base:
        specs = KernelSpecManager(kernel_dirs=[str(_kernel_spec_dir(Path(base)))])
        manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs,
                                     **_private_transport(Path(base)))
        client = NotebookClient(notebook, km=manager, kernel_name=KERNEL_NAME, timeout=timeout,
                                shutdown_kernel="graceful",
                                resources={"metadata": {"path": str(path.parent)}})
        log_path = Path(base) / "kernel.log"
        started = time.perf_counter()
        with log_path.open("w") as kernel_log:
            try:
                # cleanup_kc: shut the kernel down afterwards.  stdout/stderr: what the kernel
                # process and its children write outside any cell (spawned workers' tracebacks,
                # library warnings) goes to the log, not into the caller's terminal.
                client.execute(cleanup_kc=True, stdout=kernel_log, stderr=kernel_log)
            except CellExecutionError as exc:
                error = _last_lines(str(exc))
            except (CellTimeoutError, DeadKernelError) as exc:
                error = f"{type(exc).__name__}: {_last_lines(str(exc))}"
        seconds = time.perf_counter() - started
        kernel_output = _last_lines(log_path.read_text(errors="replace"))
    images, error_outputs = _count_outputs(notebook)
    return NotebookResult(path, title, goal, seconds, notebook, error, images, error_outputs,
                          kernel_output)


def _last_lines(text: str, keep: int = 40) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-keep:])  # the end of a traceback says what went wrong


def failure_report(result: NotebookResult) -> str:
    """Why a notebook failed: the error, then what its kernel process wrote, if anything."""
    report = result.error or "\n".join(result.error_outputs)
    if result.kernel_output:
        report += f"\n--- the kernel process wrote (outside the cells):\n{result.kernel_output}"
    return report


def write_times(results: list[NotebookResult], path: str | Path) -> Path:
    """Write ``notebook,seconds,status,images`` per notebook and a total row, as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["notebook", "seconds", "status", "images"])
        for result in results:
            out.writerow([result.path.name, f"{result.seconds:.1f}",
                          "ok" if result.ok else "error", result.images])
        out.writerow(["total", f"{sum(r.seconds for r in results):.1f}", "", ""])
    return path


def format_times(results: list[NotebookResult]) -> str:
    """The same table as text, for a terminal."""
    width = max((len(r.path.name) for r in results), default=8)
    lines = [f"{'notebook':<{width}}  seconds  status  images"]
    for r in results:
        lines.append(f"{r.path.name:<{width}}  {r.seconds:7.1f}  {'ok' if r.ok else 'ERROR':<6}  "
                     f"{r.images:6d}")
    lines.append(f"{'total':<{width}}  {sum(r.seconds for r in results):7.1f}")
    return "\n".join(lines)
