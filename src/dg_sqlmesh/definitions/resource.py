"""Dagster resources: where the SQLMesh project is, and where a run's outcomes live."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from dg_sqlmesh.definitions.deployment import deployment_environment, in_branch_deployment
from dg_sqlmesh.definitions.options import RunOptions
from dg_sqlmesh.execution.background import finish_executions
from dg_sqlmesh.execution.coordinator import RunCoordinator
from dg_sqlmesh.project.cache import load_description
from dg_sqlmesh.project.context import create_context
from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.project.dirs import resolve_project_dir, resolve_project_dirs

if TYPE_CHECKING:
    from sqlmesh import Context


class SQLMeshResource(dg.ConfigurableResource, RunOptions):
    """A SQLMesh project, the gateway and the environment Dagster runs it in.

    Its other fields are the :class:`~dg_sqlmesh.definitions.options.RunOptions` (gateway,
    environment, plans, retries, ...).

    Example:
        >>> SQLMeshResource(project_dir="examples/shop", environment="dev", apply_plan=True)
        ... # doctest: +SKIP
    """

    environment: str = Field(
        default_factory=deployment_environment,
        description=RunOptions.model_fields["environment"].description,
    )
    apply_plan: bool = Field(
        default_factory=in_branch_deployment,
        description=RunOptions.model_fields["apply_plan"].description,
    )
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

    @property
    def project_path(self) -> Path:
        return resolve_project_dir(self.project_dir)

    @property
    def project_paths(self) -> tuple[Path, ...]:
        """Every repo folder of the project (one, unless it is a multi-repo project)."""
        return resolve_project_dirs([self.project_dir, *self.additional_project_dirs])

    # A description loaded elsewhere (a component's state): what describe() returns while
    # the definitions load, so that nothing parses the project again.
    _loaded: ProjectDescription | None = PrivateAttr(default=None)

    def describe(self, *, use_cache: bool = True) -> ProjectDescription:
        """The project's models, from the cache when possible (no warehouse connection)."""
        if self._loaded is not None and use_cache:
            return self._loaded
        dirs = [self.project_dir, *self.additional_project_dirs]
        return load_description(dirs, self.gateway, cache_dir=self.cache_dir, use_cache=use_cache)

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
        return RunCoordinator(instance, run, sqlmesh_steps)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Wait for the SQLMesh execution this process runs for the run to end: under the
        in-process executor the steps report while SQLMesh works, and the run ends after
        SQLMesh does (the environment released, the last outcome published)."""
        finish_executions(context.run_id)
