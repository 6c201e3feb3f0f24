"""``sqlmesh_definitions_factory``: a whole SQLMesh project as Dagster definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from dg_sqlmesh.definitions.assets import cycle_collection_paused, model_assets, options_asset_graph
from dg_sqlmesh.definitions.executor import sqlmesh_executor
from dg_sqlmesh.definitions.janitor_job import sqlmesh_janitor_job, sqlmesh_janitor_schedule
from dg_sqlmesh.definitions.job import sqlmesh_job
from dg_sqlmesh.definitions.options import DefinitionsOptions, parse_options
from dg_sqlmesh.definitions.plan_job import sqlmesh_plan_job
from dg_sqlmesh.definitions.resource import SQLMeshResource, SQLMeshResultsResource
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.project.dirs import split_project_dirs
from dg_sqlmesh.scheduling.partition_status import sqlmesh_partition_status_sensor
from dg_sqlmesh.scheduling.schedules import sqlmesh_adaptive_schedule_factory
from dg_sqlmesh.translation.translator import SQLMeshTranslator


def sqlmesh_definitions_factory(
    *,
    project_dir: str | Sequence[str],
    translator: SQLMeshTranslator | None = None,
    executor: dg.ExecutorDefinition | None = sqlmesh_executor,
    gateway: str | None = None,
    environment: str | None = None,
    cache_dir: str | None = None,
    apply_plan: bool | None = None,
    allow_prod_plan: bool = False,
    ignore_cron: bool = False,
    max_transient_retries: int = 3,
    retry_backoff_seconds: float = 2.0,
    row_counts: bool = True,
    environment_lock_timeout: float = 3600.0,
    select: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    external_asset_mapping: str | None = None,
    group_name: str | None = None,
    owners: list[str] | None = None,
    op_tags: dict[str, Any] | None = None,
    automation_from_cron: bool = False,
    freshness_from_cron: bool = False,
    partitioned: bool = False,
    pool: str | bool = True,
    compare_with: str | None = None,
    enable_schedule: bool = False,
    schedule_name: str = "sqlmesh_adaptive_schedule",
    janitor_schedule: str | None = None,
) -> dg.Definitions:
    """Dagster definitions for a SQLMesh project: assets, ``sqlmesh_job``, the
    ``sqlmesh_plan`` and ``sqlmesh_janitor`` jobs, resources.

    ``project_dir`` is the project folder; for a multi-repo project, the repo folders
    (a list) or their parent folder. ``enable_schedule`` adds the adaptive schedule
    (``dg_sqlmesh.scheduling.schedules``), which runs the due models on the project's finest cron;
    ``automation_from_cron`` instead gives each asset an automation condition following
    its own cron. Pick one of the two.

    ``executor`` is the code location's default executor, used by "Materialize" in the UI
    as well as by ``sqlmesh_job``. The default, :data:`~dg_sqlmesh.sqlmesh_executor`, runs
    in one process unless a run's config picks ``multiprocess`` (a SQLMesh step that only
    reports its model then costs no process start nor code-location load). Pass ``None``
    to leave the choice to ``Definitions`` you merge these with (``Definitions.merge``
    refuses two different executors), or any executor definition.

    The other keywords are the fields of
    :class:`~dg_sqlmesh.definitions.options.DefinitionsOptions`, described there and in
    the documentation's options: where SQLMesh runs (those of :class:`SQLMeshResource`),
    how the models appear (those of :func:`sqlmesh_assets_factory`) and the schedule.

    Example:
        >>> defs = sqlmesh_definitions_factory(  # doctest: +SKIP
        ...     project_dir="examples/shop",
        ...     environment="prod",
        ...     external_asset_mapping="raw/{node.schema}/{node.name}",
        ... )
    """
    parsed = parse_options(DefinitionsOptions, locals(), "sqlmesh_definitions_factory")
    return project_definitions(project_dir, parsed, translator, executor)


def project_definitions(
    project_dir: str | Sequence[str],
    parsed: DefinitionsOptions,
    translator: SQLMeshTranslator | None,
    executor: dg.ExecutorDefinition | None,
    description: ProjectDescription | None = None,
) -> dg.Definitions:
    """What :func:`sqlmesh_definitions_factory` builds, from ``description`` when given
    (a component's state) instead of the cached one."""
    if parsed.enable_schedule and parsed.automation_from_cron:
        raise SQLMeshDefinitionError(
            "enable_schedule and automation_from_cron both run the models on their cron, so "
            "every model would run twice. Pick one: the adaptive schedule "
            "(enable_schedule=True) or per-model automation conditions (automation_from_cron=True)."
        )
    first_dir, other_dirs = split_project_dirs(project_dir)
    resource = SQLMeshResource(
        project_dir=first_dir, additional_project_dirs=other_dirs, **parsed.run_options()
    )
    if description is not None:
        resource._loaded = description  # noqa: SLF001 - the schedule and sensor read it too
    asset_options = parsed.asset_options()
    with cycle_collection_paused():
        graph = options_asset_graph(resource, translator, asset_options, description)
        assets = model_assets(graph, asset_options, resource.environment, executor)
    job = sqlmesh_job(assets, environment=resource.environment)
    janitor = sqlmesh_janitor_job(environment=resource.environment)
    plan = sqlmesh_plan_job(environment=resource.environment)
    schedules = []
    if parsed.janitor_schedule:
        schedules.append(sqlmesh_janitor_schedule(janitor, parsed.janitor_schedule))
    if parsed.enable_schedule:
        schedules.append(
            sqlmesh_adaptive_schedule_factory(
                sqlmesh_resource=resource,
                name=parsed.schedule_name,
                job_name=job.name,
                assets=assets,
            )
        )
    sensors = []
    if any(asset.partitions_def is not None for asset in assets):
        sensors.append(
            sqlmesh_partition_status_sensor(
                sqlmesh_resource=resource, assets=assets, job_name=job.name
            )
        )
    return dg.Definitions(
        assets=assets,
        jobs=[job, plan, janitor],
        schedules=schedules,
        sensors=sensors,
        resources={"sqlmesh": resource, "sqlmesh_results": SQLMeshResultsResource()},
        executor=executor,
    )
