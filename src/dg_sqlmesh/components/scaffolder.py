"""``dg scaffold defs dg_sqlmesh.SQLMeshProjectComponent``: write a component's defs.yaml."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field

from dg_sqlmesh._compat.dagster import scaffold_component
from dg_sqlmesh.project.dirs import resolve_project_dir

PLACEHOLDER_PROJECT = "path/to/sqlmesh_project"


class SQLMeshScaffoldParams(BaseModel):
    """Options of ``dg scaffold defs dg_sqlmesh.SQLMeshProjectComponent``.

    Attributes:
        project_path: Folder of an existing SQLMesh project (absolute, or relative to the
            working directory). Written to defs.yaml relative to the defs.yaml folder.
        gateway: SQLMesh gateway to write to defs.yaml; the project's default if unset.
        environment: SQLMesh environment to write to defs.yaml; ``prod`` if unset.
    """

    project_path: str | None = Field(
        default=None, description="Folder of an existing SQLMesh project (holds its config file)."
    )
    gateway: str | None = Field(default=None, description="SQLMesh gateway to use.")
    environment: str | None = Field(default=None, description="SQLMesh environment to run.")


class SQLMeshProjectScaffolder(dg.Scaffolder[SQLMeshScaffoldParams]):
    """Writes the defs.yaml of a :class:`~dg_sqlmesh.SQLMeshProjectComponent`.

    The project folder is checked (it must hold a SQLMesh config file: ``config.yaml``,
    ``config.py``, ``sqlmesh.yaml``...) and written relative to the folder of the new
    defs.yaml, so the Dagster project can be moved as a whole. Without ``--project-path``
    the defs.yaml gets a placeholder to edit.

    Example:
        .. code-block:: bash

            dg scaffold defs dg_sqlmesh.SQLMeshProjectComponent warehouse \\
                --project-path sqlmesh_project --gateway duckdb

        writes ``src/<package>/defs/warehouse/defs.yaml``:

        .. code-block:: yaml

            type: dg_sqlmesh.SQLMeshProjectComponent

            attributes:
              project: ../../../../sqlmesh_project
              gateway: duckdb
    """

    @classmethod
    def get_scaffold_params(cls) -> type[SQLMeshScaffoldParams]:
        return SQLMeshScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[SQLMeshScaffoldParams]) -> None:
        params = request.params
        attributes: dict[str, Any] = {
            "project": (
                project_relative_to(params.project_path, request.target_path)
                if params.project_path
                else PLACEHOLDER_PROJECT
            )
        }
        if params.gateway:
            attributes["gateway"] = params.gateway
        if params.environment:
            attributes["environment"] = params.environment
        scaffold_component(request, attributes)


def project_relative_to(project_path: str | Path, defs_dir: Path) -> str:
    """The SQLMesh project folder as written in defs.yaml: relative to ``defs_dir``.

    Raises ``SQLMeshDefinitionError`` when ``project_path`` is not a SQLMesh project.
    Falls back to the absolute path when no relative one exists (another drive).

    Example:
        >>> project_relative_to("examples/shop", Path("src/app/defs/shop"))  # doctest: +SKIP
        '../../../../examples/shop'
    """
    project = resolve_project_dir(project_path)
    try:
        return Path(os.path.relpath(project, Path(defs_dir).resolve())).as_posix()
    except ValueError:  # Windows: different drives
        return project.as_posix()
