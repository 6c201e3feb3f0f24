"""Dagster YAML components for dg-sqlmesh.

``SQLMeshProjectComponent`` loads a SQLMesh project from a ``defs.yaml`` (type
``dg_sqlmesh.SQLMeshProjectComponent``); ``dg scaffold defs`` writes one with
:class:`SQLMeshProjectScaffolder`.
"""

from dg_sqlmesh.components.project_component import SQLMeshProjectComponent
from dg_sqlmesh.components.scaffolder import SQLMeshProjectScaffolder, SQLMeshScaffoldParams

__all__ = ["SQLMeshProjectComponent", "SQLMeshProjectScaffolder", "SQLMeshScaffoldParams"]
