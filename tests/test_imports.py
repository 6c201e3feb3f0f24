"""The package's import graph, read from its source: no cycles, and the layers hold.

Every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``
alike: a function-level import that dodges a cycle is still a cycle.

* describing a model (loading the project, translating it, building specs) never
  imports ``dg_sqlmesh.execution``: code servers load definitions without it;
* execution never imports ``dg_sqlmesh.components``;
* nothing inside the package imports the package itself (``dg_sqlmesh/__init__``,
  the public API, which imports everything).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers.package import PACKAGE, package_modules

# Modules that load a project and describe its models (prefixes: a module and its
# submodules).
LOADING = ("project", "project_dirs", "project_config", "project_context", "catalog_cache")
DESCRIBING = LOADING + (
    "description",
    "describe",
    "column_lineage",
    "translator",
    "defaults",
    "specs",
    "checks",
    "tags",
    "cron",
    "freshness",
    "automation",
    "constants",
    "options",
    "errors",
    "sqlmesh_compat",
    "dagster_compat",
)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in its source.

    ``from a.b import c`` is an arrow to ``a.b.c`` when that is a module, to ``a.b``
    otherwise. Importing a module of a subpackage from outside it also runs the
    subpackage's ``__init__``: an arrow to it too.
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        arrows = set()
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            arrows.add(target)
            parts = target.split(".")
            for depth in range(2, len(parts)):  # the subpackages it runs, root excluded
                parent = ".".join(parts[:depth])
                if parent in modules and not (name + ".").startswith(parent + "."):
                    arrows.add(parent)
        arrows.discard(name)
        graph[name] = {t for t in arrows if t in modules}
    return graph


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def describe_cycle(graph: dict[str, set[str]], group: list[str]) -> str:
    """The modules of a cycle, and the shortest way around it from the first of them."""
    members = set(group)
    start = group[0]
    sub = {node: graph[node] & members for node in group}
    back = min(
        (path + [start] for node, path in reachable(sub, start).items() if start in sub[node]),
        key=len,
    )
    return f"{', '.join(group)} (e.g. {' -> '.join(back)})"


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not, with one path to it."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    return paths


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == f"{PACKAGE}.{p}" or module.startswith(f"{PACKAGE}.{p}.") for p in prefixes)


def _shortest(rule: str, paths: dict[str, list[str]], targets: tuple[str, ...]) -> list[str]:
    found = sorted((p for t, p in paths.items() if _in(t, targets)), key=lambda p: (len(p), p))
    return [f"{rule}: {' -> '.join(found[0])}"] if found else []


def forbidden_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Each import path that breaks one of the layout's rules, as a readable line."""
    broken = []
    for module in sorted(graph):
        paths = reachable(graph, module)
        if _in(module, DESCRIBING):
            layer = "loading" if _in(module, LOADING) else "describing a model"
            broken += _shortest(f"{layer} imports execution", paths, ("execution",))
        if _in(module, ("execution",)):
            broken += _shortest("execution imports the component", paths, ("components",))
        if PACKAGE in graph[module]:
            broken.append(f"{module} imports the package's __init__ (the public API)")
    return broken


def test_the_package_has_no_import_cycle():
    graph = import_graph(package_modules())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(graph, c) for c in cycles)


def test_no_import_crosses_the_layers():
    broken = forbidden_arrows(import_graph(package_modules()))
    assert not broken, "\n".join(broken)


def test_every_module_of_the_rules_exists():
    """A renamed module must not silently drop out of the rules above."""
    modules = package_modules()
    missing = [
        p
        for p in DESCRIBING + ("execution", "components")
        if not any(_in(m, (p,)) for m in modules)
    ]
    assert not missing, f"the layer lists name modules that do not exist: {missing}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / PACKAGE


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a function-level import closing a cycle is a cycle
            {
                "__init__.py": "",
                "a.py": "from dg_sqlmesh.b import B\n",
                "b.py": "def f():\n    from dg_sqlmesh.a import A\n",
            },
            [["dg_sqlmesh.a", "dg_sqlmesh.b"]],
        ),
        (  # relative imports and TYPE_CHECKING blocks count too
            {
                "__init__.py": "",
                "a.py": "from .b import B\n",
                "b.py": "import typing\nif typing.TYPE_CHECKING:\n    from . import a\n",
            },
            [["dg_sqlmesh.a", "dg_sqlmesh.b"]],
        ),
        ({"__init__.py": "", "a.py": "from dg_sqlmesh.b import B\n", "b.py": ""}, []),
    ],
)
def test_the_graph_reader_sees_cycles(tmp_path, files, expected):
    assert find_cycles(import_graph(package_modules(_write(tmp_path, files)))) == expected


def test_the_graph_reader_sees_forbidden_arrows(tmp_path):
    source = _write(
        tmp_path,
        {
            "__init__.py": "",
            "specs.py": "from dg_sqlmesh.translator import T\n",
            "translator.py": "def f():\n    import dg_sqlmesh.execution.step\n",
            "execution/__init__.py": "",
            "execution/step.py": "from dg_sqlmesh.components.c import C\n",
            "components/__init__.py": "",
            "components/c.py": "from dg_sqlmesh import thing\n",
        },
    )
    assert forbidden_arrows(import_graph(package_modules(source))) == [
        "dg_sqlmesh.components.c imports the package's __init__ (the public API)",
        # importing components.c runs the subpackage's __init__ first
        "execution imports the component: dg_sqlmesh.execution.step -> dg_sqlmesh.components",
        "describing a model imports execution: dg_sqlmesh.specs -> dg_sqlmesh.translator"
        " -> dg_sqlmesh.execution",
        "describing a model imports execution: dg_sqlmesh.translator -> dg_sqlmesh.execution",
    ]


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers/, never in a test module."""
    tests = Path(__file__).parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [line.split()[1] for line in node.value.splitlines() if _imports(line)]
            found += [f"{path.relative_to(tests)}: {n}" for n in names if n.startswith("test_")]
    assert not found, "test modules imported:\n" + "\n".join(found)


def _imports(line: str) -> bool:
    words = line.split()
    return len(words) > 1 and words[0] in ("import", "from")
