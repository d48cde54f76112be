"""The package's layout, as an import graph built with `ast` (no import is executed).

- No import cycle between the modules of daemon/ (imports inside functions count too: a lazy import is
  still a dependency; only `if TYPE_CHECKING:` blocks are left out).
- The rooms point one way: the store knows nothing of alerts, sources, staff or the command line; the stages
  know nothing of sources, the store or the command line; nothing below the doors imports the doors.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "daemon"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules of daemon/ that this file imports (an imported name that is a submodule counts as it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "daemon":
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "daemon":
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != this}


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            # A package's __init__ importing its own submodules is how a package exposes its API, and a
            # submodule importing a sibling is not a cycle through the package unless it imports the
            # package itself; both are ordinary edges here, so a real loop still shows.
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def in_room(module: str, room: str) -> bool:
    return module == f"daemon.{room}" or module.startswith(f"daemon.{room}.")


def test_the_graph_sees_the_known_edges() -> None:
    # The test would pass vacuously on an empty graph: check it finds edges we know exist.
    edges = graph()
    assert "daemon.store.records" in edges["daemon.pipeline"]
    assert any(in_room(m, "stages") for m in edges["daemon.pipeline"])
    assert len(edges) > 40


def test_no_import_cycle_in_the_package() -> None:
    assert find_cycle(graph()) is None, " → ".join(find_cycle(graph()) or [])


def test_a_cycle_would_be_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_store_imports_no_room_above_it() -> None:
    bad = [(m, i) for m, deps in graph().items() if in_room(m, "store") for i in deps
           if any(in_room(i, room) for room in ("alerts", "sources", "staff", "cli", "service", "pipeline"))]
    assert not bad, bad


def test_the_stages_import_no_source_store_or_door() -> None:
    bad = [(m, i) for m, deps in graph().items() if in_room(m, "stages") for i in deps
           if any(in_room(i, room) for room in ("sources", "store", "cli", "service", "pipeline", "staff"))]
    assert not bad, bad


def test_nothing_below_the_doors_imports_them() -> None:
    # cli/ (and later the web application) are doors onto the same operations: no room below may reach up.
    bad = [(m, i) for m, deps in graph().items() if not in_room(m, "cli") for i in deps if in_room(i, "cli")]
    assert not bad, bad


def test_rules_and_model_import_no_stage() -> None:
    edges = graph()
    for module in ("daemon.rules", "daemon.model", "daemon.config"):
        assert not [i for i in edges[module] if in_room(i, "stages")], module
