"""Which models become assets: ``select=`` and ``exclude=`` in SQLMesh's own selector
syntax (what ``sqlmesh run --select-model`` takes), resolved over the project description
(no SQLMesh context, no state, no warehouse)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.description import ProjectDescription

Selection = str | Sequence[str] | None


def as_list(selection: Selection) -> list[str]:
    if selection is None:
        return []
    return [selection] if isinstance(selection, str) else list(selection)


def select_models(
    description: ProjectDescription, select: Selection, exclude: Selection
) -> set[str]:
    """The FQNs of the models ``select`` (all when None) selects and ``exclude`` does not.

    Each expression of ``select`` must match a model: one matching nothing is an error
    naming it (a misspelt name would otherwise silently define fewer assets).
    """
    dialect = _project_dialect(description)
    chosen = set(description.models_by_fqn)
    expressions = as_list(select)
    if expressions:
        chosen = set()
        for expression in expressions:
            found = _expand(description, expression, dialect)
            if not found:
                raise SQLMeshDefinitionError(
                    f"select={expression!r} matches no model of the SQLMesh project "
                    f"{description.project_dir}. Use SQLMesh's model selector syntax, as "
                    "`sqlmesh plan --select-model` takes it: a model name (schema.model), "
                    "wildcards (schema.*), tag:<tag>, +model / model+ (upstream / "
                    "downstream), &, |, ^."
                )
            chosen |= found
    for expression in as_list(exclude):
        chosen -= _expand(description, expression, dialect)
    return chosen


def _expand(description: ProjectDescription, expression: str, dialect: str | None) -> set[str]:
    # Imported here: SQLMesh's selector is imported only by definitions that select.
    from dg_sqlmesh._compat.sqlmesh_select import expand_selections

    try:
        return expand_selections(
            description.models,
            [expression],
            project_dir=description.project_dir,
            default_catalog=description.default_catalog,
            dialect=dialect,
        )
    except Exception as exc:  # noqa: BLE001 - SQLMesh's parser raises its own error types
        raise SQLMeshDefinitionError(
            f"{expression!r} is not a SQLMesh model selection: {type(exc).__name__}: {exc}"
        ) from None


def _project_dialect(description: ProjectDescription) -> str | None:
    """The dialect names are normalised in: the models' (their project default)."""
    dialects = Counter(m.dialect for m in description.models if m.dialect)
    return dialects.most_common(1)[0][0] if dialects else None
