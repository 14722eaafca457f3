"""The package's shape: subpackages whose imports point one way, and no module over 600 lines.

Each module's imports are read with ``ast`` (those inside functions too: a lazy import
is still an import) and placed in a layer; a module may import from its own layer and the
layers below, never from above.  The order is the one the README's module table shows:

    basics/specs/registry -> linux -> server -> client -> analysis -> lab -> (model) ->
    real -> views -> cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import acceptlab

PACKAGE = Path(acceptlab.__file__).resolve().parent
LAYERS = ["", "linux", "server", "client", "analysis", "lab", "model", "real", "views", "cli"]
BOTTOM = {"basics", "specs", "registry"}  # top-level modules of the first layer
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["acceptlab", *parts])


def layer(module: str) -> int:
    """The layer of ``acceptlab.x.y`` (the package itself, basics, specs and registry: 0)."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in BOTTOM:
        return 0
    if parts[0] == "__main__":
        return LAYERS.index("cli")
    assert parts[0] in LAYERS, f"{module}: in no layer; add its subpackage to LAYERS"
    return LAYERS.index(parts[0])


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import of the kit in ``path``, resolved to absolute names."""
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, name) for name in names if name.startswith("acceptlab")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("acceptlab")]
    return found


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def test_imports_point_one_way():
    wrong = []
    for path in _modules():
        mine = layer(_name(path))
        for line, target in imports(path):
            # "from .. import analysis" names a module; "from ..specs import X" names X's module
            module = target if _is_module(target) else target.rsplit(".", 1)[0]
            if layer(module) > mine:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module} "
                             f"({LAYERS[layer(module)]} is above {LAYERS[mine] or 'basics'})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import():
    """The test above can fail: a linux module importing the server, even lazily, is caught."""
    path = PACKAGE / "linux" / "support.py"
    found = imports(path, "def f():\n    from ..server import pool\n")
    assert found == [(2, "acceptlab.server")]
    assert layer(found[0][1]) > layer(_name(path))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_600_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_there_are_at_least_four_subpackages_each_saying_what_it_teaches():
    subpackages = [path.parent for path in PACKAGE.glob("*/__init__.py")]
    assert len(subpackages) >= 4
    for package in subpackages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring"
        first = doc.split("\n\n")[0].splitlines()
        assert 1 <= len(first) <= 3, f"{package.name}: say what this part teaches in 3 lines"
