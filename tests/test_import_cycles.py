"""No import cycle inside ``integrations/``: every module's imports of
``integrations.*`` (at module level and inside functions, relative ones
resolved; ``if TYPE_CHECKING:`` blocks ignored) form a graph without a cycle."""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

from django.test import SimpleTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "integrations"


def module_names() -> dict[str, Path]:
    """Every module under integrations/, by dotted name."""
    modules = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in the module, except under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The integrations modules this one imports."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from integrations.x import y``: y is a submodule, or a name in x.
            candidates = [f"{base}.{alias.name}" for alias in node.names]
            candidates = [c if c in modules else base for c in candidates]
        for candidate in candidates:
            # ``import integrations.a.b`` runs integrations.a.b (and its parents).
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate.split(".")[0] == PACKAGE and candidate != name:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        path = [start]
        colour[start] = GREY
        iterators = [iter(sorted(graph[start]))]
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                colour[path.pop()] = BLACK
                iterators.pop()
            elif colour.get(child, BLACK) == GREY:
                return [*path[path.index(child) :], child]
            elif colour.get(child) == WHITE:
                colour[child] = GREY
                path.append(child)
                iterators.append(iter(sorted(graph[child])))
    return None


class ImportCycleTests(SimpleTestCase):
    def test_no_module_in_integrations_imports_itself_back(self) -> None:
        cycle = find_cycle(import_graph())
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

    def test_a_two_module_cycle_is_printed_start_to_start(self) -> None:
        graph = {"integrations.a": {"integrations.b"}, "integrations.b": set()}
        assert find_cycle(graph) is None
        graph["integrations.b"] = {"integrations.a"}
        cycle = find_cycle(graph)
        assert cycle == ["integrations.a", "integrations.b", "integrations.a"]

    def test_it_reads_function_level_relative_and_submodule_imports(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            package = Path(tmp) / "integrations" / "api"
            package.mkdir(parents=True)
            views = package / "views.py"
            views.write_text(
                "from typing import TYPE_CHECKING\n"
                "from integrations.api import schema\n"
                "from .errors import Conflict\n"
                "if TYPE_CHECKING:\n"
                "    from integrations import models\n"
                "def f():\n"
                "    from integrations.registry import add_approved_users\n"
                "    import integrations.audit\n"
            )
            modules = dict.fromkeys(
                [
                    "integrations",
                    "integrations.api",
                    "integrations.api.views",
                    "integrations.api.schema",
                    "integrations.api.errors",
                    "integrations.models",
                    "integrations.registry",
                    "integrations.audit",
                ],
                views,
            )
            found = imports_of("integrations.api.views", views, modules)
        assert found == {
            "integrations.api.schema",
            "integrations.api.errors",
            "integrations.registry",
            "integrations.audit",
        }

    def test_it_finds_the_cycle_the_views_and_schema_once_had(self) -> None:
        graph = import_graph()
        # The real graph has the edges the test relies on being seen.
        assert "integrations.api.schema" in graph["integrations.api.views"]
        assert "integrations.api.views" in graph["integrations.api.connectivity_views"]
        graph["integrations.api.schema"].add("integrations.api.connectivity_views")
        cycle = find_cycle(graph)
        assert cycle is not None
        assert "integrations.api.schema" in cycle
