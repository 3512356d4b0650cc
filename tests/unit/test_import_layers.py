"""The import layers (issue 16, item 1), read from the source with ``ast``: nothing is imported.

    testbed  ──(entry points, configuration models, wire format)──>  agents
        \\                                                              /
         └──────────────────────────>  mipbase  <─────────────────────┘

* ``mipbase`` (event files, spec loading with line maps, the clock's scale, raw rtnetlink,
  link watching, the vici client) imports neither ``agents`` nor ``testbed``;
* ``agents`` import ``mipbase`` and themselves, never ``testbed``;
* ``testbed`` imports ``mipbase``, and from ``agents`` only the modules in
  ``TESTBED_MAY_IMPORT`` below. Everything else of the agents it reaches as a process
  (``python -m agents.runtime.main``, ``agents.dhcp.watch``, ``agents.dataplane.demo``:
  strings in argv, not imports);
* no cycle among the project's modules.

Every import counts, at module level or inside a function; for the layers also those under
``if TYPE_CHECKING:``, which only the cycle check leaves out (they never run). ``from P
import n`` is an import of ``P.n`` where that is a module, else of ``P``; importing ``a.b.c``
is not counted as importing the packages ``a`` and ``a.b`` (their ``__init__`` re-exporting
a submodule would otherwise be a cycle with every module of the package).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mipbase", "agents", "testbed")

# What testbed may import from the agents, and why. Anything else of theirs it starts as a
# process or not at all.
TESTBED_MAY_IMPORT = {
    # configuration models: a scenario's agent configuration is checked at its own lines
    "agents.runtime.config": "scenario/load.py",
    # the agents' process entry point, as the ``testbed agent ROLE`` command
    "agents.runtime.main": "cli.py",
    # the Mobile IP wire format, for ``testbed mip`` (encode/decode/inspect messages)
    "agents.mip.codec": "mip_cli.py",
    "agents.mip.jsonview": "mip_cli.py",
    "agents.mip.auth": "mip_cli.py",
    "agents.mip.extensions": "mip_cli.py",
    "agents.mip.errors": "mip_cli.py",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported project module
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        path = module_paths()[self.source].relative_to(ROOT)
        return f"{path}:{self.line}: {self.source} imports {self.target}"


_PATHS: dict[str, Path] = {}
_IMPORTS: list[Import] = []


def module_paths() -> dict[str, Path]:
    """Every module of the three packages -> its file."""
    if not _PATHS:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*.py")):
                parts = list(path.relative_to(ROOT).with_suffix("").parts)
                if "__pycache__" in parts:
                    continue
                if parts[-1] == "__init__":
                    parts.pop()
                _PATHS[".".join(parts)] = path
    return _PATHS


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or lies in (its longest known prefix)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports() -> list[Import]:
    """Every import of a project module by a project module."""
    if _IMPORTS:
        return _IMPORTS
    modules = module_paths()
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node, type_only in _walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".")
                    if not is_package:
                        anchor.pop()
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base]) if base else ".".join(anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else base)
            for name in targets:
                target = _resolve(name, modules)
                if target is not None and target != source:
                    _IMPORTS.append(Import(source, target, node.lineno, type_only))
    return _IMPORTS


def _layer(module: str) -> str:
    return module.split(".")[0]


def _violations(rule) -> list[str]:
    return [str(i) for i in imports() if rule(i)]


def test_the_three_packages_are_found():
    layers = {_layer(m) for m in module_paths()}
    assert layers == set(PACKAGES)
    assert len(imports()) > 100


def test_mipbase_imports_neither_agents_nor_testbed():
    bad = _violations(lambda i: _layer(i.source) == "mipbase" and _layer(i.target) != "mipbase")
    assert not bad, "mipbase is the bottom layer:\n" + "\n".join(bad)


def test_agents_do_not_import_testbed():
    bad = _violations(lambda i: _layer(i.source) == "agents" and _layer(i.target) == "testbed")
    assert not bad, "agents stand on mipbase only:\n" + "\n".join(bad)


def test_testbed_reaches_agents_only_through_entry_points_and_models():
    bad = _violations(
        lambda i: (
            _layer(i.source) == "testbed"
            and _layer(i.target) == "agents"
            and i.target not in TESTBED_MAY_IMPORT
        )
    )
    assert not bad, (
        "testbed imports of agents beyond their entry points, configuration models and wire "
        "format (start them as processes, or move what both need into mipbase):\n" + "\n".join(bad)
    )


def test_the_allowed_list_names_modules_that_exist():
    missing = sorted(set(TESTBED_MAY_IMPORT) - set(module_paths()))
    assert not missing


def _cycles() -> list[list[str]]:
    """One cycle path (first module repeated at the end) per strongly connected component."""
    graph: dict[str, set[str]] = {m: set() for m in module_paths()}
    for i in imports():
        if not i.type_only:
            graph[i.source].add(i.target)
    # Tarjan, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    paths = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest way back to start, within the component
        previous: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            following = []
            for node in frontier:
                for child in sorted(graph[node] & members):
                    if child == start:
                        found = node
                        break
                    if child not in previous:
                        previous[child] = node
                        following.append(child)
                if found is not None:
                    break
            frontier = following
        path = [start]
        node = found
        while node is not None and node != start:
            path.append(node)
            node = previous[node]
        paths.append([start, *reversed(path[1:]), start])
    return paths


def test_no_import_cycles():
    lines = {(i.source, i.target): i.line for i in imports() if not i.type_only}
    described = []
    for path in _cycles():
        steps = [f"{a} (line {lines[a, b]})" for a, b in itertools.pairwise(path)]
        described.append(" -> ".join([*steps, path[-1]]))
    assert not described, "import cycles:\n" + "\n".join(described)
