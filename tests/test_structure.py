"""Imports point one way: arch <- compiler <- sim; workloads use the compiler's IR; numba only in sim/kernels."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"arch", "compiler", "sim", "workloads"}
PKG = {"arch": "tilesim.arch", "compiler": "tilesim.compiler", "workloads": "tilesim.workloads", "sim": "tilesim"}
ALLOWED = {
    "arch": set(),
    "compiler": {"arch"},
    "sim": {"arch", "compiler"},
    "workloads": {"compiler", "arch.errors", "arch.config"},
}


def old_style(name: str) -> str:
    """tilesim.arch.x -> arch.x, tilesim.core.x -> sim.core.x: the folder an import resolves to."""
    for folder in ("arch", "compiler", "workloads"):
        if name == PKG[folder] or name.startswith(PKG[folder] + "."):
            return name[len("tilesim."):]
    return "sim" + name[len("tilesim"):] if name == "tilesim" or name.startswith("tilesim.") else name


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules():
    for pkg in sorted(OURS):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path


@pytest.mark.parametrize("pkg, path", list(modules()), ids=lambda x: str(x)[len(str(ROOT)) + 1:] if
                         isinstance(x, Path) else x)
def test_imports_point_one_way(pkg, path):
    allowed = ALLOWED[pkg]
    if path in (ROOT / "sim" / "cli" / "main.py", ROOT / "sim" / "studies" / "sweep.py", ROOT / "sim" / "__init__.py"):
        allowed = allowed | {"workloads"}              # the CLI and the sweep sit on top of everything
    for name in imports_of(path):
        assert name.split(".")[0] not in OURS, f"{path.relative_to(ROOT)} imports {name}: ours is under tilesim."
        name = old_style(name)
        top = name.split(".")[0]
        if top in OURS and top != pkg:
            assert top in allowed or name in allowed or any(name.startswith(a + ".") for a in allowed), \
                f"{path.relative_to(ROOT)} imports {name}"
        if top == "numba":
            assert path.parent == ROOT / "sim" / "core" / "kernels", f"numba outside sim/core/kernels: {path}"
