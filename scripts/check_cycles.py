#!/usr/bin/env python3
"""Print the import cycles between aigateway's packages; exit 1 if there is one.

A node is a first-level part of `src/aigateway/`: a package (`pricing`, `api`, ...) or a
top-level module (`cli`, `app`, `appkeys`, `config`, ...). Every import counts, also one
inside a function (a lazy import is still a dependency), except those under
`if TYPE_CHECKING:` (they never run; they only tell the type checker a name).
Uses only the standard library, so it runs before anything is installed:

    python3 scripts/check_cycles.py            # "no import cycle between packages", exit 0
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = "aigateway"
SRC = Path(__file__).resolve().parent.parent / "src" / ROOT


def _node_of(path: Path, src: Path) -> str:
    return path.relative_to(src).parts[0].removesuffix(".py")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)  # the `else:` of a TYPE_CHECKING block does run
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            todo.append(child)


def _targets(imp: ast.Import | ast.ImportFrom, module: list[str]) -> Iterator[list[str]]:
    """Dotted names (as parts) an import reaches, resolved against the importing module's parts."""
    if isinstance(imp, ast.Import):
        for alias in imp.names:
            yield alias.name.split(".")
        return
    if imp.level:
        base = module[: len(module) - imp.level]
    else:
        base = []
    stem = base + (imp.module.split(".") if imp.module else [])
    if imp.module:
        yield stem
    else:  # `from . import x` / `from aigateway import x`: each name is a module
        for alias in imp.names:
            yield stem + [alias.name]
    if imp.module and stem == [ROOT]:
        for alias in imp.names:
            yield stem + [alias.name]


def package_graph(src: Path = SRC) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("").parts
        # `from . import x` (level 1) strips the last part: the module's own name, or `__init__`
        ref = list(rel)
        here = _node_of(path, src)
        if here == "__init__" or here == "__main__":
            continue
        edges = graph.setdefault(here, set())
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for imp in _imports(tree):
            for target in _targets(imp, ref):
                if len(target) >= 2 and target[0] == ROOT and target[1] not in (here, "__init__"):
                    edges.add(target[1])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop inside a component, for the message (a -> b -> a)."""
    members = set(component)
    start = component[0]
    trail, seen = [start], {start}
    while True:
        nxt = sorted(graph[trail[-1]] & members)
        back = start if start in nxt and len(trail) > 1 else None
        if back:
            return " -> ".join(trail + [start])
        step = next((n for n in nxt if n not in seen), None)
        if step is None:
            return " <-> ".join(component)
        trail.append(step)
        seen.add(step)


def main() -> int:
    graph = package_graph()
    found = cycles(graph)
    for component in found:
        print(f"import cycle: {_path(graph, component)}  (component: {', '.join(component)})")
    if not found:
        print(f"no import cycle between packages ({len(graph)} packages and top-level modules)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
