"""The package's import graph, read from its source: no cycles, and the layers hold.

Every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``
alike: a function-level import that dodges a cycle is still a cycle.

Each folder of ``dg_sqlmesh`` is one stage of the data flow, and a stage imports only the
stages below it (:data:`STAGES`, bottom first). Nothing inside the package imports the
package itself (``dg_sqlmesh/__init__``, the public API, which imports everything).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers.package import PACKAGE, package_modules

# Bottom first: a module may import its own stage and those before it, never one after.
STAGES: tuple[tuple[str, ...], ...] = (
    ("constants", "errors"),  # names and error types every stage uses
    ("_compat",),  # the only users of Dagster's and SQLMesh's internals
    ("metadata",),  # every metadata key, declared once
    ("project",),  # a SQLMesh project and its description: no Dagster asset in sight
    ("translation",),  # description -> asset specs and check specs
    ("execution",),  # running SQLMesh once per run, and its per-model outcomes
    ("reporting",),  # outcome -> Dagster events
    ("scheduling",),  # when models run: schedule, due models, partition status
    ("definitions",),  # what users call: factories, resources, executor, each step
    ("components",),  # the YAML component
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


def stage_of(module: str) -> int | None:
    """The index of the module's stage in :data:`STAGES` (None: the package itself)."""
    relative = module.removeprefix(PACKAGE + ".").split(".")[0]
    for index, stage in enumerate(STAGES):
        if relative in stage:
            return index
    return None


def forbidden_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Each import that runs against the stages, as a readable line."""
    broken = []
    for module in sorted(graph):
        if PACKAGE in graph[module]:
            broken.append(f"{module} imports the package's __init__ (the public API)")
        own = stage_of(module)
        if own is None:
            continue
        for target in sorted(graph[module]):
            theirs = stage_of(target)
            if theirs is not None and theirs > own:
                broken.append(
                    f"{STAGES[own][0]} imports a later stage ({STAGES[theirs][0]}): "
                    f"{module} -> {target}"
                )
    return broken


def test_the_package_has_no_import_cycle():
    graph = import_graph(package_modules())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(graph, c) for c in cycles)


def test_no_import_crosses_the_layers():
    broken = forbidden_arrows(import_graph(package_modules()))
    assert not broken, "\n".join(broken)


def test_every_module_is_in_a_stage():
    """A new module or folder must take its place in the stages, not slip between them."""
    unplaced = [m for m in package_modules() if m != PACKAGE and stage_of(m) is None]
    assert not unplaced, f"modules in no stage of STAGES: {unplaced}"


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
            "translation/__init__.py": "",
            "translation/specs.py": "def f():\n    import dg_sqlmesh.execution.runner\n",
            "execution/__init__.py": "",
            "execution/runner.py": "from dg_sqlmesh.project.load import load\n",
            "project/__init__.py": "",
            "project/load.py": "from dg_sqlmesh import thing\n",
        },
    )
    assert forbidden_arrows(import_graph(package_modules(source))) == [
        "dg_sqlmesh.project.load imports the package's __init__ (the public API)",
        # importing execution.runner runs the subpackage's __init__ first
        "translation imports a later stage (execution): dg_sqlmesh.translation.specs -> "
        "dg_sqlmesh.execution",
        "translation imports a later stage (execution): dg_sqlmesh.translation.specs -> "
        "dg_sqlmesh.execution.runner",
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


def test_only_compat_touches_either_librarys_internals():
    """``sqlmesh.core`` and ``dagster._*`` are imported in ``_compat/`` alone, where each use
    says which versions it was checked against."""
    found = []
    for name, path in package_modules().items():
        if stage_of(name) == 1:  # _compat
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            found += [
                f"{name}: {m}"
                for m in modules
                if m.startswith(("sqlmesh.core", "dagster._")) or m == "sqlmesh.core"
            ]
    assert not found, "internals imported outside _compat/:\n" + "\n".join(found)


# Imports inside a function, each deliberate: only the leader step needs SQLMesh's
# execution machinery (console, runner, row counts, checks alone), so loading the
# definitions and every other step never imports it.
LAZY_IMPORTS = {
    ("dg_sqlmesh.definitions.janitor_job", "dg_sqlmesh.execution.janitor"),
    ("dg_sqlmesh.definitions.leader", "dg_sqlmesh.execution.checks_alone"),
    ("dg_sqlmesh.definitions.leader", "dg_sqlmesh.execution.environment"),
    ("dg_sqlmesh.definitions.leader", "dg_sqlmesh.execution.plan_review"),
    ("dg_sqlmesh.definitions.plan_job", "dg_sqlmesh.execution.plan_review"),
    ("dg_sqlmesh.definitions.leader", "dg_sqlmesh.execution.row_counts"),
    ("dg_sqlmesh.definitions.leader", "dg_sqlmesh.execution.runner"),
    ("dg_sqlmesh.execution.checks_alone", "dg_sqlmesh.execution.console"),
    ("dg_sqlmesh.project.changes", "dg_sqlmesh._compat.sqlmesh_run"),
    ("dg_sqlmesh.translation.selection", "dg_sqlmesh._compat.sqlmesh_select"),
}


def function_level_imports(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """``(module, imported package module)`` for every import inside a function."""
    found = set()
    for module, path in modules.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                    found.add((module, node.module))
                elif isinstance(node, ast.Import):
                    found |= {(module, a.name) for a in node.names if a.name.startswith(PACKAGE)}
    return found


def test_function_level_imports_are_the_deliberate_lazy_ones():
    assert function_level_imports(package_modules()) == LAZY_IMPORTS
