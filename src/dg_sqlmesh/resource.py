"""Dagster resources: where the SQLMesh project is, and where a run's outcomes live."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from dg_sqlmesh.catalog_cache import load_description
from dg_sqlmesh.project import (
    ProjectDescription,
    create_context,
    resolve_project_dir,
    resolve_project_dirs,
)

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.coordinator import RunCoordinator

_DESCRIPTIONS: dict[tuple[str, str | None, str | None], ProjectDescription] = {}


class SQLMeshResource(dg.ConfigurableResource):
    """A SQLMesh project, the gateway and the environment Dagster runs it in.

    Example:
        >>> SQLMeshResource(project_dir="examples/shop", environment="dev", apply_plan=True)
        ... # doctest: +SKIP
    """

    project_dir: str = Field(
        description=(
            "Folder of the SQLMesh project (holds its config file), or the parent folder of "
            "the repos of a multi-repo project."
        )
    )
    additional_project_dirs: list[str] = Field(
        default_factory=list,
        description=(
            "The other repos of a multi-repo project, loaded together with project_dir "
            "as `sqlmesh -p <project_dir> -p <repo>` loads them."
        ),
    )
    gateway: str | None = Field(
        default=None, description="Gateway; the project's default if unset."
    )
    environment: str = Field(default="prod", description="SQLMesh environment to run.")
    cache_dir: str | None = Field(
        default=None,
        description="Where the cached project description lives (default <project>/.cache).",
    )
    apply_plan: bool = Field(
        default=False,
        description=(
            "Apply a plan (with backfill) before running when the environment is missing or "
            "the project on disk differs from it. Refused for prod unless allow_prod_plan."
        ),
    )
    allow_prod_plan: bool = Field(
        default=False, description="Let apply_plan plan the prod environment too."
    )
    ignore_cron: bool = Field(
        default=False,
        description="Run missing intervals even if the model's cron has not elapsed yet.",
    )
    max_transient_retries: int = Field(
        default=3, description="Retries of a run whose failures are all transient."
    )
    retry_backoff_seconds: float = Field(
        default=2.0, description="First retry delay; doubles on each retry."
    )
    row_counts: bool = Field(
        default=True,
        description=(
            "Count the rows of each materialized table after a run (dagster/row_count), one "
            "query per run; turn off where a count costs money. A model's tag "
            "dagster:row_count:false leaves that model out."
        ),
    )
    environment_lock_timeout: float = Field(
        default=3600.0,
        description="How long a run waits for another run of the same environment to finish.",
    )

    @property
    def project_path(self) -> Path:
        return resolve_project_dir(self.project_dir)

    @property
    def project_paths(self) -> tuple[Path, ...]:
        """Every repo folder of the project (one, unless it is a multi-repo project)."""
        return resolve_project_dirs([self.project_dir, *self.additional_project_dirs])

    def describe(self, *, use_cache: bool = True) -> ProjectDescription:
        """The project's models, from the cache when possible (no warehouse connection)."""
        dirs = [self.project_dir, *self.additional_project_dirs]
        key = (str(self.project_paths), self.gateway, self.cache_dir)
        if use_cache and key in _DESCRIPTIONS:
            return _DESCRIPTIONS[key]
        description = load_description(
            dirs, self.gateway, cache_dir=self.cache_dir, use_cache=use_cache
        )
        _DESCRIPTIONS[key] = description
        return description

    def create_context(self, **kwargs: Any) -> Context:
        """A SQLMesh context for this project and gateway. Only executing steps need one."""
        return create_context(self.project_paths, self.gateway, **kwargs)


class SQLMeshResultsResource(dg.ConfigurableResource):
    """Where the steps of a run find the outcome of the run's one SQLMesh execution.

    The outcome lives in the run's event log in the Dagster instance (SQLite or
    PostgreSQL), the one thing every step of a run shares on any deployment: the
    multiprocess executor, the Docker and Kubernetes executors, Dagster+.
    """

    def coordinator(
        self,
        instance: dg.DagsterInstance,
        run: dg.DagsterRun,
        sqlmesh_steps: Collection[str] | Callable[[], Collection[str]],
    ) -> RunCoordinator:
        """The coordinator of ``run``, whose SQLMesh steps are ``sqlmesh_steps``."""
        from dg_sqlmesh.execution.coordinator import RunCoordinator

        return RunCoordinator(instance, run, sqlmesh_steps)
