"""Imports only go downward: the lower layers never import the pipeline, the command line,
the web application or anything else above them (README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "skyphot"

# What each layer may import from skyphot (its own package included; "skyphot" is the
# package root, i.e. ``__version__``).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core", "errors"}),
    "io": frozenset({"io", "core", "errors"}),
    "catalogs": frozenset({"catalogs", "io", "core", "errors"}),
    "adapters": frozenset({"adapters", "catalogs", "io", "core", "errors"}),
    "templates": frozenset({"templates", "catalogs", "io", "core", "errors"}),
    "pipeline": frozenset({"pipeline", "adapters", "catalogs", "templates", "io", "core",
                           "errors", "skyphot"}),
    "db": frozenset({"db", "errors"}),
}

# Upward imports another branch of issue 8 removes (engineer 'systems': io/header.py and
# catalogs/service.py stop importing pipeline.config). Listed so this test is green on this
# branch; each entry must still exist, so the test fails once the fix is merged and the
# integrator deletes the entry. Keep this empty after the merge.
PENDING: dict[tuple[str, str], str] = {}


def skyphot_imports(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) of every skyphot import in ``path`` (under package directory ``root``),
    at any depth: lazy imports and ``TYPE_CHECKING`` blocks included, as a type-only upward
    import still ties a lower layer to a higher one."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return sorted((line, m) for line, m in found if m == "skyphot" or m.startswith("skyphot."))


def upward_imports(layer: str, root: Path = SRC) -> list[tuple[str, int, str]]:
    """(file relative to ``root``, line, module) of every import ``layer`` may not make."""
    bad: list[tuple[str, int, str]] = []
    for path in sorted((root / layer).rglob("*.py")):
        for line, module in skyphot_imports(path, root):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else "skyphot"
            if target not in ALLOWED[layer]:
                bad.append((path.relative_to(root).as_posix(), line, module))
    return bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_only_downward(layer: str) -> None:
    bad = [
        f"{name}:{line} imports {module}"
        for name, line, module in upward_imports(layer)
        if (name, module) not in PENDING
    ]
    assert bad == [], f"{layer} may import only {sorted(ALLOWED[layer])}: " + "; ".join(bad)


def test_pending_exceptions_are_still_needed() -> None:
    present = {(name, module) for layer in ALLOWED for name, _, module in upward_imports(layer)}
    stale = sorted(set(PENDING) - present)
    assert stale == [], f"remove these fixed entries from PENDING: {stale}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The AST walk finds top-level, lazy, relative and type-only imports."""
    root = tmp_path / "skyphot"
    (root / "adapters").mkdir(parents=True)
    module = root / "adapters" / "probe.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import skyphot.cli\n"
        "if TYPE_CHECKING:\n"
        "    from skyphot.pipeline.state import FrameState\n"
        "def f() -> None:\n"
        "    from skyphot.web import app\n"
        "    from ..jobs import store\n"
        "    from . import stdpipe\n"
    )
    found = skyphot_imports(module, root)
    bad = [(line, m) for _, line, m in upward_imports("adapters", root)]
    assert found == [(2, "skyphot.cli"), (4, "skyphot.pipeline.state"), (6, "skyphot.web"),
                     (7, "skyphot.jobs"), (8, "skyphot.adapters")]
    assert bad == [(2, "skyphot.cli"), (4, "skyphot.pipeline.state"), (6, "skyphot.web"),
                   (7, "skyphot.jobs")]
