"""One adaptive Dagster schedule that runs exactly the SQLMesh models that are due.

The schedule ticks on the finest cron of the project's models (``@hourly`` if any
model is hourly, ``*/15 * * * *`` if one runs every quarter hour...). Each tick reads
SQLMesh's state, the way ``sqlmesh run`` does before it evaluates anything, and asks
which models have missing intervals whose cron has elapsed at the tick's scheduled
time. Only those models are requested; nothing due means a skipped tick. No model
SQL runs during a tick, and a tick never overlaps a SQLMesh run of the same
environment that is still queued or running.

Loading the definition only reads the cached project description: no SQLMesh
context, no warehouse connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import dagster as dg

from dg_sqlmesh.constants import ENVIRONMENT_TAG, JOB_NAME, SCHEDULE_TAG, SCHEDULED_TIME_TAG
from dg_sqlmesh.errors import ErrorClass, SQLMeshDefinitionError, classify_error
from dg_sqlmesh.scheduling.due_models import DueModels, find_due_models, utc
from dg_sqlmesh.scheduling.schedule_partitions import partitioned_run_requests
from dg_sqlmesh.translation.cron import dagster_cron, finest_cron, listed
from dg_sqlmesh.translation.selection import Selection, select_models
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph, asset_graph_of

T = TypeVar("T")

if TYPE_CHECKING:
    from dg_sqlmesh.execution.settings import SQLMeshProject

# Runs that may still execute SQLMesh: a tick waits for them rather than overlap.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def active_sqlmesh_runs(
    instance: dg.DagsterInstance, *, job_name: str, asset_keys: Iterable[dg.AssetKey]
) -> list[dg.DagsterRun]:
    """Runs still queued or running that execute SQLMesh models of ``asset_keys``.

    A run with an explicit asset selection counts when it selects one of the keys (this
    covers materializations launched from the asset graph); a run without one counts
    when it is a run of ``job_name``.

    Example:
        >>> active_sqlmesh_runs(instance, job_name="sqlmesh_job", asset_keys=keys)
        ... # doctest: +SKIP
        []
    """
    keys = set(asset_keys)
    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES)):
        if run.asset_selection is not None:
            if keys & set(run.asset_selection):
                found.append(run)
        elif run.job_name == job_name:
            found.append(run)
    return sorted(found, key=lambda r: r.run_id)


def read_state_or_skip(read: Callable[[], T], skip: Callable[[str], str]) -> T | dg.SkipReason:
    """``read()`` SQLMesh's state for a tick; a transient failure (a locked DuckDB file, a
    dropped connection) skips the tick with ``skip(reason)``, any other error raises."""
    try:
        return read()
    except Exception as exc:  # classified below; anything but a transient error re-raised
        error_class, reason = classify_error(exc)
        if error_class is not ErrorClass.TRANSIENT:
            raise
        return dg.SkipReason(skip(reason))


def sqlmesh_adaptive_schedule_factory(
    *,
    sqlmesh_resource: SQLMeshProject,
    assets: Sequence[dg.AssetsDefinition],
    name: str = "sqlmesh_adaptive_schedule",
    job_name: str = JOB_NAME,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    select: Selection = None,
    exclude: Selection = None,
) -> dg.ScheduleDefinition:
    """A schedule that requests the SQLMesh models that are due, and only those.

    It ticks on the finest cron of the project's models (see :func:`finest_cron`).
    Each tick skips while a run of the environment is queued or running, otherwise
    asks SQLMesh's state which models are due at the tick's scheduled time (see
    :func:`find_due_models`) and requests a run of ``job_name`` for their assets,
    with a run key made of the environment and the scheduled time. A tick executes
    no model SQL; it opens SQLMesh's state connection briefly.

    Args:
        sqlmesh_resource: the project, gateway and environment the assets run in.
        assets: the assets :func:`sqlmesh_assets_factory` built for it (their keys and
            partitions are the ones requested). A due partitioned model is requested
            with its due partitions (one run per distinct range of them, see
            ``dg_sqlmesh.scheduling.schedule_partitions``).
        name: the schedule's name.
        job_name: the job the assets belong to (``sqlmesh_job``).
        default_status: whether the schedule starts running when first loaded.
        select: only these models (SQLMesh's selector syntax, as the factories' ``select=``).
        exclude: not these models (the same syntax).

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> assets = sqlmesh_assets_factory(sqlmesh_resource=resource)  # doctest: +SKIP
        >>> defs = dg.Definitions(  # doctest: +SKIP
        ...     assets=assets,
        ...     jobs=[sqlmesh_job(assets)],
        ...     schedules=[
        ...         sqlmesh_adaptive_schedule_factory(sqlmesh_resource=resource, assets=assets)
        ...     ],
        ...     resources={"sqlmesh": resource, "sqlmesh_results": SQLMeshResultsResource()},
        ... )
    """
    graph = _selected_graph(sqlmesh_resource, assets, select, exclude)
    chosen = finest_cron(graph.model(fqn) for fqn in graph.specs)
    return _due_schedule(
        sqlmesh_resource,
        graph,
        name=name,
        job_name=job_name,
        cron=chosen.cron,
        timezone=chosen.timezone,
        explain=chosen.explain(),
        cron_models=f"{chosen.sqlmesh_cron}' of {listed(chosen.models)}",
        default_status=default_status,
        skip_when_nothing_due=True,
    )


def build_sqlmesh_schedule_from_selection(
    *,
    sqlmesh_resource: SQLMeshProject,
    assets: Sequence[dg.AssetsDefinition],
    cron_schedule: str,
    name: str,
    select: Selection = None,
    exclude: Selection = None,
    execution_timezone: str = "UTC",
    job_name: str = JOB_NAME,
    skip_when_nothing_due: bool = True,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule on ``cron_schedule`` for the SQLMesh models ``select`` selects (SQLMesh's
    selector syntax), for those who prefer several schedules to the adaptive one.

    Each tick requests the selected models that are due in SQLMesh's state and skips when
    none is, as :func:`sqlmesh_adaptive_schedule_factory` does; with
    ``skip_when_nothing_due=False`` it requests every selected model at every tick (SQLMesh
    still evaluates only missing intervals). Ticks skip while a run of the models is in
    progress.

    Example:
        >>> hourly = build_sqlmesh_schedule_from_selection(  # doctest: +SKIP
        ...     sqlmesh_resource=resource, assets=assets, cron_schedule="@hourly",
        ...     name="hourly_marts", select="marts.*",
        ... )
    """
    graph = _selected_graph(sqlmesh_resource, assets, select, exclude)
    if not skip_when_nothing_due and any(s.partitions_def for s in graph.specs.values()):
        raise SQLMeshDefinitionError(
            f"Schedule {name}: skip_when_nothing_due=False requests every selected model at "
            "every tick, and a partitioned model is requested by partition (the due ones). "
            "Leave skip_when_nothing_due on, or exclude the partitioned models."
        )
    return _due_schedule(
        sqlmesh_resource,
        graph,
        name=name,
        job_name=job_name,
        cron=cron_schedule,
        timezone=execution_timezone,
        explain=f"Ticks on '{cron_schedule}' ({execution_timezone}).",
        cron_models=f"{cron_schedule}' of schedule {name}",
        default_status=default_status,
        skip_when_nothing_due=skip_when_nothing_due,
    )


def sqlmesh_schedules_by_cron(
    *,
    sqlmesh_resource: SQLMeshProject,
    assets: Sequence[dg.AssetsDefinition],
    select: Selection = None,
    exclude: Selection = None,
    name_prefix: str = "sqlmesh",
    job_name: str = JOB_NAME,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> list[dg.ScheduleDefinition]:
    """One schedule per cron of the models (and timezone), each ticking on its cron and
    requesting the due models of that cron only: the adaptive schedule split by cron, for
    those who prefer a schedule per cadence. Named ``<name_prefix>_<cron>`` (``@daily`` ->
    ``sqlmesh_daily``, ``0 6 * * *`` -> ``sqlmesh_0_6_x_x_x``).

    Example:
        >>> schedules = sqlmesh_schedules_by_cron(  # doctest: +SKIP
        ...     sqlmesh_resource=resource, assets=assets
        ... )
    """
    graph = _selected_graph(sqlmesh_resource, assets, select, exclude)
    buckets: dict[tuple[str, str], list[str]] = {}
    for fqn in graph.specs:
        model = graph.model(fqn)
        if model.cron:
            cron = dagster_cron(" ".join(model.cron.split()))
            buckets.setdefault((cron, model.cron_tz or "UTC"), []).append(fqn)
    schedules = []
    for (cron, timezone), fqns in sorted(buckets.items()):
        slug = re.sub(r"[^a-z0-9]+", "_", cron.lower().replace("*", "x")).strip("_")
        zone = "" if timezone == "UTC" else "_" + re.sub(r"[^a-z0-9]+", "_", timezone.lower())
        name = f"{name_prefix}_{slug}{zone}"
        models = listed([graph.model(f).name for f in fqns])
        schedules.append(
            _due_schedule(
                sqlmesh_resource,
                graph.only(fqns, keep_known=True),
                name=name,
                job_name=job_name,
                cron=cron,
                timezone=timezone,
                explain=f"Ticks on '{cron}' ({timezone}), the cron of {models}.",
                cron_models=f"{cron}' of {models}",
                default_status=default_status,
                skip_when_nothing_due=True,
            )
        )
    return schedules


def _selected_graph(
    resource: SQLMeshProject,
    assets: Sequence[dg.AssetsDefinition],
    select: Selection,
    exclude: Selection,
) -> SQLMeshAssetGraph:
    graph = asset_graph_of(resource.describe(), assets)
    if select or exclude:
        graph = graph.only(select_models(graph.description, select, exclude), keep_known=True)
    return graph


def _due_schedule(
    sqlmesh_resource: SQLMeshProject,
    graph: SQLMeshAssetGraph,
    *,
    name: str,
    job_name: str,
    cron: str,
    timezone: str,
    explain: str,
    cron_models: str,
    default_status: dg.DefaultScheduleStatus,
    skip_when_nothing_due: bool,
) -> dg.ScheduleDefinition:
    """A schedule requesting the due models of ``graph`` (all of them when not
    ``skip_when_nothing_due``) at each tick of ``cron``."""
    environment = sqlmesh_resource.environment
    keys = {fqn: spec.key for fqn, spec in graph.specs.items()}
    description = (
        f"Runs the SQLMesh models of environment '{environment}' whose cron interval has "
        f"elapsed, and only those; skips while a run of the environment is in progress. " + explain
    )

    def _evaluate(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | list[dg.RunRequest] | dg.SkipReason:
        scheduled = utc(context.scheduled_execution_time or datetime.now(UTC))
        busy = active_sqlmesh_runs(context.instance, job_name=job_name, asset_keys=keys.values())
        if busy:
            run = busy[0]
            more = f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""
            return dg.SkipReason(
                f"Run {run.run_id}{more} of {run.job_name} is still {run.status.value} for "
                f"SQLMesh environment '{environment}'; skipping this tick so that runs of the "
                "environment never overlap. Due models are picked up by the next tick."
            )
        tags = {
            SCHEDULE_TAG: name,
            ENVIRONMENT_TAG: environment,
            SCHEDULED_TIME_TAG: scheduled.isoformat(),
        }
        run_key = f"{environment}@{scheduled.isoformat()}"
        if not skip_when_nothing_due:
            return dg.RunRequest(run_key=run_key, asset_selection=list(keys.values()), tags=tags)
        found = read_state_or_skip(
            lambda: find_due_models(sqlmesh_resource, scheduled),
            lambda reason: (
                f"Could not read SQLMesh's state for environment '{environment}' ({reason}); "
                "the next tick tries again."
            ),
        )
        if isinstance(found, dg.SkipReason):
            return found
        if found.not_ready:
            return dg.SkipReason(found.not_ready)
        selected = [fqn for fqn in found.selection if fqn in keys]
        unknown = [fqn for fqn in found.selection if fqn not in graph.known]
        if unknown:
            context.log.warning(
                f"Due in SQLMesh's state but not in this project's assets: {listed(unknown)}"
            )
        if not selected:
            return dg.SkipReason(_nothing_due(found, graph))
        context.log.info(
            f"{len(selected)} SQLMesh model(s) due at {scheduled.isoformat()}: "
            + listed([graph.model(fqn).name for fqn in selected], 20)
        )
        if any(graph.specs[fqn].partitions_def is not None for fqn in selected):
            return partitioned_run_requests(graph, found, selected, run_key=run_key, tags=tags)
        return dg.RunRequest(
            run_key=run_key, asset_selection=[keys[fqn] for fqn in selected], tags=tags
        )

    try:
        return dg.schedule(
            cron_schedule=cron,
            job_name=job_name,
            name=name,
            execution_timezone=timezone,
            description=description,
            default_status=default_status,
        )(_evaluate)
    except dg.DagsterInvalidDefinitionError as exc:
        raise SQLMeshDefinitionError(
            f"Dagster does not accept the cron '{cron_models} as a schedule: {exc}"
        ) from exc


def _nothing_due(found: DueModels, graph: SQLMeshAssetGraph) -> str:
    text = (
        f"No SQLMesh model of environment '{found.environment}' is due at "
        f"{found.execution_time.isoformat()}: every model is complete up to its last cron tick."
    )
    if found.next_due is not None:
        names = [
            graph.model(fqn).name if fqn in graph.specs else fqn for fqn in found.next_due_models
        ]
        text += f" Next due: {listed(names)} at {found.next_due.isoformat()}."
    return text
