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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg

from dg_sqlmesh.assets import JOB_NAME
from dg_sqlmesh.errors import ErrorClass, SQLMeshDefinitionError, classify_error
from dg_sqlmesh.project import ModelInfo, load_config
from dg_sqlmesh.specs import SQLMeshAssetGraph, build_asset_graph, resolve_translator
from dg_sqlmesh.translator import SQLMeshTranslator

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.resource import SQLMeshResource

SCHEDULE_TAG = "dg_sqlmesh/schedule"
ENVIRONMENT_TAG = "dg_sqlmesh/environment"
SCHEDULED_TIME_TAG = "dg_sqlmesh/scheduled_time"

# Runs that may still execute SQLMesh: a tick waits for them rather than overlap.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

# SQLMesh crons are croniter expressions. Dagster reads the common aliases too; the
# rare ones are spelled out so the schedule shows a cron every tool understands.
_CRON_ALIASES = {
    "@midnight": "@daily",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_REFERENCE = datetime(2024, 1, 1)  # a fixed start makes the cron comparison deterministic
_SAMPLES = 64


def dagster_cron(cron: str) -> str:
    """A SQLMesh cron written the way Dagster schedules and conditions expect it.

    Example:
        >>> dagster_cron("@daily"), dagster_cron("@annually"), dagster_cron("*/15 * * * *")
        ('@daily', '0 0 1 1 *', '*/15 * * * *')
    """
    cron = " ".join(cron.split())
    return _CRON_ALIASES.get(cron.lower(), cron)


def cron_interval(cron: str, cron_tz: str | None = None) -> tuple[timedelta, timedelta]:
    """How often a cron fires: its smallest and its mean gap between two ticks.

    Measured over the next ticks from a fixed date with croniter (SQLMesh's own
    cron library), so irregular crons (``0 9-17 * * 1-5``) compare by their busiest
    stretch.

    Example:
        >>> cron_interval("@hourly")[0] < cron_interval("@daily")[0]
        True
    """
    from croniter import croniter

    start = _REFERENCE.replace(tzinfo=ZoneInfo(cron_tz or "UTC"))
    ticks = croniter(cron, start)
    times = [ticks.get_next(datetime) for _ in range(_SAMPLES)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return min(gaps), sum(gaps, timedelta()) / len(gaps)


@dataclass(frozen=True)
class ChosenCron:
    """The cron an adaptive schedule ticks on, and why."""

    cron: str  # as Dagster reads it
    sqlmesh_cron: str  # as the models declare it
    timezone: str
    models: tuple[str, ...]  # model names that use it
    others: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other crons -> models

    def explain(self) -> str:
        users = _names(self.models)
        text = (
            f"Ticks on '{self.cron}' ({self.timezone}), the finest cron among the project's "
            f"models: {users} {'runs' if len(self.models) == 1 else 'run'} on "
            f"'{self.sqlmesh_cron}'."
        )
        if self.others:
            rest = "; ".join(f"'{c}': {_names(m)}" for c, m in self.others.items())
            text += f" Coarser crons, picked up by the first tick after they elapse: {rest}."
        return text


def finest_cron(models: Iterable[ModelInfo]) -> ChosenCron:
    """The cron with the smallest interval among the non-external models.

    Ties go to the cron with the smaller mean interval, then to the one most models
    use. The timezone is the model's ``cron_tz`` (UTC when unset).

    Example:
        >>> from dg_sqlmesh import load_project
        >>> finest_cron(load_project("examples/shop").models).cron  # doctest: +SKIP
        '@daily'
    """
    by_cron: dict[tuple[str, str], list[str]] = {}
    for model in models:
        if model.is_external or not model.cron:
            continue
        tz = getattr(model, "cron_tz", None) or "UTC"
        by_cron.setdefault((" ".join(model.cron.split()), tz), []).append(model.name)
    if not by_cron:
        raise SQLMeshDefinitionError(
            "The SQLMesh project has no model with a cron, so an adaptive schedule has nothing "
            "to follow. Add a model, or leave enable_schedule off."
        )

    def rank(item: tuple[tuple[str, str], list[str]]) -> tuple:
        (cron, tz), names = item
        try:
            smallest, mean = cron_interval(cron, tz)
        except Exception as exc:  # croniter's errors: CroniterBadCronError, ValueError...
            raise SQLMeshDefinitionError(
                f"The cron '{cron}' of model(s) {_names(names)} could not be read: {exc}"
            ) from exc
        return (smallest, mean, -len(names), cron, tz)

    ranked = sorted(by_cron.items(), key=rank)
    (cron, tz), names = ranked[0]
    others = {f"{c}" if t == tz else f"{c} ({t})": tuple(m) for (c, t), m in ranked[1:]}
    return ChosenCron(
        cron=dagster_cron(cron), sqlmesh_cron=cron, timezone=tz, models=tuple(names), others=others
    )


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class DueModels:
    """What SQLMesh's state says about an environment at one execution time.

    ``due`` maps each due model (FQN, DAG order) to its missing intervals whose cron
    has elapsed; ``to_plan`` lists the models a plan would create or change (only
    filled when the resource may apply plans); ``not_ready`` says why nothing can
    run (the environment is missing, or a plan is updating it).
    """

    environment: str
    execution_time: datetime
    due: dict[str, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict)
    to_plan: tuple[str, ...] = ()
    next_due: datetime | None = None
    next_due_models: tuple[str, ...] = ()
    not_ready: str | None = None

    @property
    def selection(self) -> list[str]:
        """The models a run should select: due ones, and those a plan would touch."""
        return list(self.due) + [fqn for fqn in self.to_plan if fqn not in self.due]


def find_due_models(resource: SQLMeshResource, execution_time: datetime | None = None) -> DueModels:
    """Ask SQLMesh's state which models are due at ``execution_time``, executing nothing.

    A model is due when it has missing intervals that ended at or before the last
    tick of its cron (unless the resource has ``ignore_cron``), exactly as
    ``sqlmesh run`` decides at that time. Signals are not evaluated here (they may
    query the warehouse): a due model whose signal is not ready is left alone by the
    run itself. Opens the state connection for the duration of the call only.

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> find_due_models(resource, datetime(2026, 1, 10, tzinfo=UTC)).due
        ... # doctest: +SKIP
        {'"db"."shop"."orders"': ((datetime(...), datetime(...)),)}
    """
    execution_time = _utc(execution_time or datetime.now(UTC))
    description = resource.describe()
    environment = resource.environment
    may_plan = resource.apply_plan and (environment.lower() != "prod" or resource.allow_prod_plan)
    runnable = [m.fqn for m in description.models if not (m.is_external or m.is_embedded)]

    context = _state_context(resource)
    try:
        state = _read_environment_state(
            context, environment, execution_time, ignore_cron=resource.ignore_cron
        )
    finally:
        context.close()  # release the state connection (for DuckDB, the warehouse file)

    if state is None:
        if may_plan:
            return DueModels(environment, execution_time, to_plan=tuple(runnable))
        where = f"{description.project_dir} (gateway {description.gateway})"
        return DueModels(
            environment,
            execution_time,
            not_ready=(
                f"SQLMesh environment '{environment}' does not exist in the state of {where}. "
                f"Create it with `sqlmesh -p {description.project_dir} plan {environment}`, or "
                "let Dagster plan it with SQLMeshResource(apply_plan=True"
                + (", allow_prod_plan=True" if environment.lower() == "prod" else "")
                + ")."
            ),
        )
    if state.updating_plan:
        return DueModels(
            environment,
            execution_time,
            not_ready=(
                f"SQLMesh environment '{environment}' is being updated by plan "
                f"{state.updating_plan}; models run once the plan is applied."
            ),
        )

    order = {fqn: i for i, fqn in enumerate(m.fqn for m in description.models)}
    due = {
        fqn: tuple((_from_ms(s), _from_ms(e)) for s, e in intervals)
        for fqn, intervals in sorted(
            state.missing.items(), key=lambda item: (order.get(item[0], len(order)), item[0])
        )
    }
    to_plan: tuple[str, ...] = ()
    if may_plan:
        to_plan = tuple(
            m.fqn
            for m in description.models
            if not (m.is_external or m.is_embedded)
            and (m.fqn not in state.data_hashes or state.data_hashes[m.fqn] != m.data_hash)
        )
    next_due = min(state.next_ticks.values(), default=None)
    return DueModels(
        environment,
        execution_time,
        due=due,
        to_plan=to_plan,
        next_due=next_due,
        next_due_models=tuple(
            sorted(fqn for fqn, tick in state.next_ticks.items() if tick == next_due)
        ),
    )


@dataclass
class _EnvironmentState:
    missing: dict[str, list[tuple[int, int]]]  # fqn -> merged missing intervals (epoch ms)
    data_hashes: dict[str, str]  # fqn -> data hash of the environment's snapshot
    next_ticks: dict[str, datetime]  # fqn -> next cron tick after the execution time
    updating_plan: str | None = None


def _state_context(resource: SQLMeshResource) -> Context:
    """A SQLMesh context that loads no model files: only its state connection is used."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    path = resource.project_paths[0]  # SQLMesh connects with the first repo's config
    config, gateway = load_config(path, resource.gateway)
    set_console(NoopConsole())
    return Context(paths=[path], config=config, gateway=gateway, load=False)


def _read_environment_state(
    context: Context, environment: str, execution_time: datetime, *, ignore_cron: bool
) -> _EnvironmentState | None:
    """The environment's missing intervals at ``execution_time``, read-only.

    The only place that relies on SQLMesh below its ``Context`` API. Checked against
    SQLMesh 0.236: it repeats what ``Context.run`` -> ``Scheduler._run_or_audit``
    (``sqlmesh/core/scheduler.py``) does before evaluating anything: load the
    environment's snapshots with their intervals, apply due auto restatements (prod
    only; in memory here, never written back), build the deployability index, and
    call ``merged_missing_intervals``, which bounds each model by the floor of its
    own cron (``Snapshot.missing_intervals`` in ``core/snapshot/definition.py``).
    Returns None when the environment does not exist.
    """
    from sqlmesh.core import constants as c
    from sqlmesh.core.environment import Environment
    from sqlmesh.core.scheduler import merged_missing_intervals
    from sqlmesh.core.snapshot import DeployabilityIndex, apply_auto_restatements

    name = Environment.sanitize_name(environment)
    state = context.state_reader
    stored = state.get_environment(name)
    if stored is None:
        return None
    if not stored.finalized_ts:
        return _EnvironmentState({}, {}, {}, updating_plan=stored.plan_id)
    snapshots = state.get_snapshots(stored.snapshots)  # intervals included
    if name.lower() == c.PROD:
        deployability = DeployabilityIndex.all_deployable()
        apply_auto_restatements(snapshots, execution_time)
    else:
        deployability = DeployabilityIndex.create(snapshots)
    missing = merged_missing_intervals(
        snapshots.values(),
        end=execution_time,
        execution_time=execution_time,
        deployability_index=deployability,
        ignore_cron=ignore_cron,
    )
    models = [s for s in snapshots.values() if s.is_model]
    return _EnvironmentState(
        missing={s.name: list(i) for s, i in missing.items() if s.is_model and i},
        data_hashes={s.name: s.fingerprint.data_hash for s in models},
        next_ticks={
            s.name: _utc(s.node.cron_next(execution_time))
            for s in models
            if not s.is_symbolic and not s.is_seed
        },
    )


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


def sqlmesh_adaptive_schedule_factory(
    *,
    sqlmesh_resource: SQLMeshResource,
    name: str = "sqlmesh_adaptive_schedule",
    job_name: str = JOB_NAME,
    translator: SQLMeshTranslator | None = None,
    external_asset_mapping: str | None = None,
    asset_graph: SQLMeshAssetGraph | None = None,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    partitioned: bool = False,
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
        name: the schedule's name.
        job_name: the job the assets belong to (``sqlmesh_job``).
        translator: the translator the assets were built with (it decides the keys).
        external_asset_mapping: as given to the assets factory.
        asset_graph: the graph the assets were built from; overrides ``translator``.
        default_status: whether the schedule starts running when first loaded.
        partitioned: as given to the assets factory. A due partitioned model is
            requested with its due partitions (one run per distinct range of them, see
            ``dg_sqlmesh.schedule_partitions``).

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> assets = sqlmesh_assets_factory(sqlmesh_resource=resource)  # doctest: +SKIP
        >>> defs = dg.Definitions(  # doctest: +SKIP
        ...     assets=assets,
        ...     jobs=[sqlmesh_job(assets)],
        ...     schedules=[sqlmesh_adaptive_schedule_factory(sqlmesh_resource=resource)],
        ...     resources={"sqlmesh": resource, "sqlmesh_results": SQLMeshResultsResource()},
        ... )
    """
    graph = asset_graph or build_asset_graph(
        sqlmesh_resource.describe(),
        resolve_translator(translator, external_asset_mapping),
        partitioned=partitioned,
    )
    chosen = finest_cron(graph.model(fqn) for fqn in graph.specs)
    environment = sqlmesh_resource.environment
    keys = {fqn: spec.key for fqn, spec in graph.specs.items()}
    description = (
        f"Runs the SQLMesh models of environment '{environment}' whose cron interval has "
        f"elapsed, and only those; skips while a run of the environment is in progress. "
        + chosen.explain()
    )

    def _evaluate(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | list[dg.RunRequest] | dg.SkipReason:
        scheduled = _utc(context.scheduled_execution_time or datetime.now(UTC))
        busy = active_sqlmesh_runs(context.instance, job_name=job_name, asset_keys=keys.values())
        if busy:
            run = busy[0]
            more = f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""
            return dg.SkipReason(
                f"Run {run.run_id}{more} of {run.job_name} is still {run.status.value} for "
                f"SQLMesh environment '{environment}'; skipping this tick so that runs of the "
                "environment never overlap. Due models are picked up by the next tick."
            )
        try:
            found = find_due_models(sqlmesh_resource, scheduled)
        except Exception as exc:
            error_class, reason = classify_error(exc)
            if error_class is not ErrorClass.TRANSIENT:
                raise
            return dg.SkipReason(
                f"Could not read SQLMesh's state for environment '{environment}' ({reason}); "
                "the next tick tries again."
            )
        if found.not_ready:
            return dg.SkipReason(found.not_ready)
        selected = [fqn for fqn in found.selection if fqn in keys]
        unknown = [fqn for fqn in found.selection if fqn not in keys]
        if unknown:
            context.log.warning(
                f"Due in SQLMesh's state but not in this project's assets: {_names(unknown)}"
            )
        if not selected:
            return dg.SkipReason(_nothing_due(found, graph))
        context.log.info(
            f"{len(selected)} SQLMesh model(s) due at {scheduled.isoformat()}: "
            + _names([graph.model(fqn).name for fqn in selected], 20)
        )
        run_key = f"{environment}@{scheduled.isoformat()}"
        tags = {
            SCHEDULE_TAG: name,
            ENVIRONMENT_TAG: environment,
            SCHEDULED_TIME_TAG: scheduled.isoformat(),
        }
        if any(graph.specs[fqn].partitions_def is not None for fqn in selected):
            from dg_sqlmesh.schedule_partitions import partitioned_run_requests

            return partitioned_run_requests(graph, found, selected, run_key=run_key, tags=tags)
        return dg.RunRequest(
            run_key=run_key, asset_selection=[keys[fqn] for fqn in selected], tags=tags
        )

    try:
        return dg.schedule(
            cron_schedule=chosen.cron,
            job_name=job_name,
            name=name,
            execution_timezone=chosen.timezone,
            description=description,
            default_status=default_status,
        )(_evaluate)
    except dg.DagsterInvalidDefinitionError as exc:
        raise SQLMeshDefinitionError(
            f"Dagster does not accept the cron '{chosen.sqlmesh_cron}' of {_names(chosen.models)} "
            f"as a schedule: {exc}"
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
        text += f" Next due: {_names(names)} at {found.next_due.isoformat()}."
    return text


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
