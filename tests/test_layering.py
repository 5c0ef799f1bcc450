"""The project's modules import in one direction only: the scenario model knows nothing of
backends or runs, backends know the model, the run layer knows both, and the command line,
reports and benchmarks sit on top. Every ``import`` statement counts, also the ones inside
functions (a lazy import is still a dependency); imports for type hints only (under ``if
TYPE_CHECKING:``) do not. No module takes part in an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "backends")

#: Layer of each module, by the longest matching dotted prefix (higher may import lower).
LAYERS: dict[str, int] = {
    # 0: the scenario model and its vocabulary
    "harness.errors": 0, "harness.vocabulary": 0, "harness.yaml_load": 0,
    "harness.scenario": 0, "harness.lattice": 0, "harness.parameters": 0,
    "harness.particles": 0, "harness.observables": 0, "harness.reference_particle": 0,
    "harness.fields": 0, "harness.beam": 0, "harness.scenario_edit": 0,
    "harness.display": 0, "harness.timing_quality": 0,
    # 1: backends (adapters and the in-house tracker)
    "backends": 1,
    # 2: running cases: planning, child processes, results, execution, tuning
    "harness.io.openpmd": 0,  # beam files are scenario input
    "harness.tuning.problem": 0,  # the tuning block of a scenario
    "harness.cases": 2, "harness.runner": 2, "harness.child": 2, "harness.case_spec": 2,
    "harness.case_support": 2,
    "harness.track_case": 2, "harness.gradient_case": 2, "harness.gradients": 2,
    "harness.agreement": 2, "harness.results": 2, "harness.rows": 2,
    "harness.metadata": 2, "harness.execution": 2, "harness.tuning": 2,
    "harness.compare": 2, "harness.io": 2, "harness.published": 2, "harness.run_lock": 2,
    "harness.faults": 2, "harness.preflight": 2,
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
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


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
    # a package importing its own submodules from __init__ is not a cycle worth reporting
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, "import cycles: " + "; ".join(" <-> ".join(c) for c in real)


def test_the_layer_table_covers_the_project():
    """Every module falls under an entry more specific than the catch-all ``harness``, so a
    new module gets a layer on purpose."""
    unplaced = [m for m in _graph() if m.startswith("harness.")
                and max((p for p in LAYERS if m == p or m.startswith(p + ".")), key=len)
                == "harness"]
    assert not unplaced, f"modules without a layer in tests/test_layering.py: {unplaced}"
