"""The package's layering, read from its source: imports run down the data flow and never in a circle.

Every module sits in one layer of `LAYERS` (the data flow: helpers -> config -> data -> training loop ->
teacher -> transfer -> student -> distill -> evaluation and export -> tasks -> pipeline and CLI) and imports
only from its own layer or those beneath, lazy imports included; the config's registry lookups are the listed
exceptions. Nothing outside student/ names a concrete student family (the registry does); no module reaches,
through any chain of imports, a module that imports it back; no module outside tasks/ compares a task's name.
"""

from __future__ import annotations

import ast
import re
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


# lowest first; a module belongs to the first layer whose test it passes (names without the `xdistil.` prefix)
LAYERS = [
    ("helpers", lambda m: m in {"errors", "atomic", "fingerprint", "numeric", "storage", "text", "progress", "manifest", "folderlock",
                                "cpus", "batching", "distributed", "tasks.description"}),
    ("config", lambda m: m in {"config", "student.settings", "runfolder"}),
    ("data", lambda m: m.startswith("data.")),
    ("training loop", lambda m: m == "loop"),
    ("teacher", lambda m: m.startswith("teacher.")),
    ("transfer", lambda m: m.startswith("transfer.")),
    ("student", lambda m: m.startswith("student.") or m == "predictor"),
    ("distill", lambda m: m.startswith("distill.")),
    ("evaluation and export", lambda m: m.startswith(("evaluation.", "export."))),
    ("tasks", lambda m: m.startswith("tasks")),
    ("pipeline and CLI", lambda m: True),
]
# upward imports that are allowed, and why: a config section is validated by the registry entry it names
REGISTRY_LOOKUPS = {
    ("xdistil.config", "xdistil.student.registry"): "the student section is validated by its family's settings class",
    ("xdistil.config", "xdistil.distill.losses"): "stage losses are checked against the loss registry",
}


def _layer(module: str) -> tuple[int, str]:
    name = module.removeprefix("xdistil.")
    return next((index, layer) for index, (layer, belongs) in enumerate(LAYERS) if belongs(name))


def test_every_import_runs_down_the_layers_or_is_a_listed_registry_lookup():
    graph = _imports()
    upward = {(m, d): f"{_layer(m)[1]} -> {_layer(d)[1]}" for m, deps in graph.items() for d in deps if _layer(d)[0] > _layer(m)[0]}
    assert set(upward) == set(REGISTRY_LOOKUPS), {k: v for k, v in upward.items() if k not in REGISTRY_LOOKUPS}


def test_the_layers_are_not_vacuous():
    graph = _imports()
    used = {_layer(m)[1] for m in graph}
    assert used == {layer for layer, _ in LAYERS}  # every layer holds a module: none was misnamed away
    assert _layer("xdistil.teacher.finetune")[0] < _layer("xdistil.student.bilstm")[0] < _layer("xdistil.pipeline")[0]


def test_no_module_outside_tasks_compares_a_task_name():
    from xdistil.tasks.description import DESCRIPTIONS

    names = "|".join(map(re.escape, DESCRIPTIONS))
    compared = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)|["']({names})["']\s+if\b""")
    outside = [p for p in SOURCE.rglob("*.py") if "tasks" not in p.relative_to(SOURCE).parts]
    found = [f"{p.relative_to(SOURCE)}:{n}" for p in outside for n, line in enumerate(p.read_text().splitlines(), 1) if compared.search(line)]
    assert found == []
