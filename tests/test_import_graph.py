"""The import graph of the three packages, read from the source with ``ast`` (nothing is imported).

Two rules (issue 16):

* **No import cycle** between modules, counting every ``import`` statement wherever it stands (a function-level
  import that closes a circle is still a circle; only ``if TYPE_CHECKING:`` blocks are left out, as they never run).
  An edge goes to the module named, not to the packages above it: a package ``__init__`` that re-exports its
  submodules is the normal layering, not a cycle.
* **No private name crosses a module boundary**: ``from x import _y`` is refused unless ``x._y`` is itself a module
  (private modules such as ``_kernels`` are imported by name; what they hold is public to their package). A piece two
  modules share gets one home that both import by public name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("consensus_admm", "trpo_core", "marl")


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the packages (a package is its ``__init__``)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the package modules it imports, ``"module: from x import _y"`` for every private-name import)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name in modules)
                continue
            base = _base(module, path, node)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:  # ``from package import submodule``
                    graph[module].add(target)
                    continue
                if base in modules:
                    graph[module].add(base)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{module}: from {base} import {alias.name}")
    graph = {m: {t for t in targets if t != m} for m, targets in graph.items()}
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        iters = [iter(sorted(graph[root]))]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_packages_import_graph_has_no_cycle():
    graph, _ = import_graph(_modules())
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_private_name_of_another_module():
    _, private = import_graph(_modules())
    assert not private, "private names imported across modules:\n" + "\n".join(private)


# -- the checks themselves must be able to fail ----------------------------------------------------------------------


def _write(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    out = {}
    for name, text in files.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[name.removesuffix(".__init__")] = path
    return out


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    modules = _write(tmp_path, {
        "pkg.__init__": "from pkg.a import f\n",
        "pkg.a": "from pkg.b import g\ndef f():\n    return g()\n",
        "pkg.b": "def g():\n    from . import c\n    return c\n",
        "pkg.c": "import pkg.a\n",
    })
    graph, _ = import_graph(modules)
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_a_package_reexporting_its_submodules_is_not_a_cycle(tmp_path):
    modules = _write(tmp_path, {
        "pkg.__init__": "from pkg.a import f\nfrom pkg import b\n",
        "pkg.a": "from pkg import b\nfrom ._kern import k\nf = 1\n",
        "pkg.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",
        "pkg._kern": "k = 1\n",
    })
    graph, private = import_graph(modules)
    assert find_cycle(graph) is None and not private


@pytest.mark.parametrize("line", ["from pkg.a import _hidden", "from .a import _hidden, shown"])
def test_a_private_name_import_is_found(tmp_path, line):
    modules = _write(tmp_path, {"pkg.__init__": "", "pkg.a": "_hidden = shown = 1\n", "pkg.b": line + "\n"})
    _, private = import_graph(modules)
    assert private == ["pkg.b: from pkg.a import _hidden"]
