"""The project's modules import in one direction only: the scenario model
(``harness/model/``) knows nothing else of the project, backends know only the model, the run
layer knows both, and the command line, reports and benchmarks sit on top. Every ``import``
statement counts: the ones inside functions (a lazy import is still a dependency) and the
ones for type hints only (under ``if TYPE_CHECKING:``). No module takes part in an import
cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "backends")

#: Layer of each module, by the longest matching dotted prefix (higher may import lower).
LAYERS: dict[str, int] = {
    # 0: the scenario model: the scenario as data
    "harness.model": 0,
    # 1: backends (adapters and the in-house tracker)
    "backends": 1,
    # 2: running cases: planning, child processes, results, execution, tuning, import/export
    "harness.names": 2, "harness.display": 2, "harness.timing_quality": 2,
    "harness.cases": 2, "harness.runner": 2, "harness.case_process": 2, "harness.child": 2,
    "harness.case_spec": 2, "harness.case_kinds": 2,
    "harness.case_support": 2,
    "harness.track_case": 2, "harness.gradient_case": 2, "harness.gradients": 2,
    "harness.agreement": 2, "harness.results": 2, "harness.rows": 2,
    "harness.metadata": 2, "harness.execution": 2, "harness.tuning": 2,
    "harness.compare": 2, "harness.io": 2, "harness.published": 2, "harness.run_lock": 2,
    "harness.preflight": 2, "harness.workloads": 2, "harness.benchmark_rule": 2,
    "harness.black_box": 2,
    # 3: what users call: command line, reports, asv tooling, the paper's reproduction
    "harness.cli": 3, "harness.report": 3, "harness.asv_tools": 3, "harness.dashboard": 3,
    "harness.reproduce": 3, "harness.tuning.report": 3,
    "harness": 3,  # the package itself and any module not listed above
}
NAMES = {0: "scenario model", 1: "backends", 2: "run layer", 3: "CLI and reports"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The project modules a file imports (absolute and relative, anywhere in the file):
    ``from pkg import name`` counts as ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _runtime_nodes(tree: ast.AST):
    """Every node of the file, the ones under ``if TYPE_CHECKING:`` included."""
    return ast.walk(tree)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for package in PACKAGES
               for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imports(path, module, set(modules)):
            while name and name not in modules:  # `from pkg import function` -> pkg
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def test_no_upward_imports():
    violations = [f"{module} ({NAMES[_layer(module)]}) imports {target} "
                  f"({NAMES[_layer(target)]})"
                  for module, targets in _graph().items() for target in sorted(targets)
                  if _layer(target) > _layer(module)]
    assert not violations, "\n".join(violations)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_layer_table_covers_the_project():
    """Every module falls under an entry more specific than the catch-all ``harness``, so a
    new module gets a layer on purpose."""
    unplaced = [m for m in _graph() if m.startswith("harness.")
                and max((p for p in LAYERS if m == p or m.startswith(p + ".")), key=len)
                == "harness"]
    assert not unplaced, f"modules without a layer in tests/test_layering.py: {unplaced}"


def test_the_model_imports_nothing_else_and_backends_only_the_model():
    """The model layer imports no other module of the project; ``backends/`` imports only
    the model layer and its own package."""
    graph = _graph()
    outside = [f"{module} imports {target}" for module, targets in graph.items()
               for target in sorted(targets)
               if (module.startswith("harness.model") and not target.startswith("harness.model"))
               or (module.startswith("backends")
                   and not target.startswith(("harness.model", "backends")))]
    assert not outside, "\n".join(outside)
