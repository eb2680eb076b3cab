"""snlib's modules import each other in one direction: no import cycle, lazy (in-function) imports included.

The graph is read from the source with ``ast``: every ``import`` / ``from ... import`` anywhere in a module (top
level, functions, ``TYPE_CHECKING`` blocks) is an edge to the snlib module it names, and to that module's parent
packages (importing ``snlib.data.decoded`` runs ``snlib/data/__init__.py``); the importer's own parent packages are
left out, since Python has already started them when the importer runs.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _targets(node: ast.AST, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "snlib"]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module.split(".")[0] != "snlib":
            return []
        subs = [f"{module}.{alias.name}" for alias in node.names if _exists(f"{module}.{alias.name}")]
        return [module, *subs]
    return []


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((ROOT / "snlib").rglob("*.py")):
        name = _module_name(path)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if path.name == "__init__.py":
            ancestors.add(name)
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node, name, path.name == "__init__.py"):
                parts = target.split(".")
                edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        graph[name] = {t for t in edges - ancestors - {name} if _exists(t)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_snlib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, cyclic", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a2", "b"}, "a2": set(), "b": {"a2"}}, False),
])
def test_find_cycle_on_hand_made_graphs(graph, cyclic):
    assert (find_cycle(graph) is not None) == cyclic


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "snlib.study.study" in graph["snlib.study.plans"]          # from .study import ...
    assert "snlib.settings" in graph["snlib.study.plans"]             # from .. import settings
    assert "snlib.study.plans" in graph["snlib.study"]                # the lazy import of the package
    assert "snlib.data" in graph["snlib.engine"]                      # from .data import ...


def test_readmes_module_map_names_every_module():
    """README's "Where things are" is the map a newcomer trusts: every module of the package is named there, by
    its path or, inside a package row (``snlib/data/``), by its file name."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index("## Where things are"):text.index("\n## ", text.index("## Where things are") + 3)]
    missing = [str(path.relative_to(root)) for path in sorted((root / "snlib").rglob("*.py"))
               if path.name != "__init__.py" and str(path.relative_to(root)) not in section
               and f"`{path.name}`" not in section]
    assert not missing, f"modules README's map does not name: {missing}"
