"""The package's layering, read from its own imports (type-only ones included: they name real
dependencies): no import cycle among the modules of ecs/ and kernels/, kernels/ never imports
ecs/, and only the facade (ecs/world.py), ecs/__init__.py and the one module above the facade
(ecs/ensemble.py, which runs many worlds as a user would) import World. Also the size limits
that keep each module and function readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ecs", "kernels")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in the module, wherever it stands."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name.removeprefix("ecs.") if alias.name.startswith("ecs.kernels") else alias.name, [])
                    for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base == "ecs.kernels" or base.startswith("ecs.kernels."):   # installed name of kernels/
                base = base[len("ecs."):]
            names = [alias.name for alias in node.names]
            out.append((base, names))
            out += [(f"{base}.{n}", []) for n in names if f"{base}.{n}" in known]   # from . import mailbox
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports_of(name, path, known):
            while target and target not in known:
                target = target.rpartition(".")[0]
            # a submodule's own package is imported with it whatever it says: no edge of its own
            if target and target != name and not name.startswith(target + "."):
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_of_ecs_and_kernels_has_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_reports_a_cycle_it_is_given() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_kernels_never_import_ecs() -> None:
    offenders = {name: sorted(t for t in targets if t.startswith("ecs"))
                 for name, targets in graph().items() if name.startswith("kernels")}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_the_facade_and_init_import_world() -> None:
    known = modules()
    importers = set()
    for name, path in known.items():
        for target, names in imports_of(name, path, known):
            if target == "ecs.world" or (target == "ecs" and "World" in names):
                importers.add(name)
    above = {"ecs", "ecs.ensemble"}
    assert importers <= above, f"modules below the facade import World: {sorted(importers - above)}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_within_their_size_limits(name: str) -> None:
    path = modules()[name]
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {source.count(chr(10))} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_nothing_imports_the_kernels_by_their_folder_name() -> None:
    """Installed, the kernels are ecs.kernels; a top-level `kernels` import would load a second
    copy of them from a checkout (other module objects, other numba cache entries)."""
    offenders = []
    for folder in ("ecs", "tests", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                if any(name.split(".")[0] == "kernels" for name in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
