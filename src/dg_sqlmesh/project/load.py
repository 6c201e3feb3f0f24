"""Loading a SQLMesh project into a :class:`~dg_sqlmesh.ProjectDescription`.

The description is built from files only (no warehouse connection, no SQLMesh state);
``catalog_cache`` keeps it on disk between loads.
"""

from __future__ import annotations

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.context import create_context
from dg_sqlmesh.project.describe import describe_context
from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.project.dirs import ProjectDirs, primary_project_dir, resolve_project_dirs


def load_project(project_dir: ProjectDirs, gateway: str | None = None) -> ProjectDescription:
    """Load a SQLMesh project and describe its models (no warehouse connection).

    ``project_dir``: the project folder, or the repos of a multi-repo project (several
    folders, or their parent). The models of repos not given are not read from the
    state: a model they provide is an upstream (external) asset key.

    Example:
        >>> description = load_project("examples/shop")  # doctest: +SKIP
        >>> names = [m.name for m in description.models]  # doctest: +SKIP
        >>> names[:2]  # doctest: +SKIP
        ['raw.customers', 'raw.orders']
    """
    repos = resolve_project_dirs(project_dir)
    path = primary_project_dir(project_dir)
    context = create_context(repos, gateway, load_state=False)
    try:
        description = describe_context(
            context, path, context.selected_gateway, discard_context=True, repo_dirs=repos
        )
    finally:
        context.close()  # nothing should be open; never keep the warehouse held if it is
    if not any(not m.is_external for m in description.models):
        where = ", ".join(f"'{r}'" for r in repos)
        raise SQLMeshDefinitionError(
            f"The SQLMesh project {where} has no models. Add a model under models/, "
            "or point project_dir at the right folder."
        )
    return description
