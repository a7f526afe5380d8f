"""The package's layering, read from its source: imports run down the data flow and never in a circle.

teacher/ and transfer/ sit below student/ and distill/; nothing outside student/ names a concrete
student family (the registry does); no module reaches, through any chain of imports (lazy ones
included), a module that imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "xdistil"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xdistil"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("xdistil")}
        graph[name] = found
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in graph.get(todo.pop(), ()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def test_the_import_graph_was_read():
    graph = _imports()
    assert "xdistil.pipeline" in graph and "xdistil.student.registry" in graph["xdistil.pipeline"]


def test_no_module_imports_itself_back_through_any_chain():
    graph = _imports()
    assert [m for m in sorted(graph) if m in _reachable(graph, m)] == []


def test_teacher_and_transfer_import_nothing_from_student_or_distill():
    graph = _imports()
    below = {m: deps for m, deps in graph.items() if m.startswith(("xdistil.teacher", "xdistil.transfer"))}
    assert below
    assert {m: sorted(d for d in deps if d.startswith(("xdistil.student", "xdistil.distill"))) for m, deps in below.items()} == {
        m: [] for m in below
    }


def test_only_student_modules_name_a_concrete_family():
    outside = [p for p in SOURCE.rglob("*.py") if "student" not in p.relative_to(SOURCE).parts]
    assert outside
    assert [str(p) for p in outside if "BiLSTMStudent" in p.read_text() or "BiLSTMConfig" in p.read_text()] == []
