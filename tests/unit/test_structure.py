"""The tree shows the parts (issue "Structure"): import-linter's contracts hold, no module imports
itself through others, every subpackage says what it owns and may import, the README's code map
names exactly the folders, and no class outgrows ~250 lines."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
PKG = APP / "belabox_metrics"


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), f"{lint} missing: scripts/test installs import-linter from requirements-test.txt"
    res = subprocess.run([str(lint), "--no-cache"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(APP)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", res.stdout), res.stdout[-2000:]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle_between_modules():
    sys.path.insert(0, str(APP))
    try:
        graph = grimp.build_graph("belabox_metrics", cache_dir=None)
    finally:
        sys.path.remove(str(APP))
    assert _cycles(graph) == []


def _subpackages() -> list[str]:
    return sorted(str(p.parent.relative_to(PKG)) for p in PKG.rglob("__init__.py") if p.parent != PKG)


def test_every_subpackage_says_what_it_owns_and_may_import():
    for name in _subpackages():
        doc = ast.get_docstring(ast.parse((PKG / name / "__init__.py").read_text())) or ""
        assert "May import" in doc or "may import" in doc, f"{name}/__init__.py: say what it may import"
        assert len(doc.splitlines()) >= 2, name


def test_readme_code_map_names_the_folders():
    text = (REPO / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `([a-z_/]+)/` \|", section, re.M))
    assert mapped == set(_subpackages()), f"README code map {sorted(mapped)} != folders {_subpackages()}"


def test_no_folder_over_fifteen_modules_and_no_large_class():
    for folder in [PKG, *(PKG / n for n in _subpackages())]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 16, f"{folder.relative_to(APP)} holds {len(modules)} modules"
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 260, f"{path.relative_to(APP)}: class {node.name} has {size} lines"
