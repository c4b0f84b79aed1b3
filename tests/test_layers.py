"""The import graph of vlp_core runs one way (docs/architecture.md): each package imports only packages
on lower floors, and no module imports itself back through others."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# floor of each package of vlp_core, bottom up (files, choices and tables are one-file helpers at the bottom)
FLOORS = {"files": 0, "choices": 0, "tables": 0, "backbone": 1, "data": 1, "methods": 2, "engine": 3, "tools": 4,
          "synthclip": 5, "experiments": 5, "commands": 6, "__main__": 7}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the vlp_core modules it imports (at any depth of its code, lazy imports included)."""
    graph = {}
    for path in sorted((ROOT / "vlp_core").rglob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vlp_core"):
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("vlp_core"))
        graph[_module(path)] = found
    return {module: {target for target in targets if target in graph} for module, targets in graph.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vlp_core"


def test_every_package_has_a_floor():
    assert {_package(m) for m in _imports()} - {"vlp_core"} == set(FLOORS)


def test_no_import_climbs_to_a_higher_floor():
    upward = [f"{module} -> {target}" for module, targets in _imports().items() for target in targets
              if _package(target) != "vlp_core" and _package(module) != "vlp_core"
              and FLOORS[_package(target)] > FLOORS[_package(module)]]
    assert upward == []


def test_no_cycles_between_modules():
    graph = _imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]) if target in path else target)
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
