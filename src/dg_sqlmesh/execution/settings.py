"""What executing SQLMesh needs of a project: plain settings and a context factory.

Execution and scheduling take any object of this shape, not the user-facing resource
(:class:`~dg_sqlmesh.SQLMeshResource` is one), so they sit below the definitions users
call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.project.description import ProjectDescription


class SQLMeshProject(Protocol):
    """A SQLMesh project, and how Dagster runs it (the fields of ``RunOptions``)."""

    environment: str
    gateway: str | None
    apply_plan: bool
    allow_prod_plan: bool
    ignore_cron: bool
    max_transient_retries: int
    retry_backoff_seconds: float
    row_counts: bool
    environment_lock_timeout: float

    @property
    def project_paths(self) -> tuple[Path, ...]:
        """Every repo folder of the project."""
        ...

    def describe(self, *, use_cache: bool = True) -> ProjectDescription:
        """The project's models (cached description, no warehouse)."""
        ...

    def create_context(self, **kwargs: Any) -> Context:
        """A SQLMesh context for the project and gateway (SQLMesh's own keywords)."""
        ...
