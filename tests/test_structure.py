"""The import structure: arch <- compiler <- sim; inside sim the layers core <- studies <- report <- cli; workloads
only from the CLI and the studies; numba only in sim/core/kernels; no import cycle among tilesim modules (imports
inside functions included); no private name imported from another module; never `import arch`/`sim`/..."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"sim": "tilesim", "arch": "tilesim.arch", "compiler": "tilesim.compiler", "workloads": "tilesim.workloads"}
ALLOWED = {           # which top-level parts each part may import (besides itself)
    "arch": set(),
    "compiler": {"arch"},
    "sim": {"arch", "compiler", "workloads"},     # workloads: only cli and studies, checked by LAYERS below
    "workloads": {"compiler", "arch.errors", "arch.config"},
}
LAYERS = ("core", "studies", "report", "cli")    # sim's layers, lowest first: each imports only those before it
WORKLOADS_FROM = ("studies", "cli")


def module_name(path: Path) -> str:
    """sim/studies/sweep.py -> tilesim.studies.sweep, arch/__init__.py -> tilesim.arch."""
    rel = path.relative_to(ROOT)
    parts = [p for p in rel.with_suffix("").parts[1:] if p != "__init__"]
    return ".".join([FOLDERS[rel.parts[0]], *parts])


MODULES = {module_name(p): p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))}


def part(name: str) -> str:
    """The top-level part of a tilesim module: arch, compiler, workloads or sim."""
    for folder in ("arch", "compiler", "workloads"):
        if name == FOLDERS[folder] or name.startswith(FOLDERS[folder] + "."):
            return folder
    return "sim"


def layer(name: str) -> str | None:
    """core, studies, report or cli for a module of sim (None for the tilesim package and __main__)."""
    rest = name.split(".")
    return rest[1] if part(name) == "sim" and len(rest) > 1 and rest[1] in LAYERS else None


def resolve(name: str) -> str | None:
    """The tilesim module an imported name lives in (a module, or the package that defines the name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) of every import, at any depth (inside functions too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


def edges(module: str) -> set[tuple[str, str, int]]:
    """(target module, imported name or '', line) for each tilesim module this one imports."""
    out = set()
    for mod, names, line in imports(MODULES[module]):
        if not mod.startswith("tilesim"):
            continue
        targets = [(resolve(f"{mod}.{n}"), n) for n in names] or [(resolve(mod), "")]
        out |= {(t, n, line) for t, n in targets if t and t != module}
    return out


def graph() -> nx.DiGraph:
    """Every import between tilesim modules."""
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    g.add_edges_from((m, t) for m in MODULES for t, _, _ in edges(m))
    return g


def rel(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


@pytest.mark.parametrize("module", sorted(MODULES), ids=rel)
def test_imports_point_one_way(module):
    path = MODULES[module]
    for mod, _, line in imports(path):
        top = mod.split(".")[0]
        assert top not in FOLDERS, f"{rel(module)}:{line} imports {mod}: ours is under tilesim."
        if top == "numba":
            assert path.parent == ROOT / "sim" / "core" / "kernels", f"numba outside sim/core/kernels: {rel(module)}"
    own = part(module)
    for target, _, line in edges(module):
        there = part(target)
        short = target[len("tilesim."):]
        if there != own:
            assert there in ALLOWED[own] or any(short == a or short.startswith(a + ".") for a in ALLOWED[own]), \
                f"{rel(module)}:{line} imports {target}"
        if there == "workloads" and own == "sim":
            assert layer(module) in WORKLOADS_FROM, f"{rel(module)}:{line} imports {target} (only cli and studies)"
        if own == "sim" and there == "sim" and layer(module) and layer(target):
            assert LAYERS.index(layer(target)) <= LAYERS.index(layer(module)), \
                f"{rel(module)}:{line} imports {target}: {layer(module)} may not import {layer(target)} " \
                f"(layers: {' <- '.join(LAYERS)})"


@pytest.mark.parametrize("module", sorted(MODULES), ids=rel)
def test_no_private_name_is_imported_from_another_module(module):
    for target, name, line in edges(module):
        assert not name.startswith("_"), f"{rel(module)}:{line} imports {name} from {target}"


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph()) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_package_imports_lazily():
    """`import tilesim.arch` loads neither numba nor the studies (tilesim/__init__.py imports on first use)."""
    code = "import sys, tilesim.arch; print(sorted(m for m in ('numba', 'tilesim.studies.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
