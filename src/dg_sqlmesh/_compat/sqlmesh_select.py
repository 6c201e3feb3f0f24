"""SQLMesh's own model selector (what ``sqlmesh run --select-model`` and ``sqlmesh plan
--select-model`` take) evaluated over a project description, so that selecting models
needs no SQLMesh context, no state and no warehouse.

``NativeSelector.expand_model_selections`` parses the expressions and evaluates them over
the models it is given: names and ``*`` wildcards, ``tag:``, ``+model`` / ``model+``
(upstream / downstream), ``&``, ``|``, ``^`` (not), parentheses and ``git:<branch>``. It
reads of each model its ``fqn``, ``name``, ``tags``, ``depends_on``, ``_path`` and
``is_model``: :class:`_Node` carries them from the description. Checked against SQLMesh
0.236.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlmesh.core.selector import NativeSelector
from sqlmesh.utils.dag import DAG


class _Node:
    """What SQLMesh's selector reads of a model."""

    is_model = True

    def __init__(
        self, fqn: str, name: str, tags: Iterable[str], depends_on: Iterable[str], path: str | None
    ) -> None:
        self.fqn = fqn
        self.name = name
        self.tags = list(tags)
        self.depends_on = set(depends_on)
        self._path = Path(path) if path else None


def expand_selections(
    models: Iterable[Any],
    selections: Iterable[str],
    *,
    project_dir: str,
    default_catalog: str | None,
    dialect: str | None,
) -> set[str]:
    """The FQNs of ``models`` (objects with ``fqn``, ``name``, ``tags``, ``depends_on`` and
    ``path``, as a project description's) that ``selections`` (SQLMesh selector
    expressions, united) select."""
    nodes = {m.fqn: _Node(m.fqn, m.name, m.tags, m.depends_on, m.path) for m in models}
    dag: DAG[str] = DAG()
    for fqn, node in nodes.items():
        dag.add(fqn, node.depends_on)
    selector = NativeSelector(
        state_reader=None,  # type: ignore[arg-type] - read only for environments, never here
        models=nodes,  # type: ignore[arg-type]
        context_path=Path(project_dir),
        dag=dag,
        default_catalog=default_catalog,
        dialect=dialect,
    )
    return selector.expand_model_selections(list(selections), nodes)  # type: ignore[arg-type]
